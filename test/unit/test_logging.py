"""The module logs as a library: to the logger "if_inject", silent until configured;
the CLI's JSON lines on stderr are its own handler, installed for one command.
No root, no runtime (the endpoint does not exist)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest

import if_inject as ii


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG - 5)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    """A program's own handler on the module's logger, everything let through."""
    logger = logging.getLogger("if_inject")
    handler, level = Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(1)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_the_library_writes_nothing_of_its_own(capfd: pytest.CaptureFixture[str]) -> None:
    """Imported, it logs at every level and nothing reaches stderr, not even an error
    (Python's last-resort handler is kept off by the module's NullHandler)."""
    code = ("import if_inject as ii\n"
            "ii._log('visible?', v=0, key=1)\n"
            "ii._log_error('failed?', ii.InjectError('no'))\n"
            "try:\n"
            "    ii.Node(endpoint='/nonexistent.sock').pod('ns', 'pod')\n"
            "except ii.InjectError:\n"
            "    pass\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")
    handlers = logging.getLogger("if_inject").handlers
    assert [type(h) for h in handlers] == [logging.NullHandler]


def test_a_programs_handler_gets_levels_and_fields(records: Records) -> None:
    ii._log("Info line", n=1)
    ii._log("Detail", v=2, what="x")
    ii._log_error("It failed", ii.InjectError("no", ii.CODE_IO), code=ii.CODE_IO)
    seen = [(r.levelno, r.getMessage(), r.fields) for r in records.records]  # type: ignore[attr-defined]
    assert seen == [(logging.INFO, "Info line", {"n": 1}), (logging.INFO - 2, "Detail", {"what": "x"}),
                    (logging.ERROR, "It failed", {"error": "no", "code": ii.CODE_IO})]


@pytest.mark.parametrize("loglevel, shown", [
    (None, ["error"]), ("0", ["error"]), ("1", ["debug", "debug", "error"]), ("-1", []),
])
def test_main_logs_json_lines_on_stderr_for_its_call_only(
        records: Records, capsys: pytest.CaptureFixture[str], loglevel: str | None, shown: list[str]) -> None:
    """main() in a program: the JSON lines up to -loglevel on stderr, for its own call;
    afterwards the logger is as the program left it, its handler untouched."""
    logger = logging.getLogger("if_inject")
    before = (list(logger.handlers), logger.level, logger.propagate)
    flags = ["-loglevel", loglevel] if loglevel else []
    assert ii.main([*flags, "-r", "/nonexistent.sock", "netns", "-pod", "x"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["level"] for line in lines] == shown
    assert all(list(line)[:3] == ["level", "time", "msg"] for line in lines)
    if shown:
        assert lines[-1]["msg"] == "netns failed" and lines[-1]["code"] == ii.CODE_TRY_AGAIN_LATER
    assert (list(logger.handlers), logger.level, logger.propagate) == before
    assert len(records.records) == len(shown)  # the program's handler saw the same records


def test_every_logged_field_is_camel_case() -> None:
    """The log lines' keys, like everything else printed, are camelCase: read from
    the source, each keyword given to _log or _log_error (besides v and level)."""
    import ast
    from pathlib import Path

    tree = ast.parse(Path(ii.__file__).read_text())
    fields = {(call.lineno, keyword.arg) for call in ast.walk(tree)
              if isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
              and call.func.id in ("_log", "_log_error")
              for keyword in call.keywords if keyword.arg not in (None, "v", "level")}
    assert len(fields) > 20
    assert [(line, name) for line, name in sorted(fields) if "_" in name] == []
