"""Speed targets as ratios to floors measured in the same run.

Used by tools/bench.py and tools/measure_exe.py. A limit in milliseconds passes
on one machine and fails on a slower one with the same code; the ratio of a
figure to a floor measured on the same machine in the same run (the bare
interpreter, the interpreter importing grpc, the CNI plugin run directly, the
pip-installed command) stays put. So every target is a `Ratio`, and the tables
print the absolute times beside it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ratio:
    """A figure may be at most `limit` times its floor (a speedup: at least)."""

    limit: float
    floor: str  # what the figure is divided by, as the target reads: "interpreter", ...
    at_least: bool = False

    def __str__(self) -> str:
        return f"{'>=' if self.at_least else '<='} {self.limit:g}x {self.floor}"

    def met(self, figure: float, floor: float) -> bool:
        if floor <= 0:
            return False  # no floor measured: nothing to judge by
        ratio = figure / floor
        return ratio >= self.limit if self.at_least else ratio <= self.limit


def verdict(passed: bool | None) -> str:
    """PASS, FAIL, or nothing for a row without a target."""
    return {True: "PASS", False: "FAIL", None: ""}[passed]
