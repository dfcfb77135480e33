"""No skip goes unseen: a pytest plugin (conftest.py's `pytest_plugins`).

A skipped test is a part of the tool nobody checked: the lab without root, the
libcni comparison without Go, a runtime whose binaries are missing. With
IF_INJECT_NO_SKIP=1 (set by .ci/run) every skip, whatever skipped it (a
marker, a fixture, the test itself, a module), is reported as a failure with
its reason. Without it, a run that skipped anything ends with one line naming
each reason and how many tests it skipped.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Generator
from typing import Any

import pytest

NO_SKIP = "IF_INJECT_NO_SKIP"

_SKIPPED = pytest.StashKey[Counter[str]]()


def no_skip() -> bool:
    """True when a skip must fail the run (IF_INJECT_NO_SKIP=1)."""
    return os.environ.get(NO_SKIP) == "1"


def skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    """The reason a skipped report gives, without pytest's "Skipped: " prefix."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _judge(report: pytest.TestReport | pytest.CollectReport, config: pytest.Config) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):  # an xfail is no skip
        return
    reason = skip_reason(report)
    if no_skip():
        report.outcome = "failed"
        report.longrepr = f"skipped under {NO_SKIP}=1, where nothing may be skipped: {reason}"
    else:
        config.stash.setdefault(_SKIPPED, Counter())[reason] += 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    _judge(outcome.get_result(), item.config)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    _judge(outcome.get_result(), collector.config)


def summary(skipped: Counter[str]) -> str:
    """The one line on what was skipped and why, most frequent reason first."""
    reasons = "; ".join(f"{reason} ({n})" for reason, n in skipped.most_common())
    return (f"SKIPPED {sum(skipped.values())}, each a part not tested here: {reasons} "
            f"(under {NO_SKIP}=1, as in .ci/run, these fail)")


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """The last line of the run, after pytest's own summary."""
    skipped = config.stash.get(_SKIPPED, Counter())
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if skipped and reporter is not None:
        reporter.write_line(summary(skipped), yellow=True, bold=True)
