"""Running the tool as the tests do, and what a run gave.

- run_clean(tool, *args): the one way tests run the tool (Tool's calls too).
- Run: exit code, stdout, stderr; `.error` is the single JSON error line's.
- Tool: if-inject on a lab with a private cache, CNI dir and IPAM dataDir.
- with_signals(argv): the argv whose process starts with the signals the tool takes over at their defaults.
- wait_for(path, proc): a file a child makes, with a deadline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import if_inject
from support import CNI_BIN, REPO
from support.node import cache_entries, leases

PTP_SPEC = REPO / "examples" / "ptp.json"

# One error line: {"level": "error", "time": ISO 8601 with ms and offset, "msg": ..., "error": ...}
JSON_ERROR = re.compile(r'^\{"level": "error", '
                        r'"time": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", ')


@dataclass
class Run:
    code: int
    out: str
    err: str

    @classmethod
    def of(cls, proc: subprocess.CompletedProcess[str]) -> Run:
        return cls(proc.returncode, proc.stdout, proc.stderr)

    @property
    def error(self) -> str:
        """The error of the single JSON log line on stderr (asserted to be just that)."""
        lines = self.err.splitlines()
        assert len(lines) == 1 and JSON_ERROR.match(lines[0]), self.err
        assert "Traceback" not in self.err
        return str(json.loads(lines[0])["error"])


def error_of(proc: subprocess.CompletedProcess[str]) -> str:
    """The error of a failed run: exit 1, nothing on stdout, one JSON error line on stderr."""
    assert (proc.returncode, proc.stdout) == (1, ""), (proc.returncode, proc.stdout, proc.stderr)
    return Run.of(proc).error


def run_clean(tool: list[str], *args: str, env: dict[str, str] | None = None,
              timeout: float = 30, input: str | None = None, stdin: int | None = None,
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The tool with `args`, without the caller's runtime endpoint or CNI path: every
    test runs it so (Tool too). `input` is written to its stdin, or `stdin` is its fd."""
    clean = {k: v for k, v in os.environ.items() if k not in ("CONTAINER_RUNTIME_ENDPOINT", "CNI_PATH")}
    return subprocess.run([*tool, *args], capture_output=True, text=True, timeout=timeout,
                          env={**clean, **(env or {})}, input=input, stdin=stdin, cwd=cwd)


def json_lines(run: Run) -> dict[str, dict[str, Any]]:
    """A batch's output lines by pod name."""
    lines = [json.loads(line) for line in run.out.splitlines()]
    return {line["pod"]: line for line in lines}


def args_for(pod: Any) -> list[str]:
    """The tool's arguments naming `pod` (a lab's Pod): -ns and -pod."""
    return ["-ns", pod.namespace, "-pod", pod.name]


# The signals the tool takes over (and the tests send), as in a terminal: a
# shell's background job (as CI may run us) inherits SIGINT ignored, `nohup`
# SIGHUP, and the tool then keeps ignoring them, as it should. The child sets
# the dispositions itself and execs the command: no preexec_fn, which forks a
# process with gRPC's threads and can die before the exec.
_WITH_SIGNALS = ("import os, signal, sys\n"
                 f"for signum in {if_inject._SignalGuard.signals()!r}:\n"
                 "    signal.signal(signum, signal.SIG_DFL)\n"
                 "for name in sys.argv[1].split(','):\n"
                 "    if name: signal.signal(getattr(signal, name), signal.SIG_IGN)\n"
                 "os.execvp(sys.argv[2], sys.argv[2:])\n")


def with_signals(argv: list[str], ignored: tuple[str, ...] = ()) -> list[str]:
    """`argv` run with the signals the tool takes over (SIGINT, SIGTERM, SIGHUP, ...)
    at their defaults, whatever this process inherited, and the signals named
    in `ignored` ignored."""
    return [sys.executable, "-I", "-S", "-c", _WITH_SIGNALS, ",".join(ignored), *argv]


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 20) -> None:
    """Until `path` exists; fails if `proc` ends first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"{path} never appeared: the process ended with {proc.returncode}: "
                                 f"{proc.communicate(timeout=10)}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"{path} never appeared within {timeout}s: {proc.communicate(timeout=10)}")
        time.sleep(0.01)


def fake_plugin(directory: Path, name: str, body: str) -> None:
    """A CNI plugin `name` in `directory`: a shell script running `body`."""
    path = directory / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


class Tool:
    """if-inject on the lab, with a private cache, CNI dir and IPAM dataDir."""

    def __init__(self, argv: list[str], lab: Any, tmp: Path) -> None:
        self.argv, self.lab, self.tmp = argv, lab, tmp
        self.cache = tmp / "cni"  # -cache-dir: libcni's cacheDir, entries in its results/
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.ipam = tmp / "ipam"
        self.spec = self.write_spec("ptp.json", json.loads(PTP_SPEC.read_text()))

    def write_spec(self, name: str, conf: dict[str, Any]) -> str:
        for plugin in conf.get("plugins", [conf]):
            if plugin.get("ipam", {}).get("type") == "host-local":
                plugin["ipam"]["dataDir"] = str(self.ipam)
        path = self.tmp / name
        path.write_text(json.dumps(conf))
        return str(path)

    def chain(self, second: str) -> str:
        """A spec of examples/ptp.json's ptp followed by the plugin `second`."""
        conf = json.loads(PTP_SPEC.read_text())
        plugins = [{k: v for k, v in conf.items() if k not in ("name", "cniVersion")}, {"type": second}]
        return self.write_spec(f"chain-{second}.json", {"cniVersion": "1.0.0", "name": "mynet",
                                                        "plugins": plugins})

    def fake_plugin(self, name: str, body: str) -> None:
        fake_plugin(self.bin, name, body)

    def cmd(self, *args: str) -> list[str]:
        return [*self.argv, "-r", self.lab.endpoint, "-cache-dir", str(self.cache),
                "-cni-path", f"{self.bin}:{CNI_BIN}", *args]

    def __call__(self, *args: str, timeout: float = 60) -> Run:
        return Run.of(run_clean(self.cmd(*args), timeout=timeout))

    def start(self, *args: str, ignored: tuple[str, ...] = ()) -> subprocess.Popen[str]:
        """The command running, stdout and stderr piped; the signals tests
        send at their defaults (see with_signals)."""
        return subprocess.Popen(with_signals(self.cmd(*args), ignored), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def leases(self) -> list[str]:
        return leases(self.ipam, "mynet")

    def cache_files(self) -> list[str]:
        return cache_entries(self.cache)

