"""support/skips.py: no skip goes unseen. A pytest session of its own on a few
tests that skip every way (marker, fixture, test, module), without and with
IF_INJECT_NO_SKIP=1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import REPO
from support.skips import NO_SKIP

SKIPPING = '''
import pytest

@pytest.fixture
def lab() -> None:
    pytest.skip("needs root: the lab")

def test_passes() -> None: pass
def test_fixture(lab: None) -> None: pass
def test_itself() -> None: pytest.skip("needs root: the lab")
@pytest.mark.skipif(True, reason="needs Go")
def test_marker() -> None: pass
@pytest.mark.xfail(reason="not a skip", strict=True)
def test_xfail() -> None: raise AssertionError
'''


def session(tmp_path: Path, no_skip: bool, module_skip: bool = False) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # this dir is the rootdir: not our conftest
    (tmp_path / "test_some.py").write_text(SKIPPING)
    if module_skip:
        (tmp_path / "test_crio.py").write_text(
            "import pytest\npytest.skip('no cri-o binaries', allow_module_level=True)\n")
    env = {k: v for k, v in os.environ.items() if k != NO_SKIP}
    env["PYTHONPATH"] = str(REPO / "test")
    if no_skip:
        env[NO_SKIP] = "1"
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "support.skips",
            str(tmp_path)]
    return subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)


def test_a_run_ends_with_what_was_skipped_and_why(tmp_path: Path) -> None:
    run = session(tmp_path, no_skip=False, module_skip=True)
    assert run.returncode == 0, run.stdout
    assert run.stdout.splitlines()[-1] == (
        "SKIPPED 4, each a part not tested here: needs root: the lab (2); no cri-o binaries (1); "
        f"needs Go (1) (under {NO_SKIP}=1, as in .ci/run, these fail)")


def test_under_no_skip_every_skip_fails_with_its_reason(tmp_path: Path) -> None:
    run = session(tmp_path, no_skip=True)
    assert run.returncode == 1, run.stdout
    last = run.stdout.splitlines()[-1]
    assert "1 failed, 1 passed, 1 xfailed, 2 errors" in last and "SKIPPED" not in run.stdout
    for reason in ("needs root: the lab", "needs Go"):
        assert f"skipped under {NO_SKIP}=1, where nothing may be skipped: {reason}" in run.stdout


def test_under_no_skip_a_skipped_module_fails(tmp_path: Path) -> None:
    run = session(tmp_path, no_skip=True, module_skip=True)
    assert run.returncode != 0
    assert f"skipped under {NO_SKIP}=1, where nothing may be skipped: no cri-o binaries" in run.stdout
