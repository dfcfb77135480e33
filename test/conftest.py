"""Shared fixtures: the runtime lab, pods, named netns, and a machine check.

- `lab`: one real containerd lab per runtime and session (skipped unless root).
  A test runs on lab.DEFAULT_RUNTIME; marked `@pytest.mark.runtimes` it runs on
  every one of lab.RUNTIMES, `@pytest.mark.runtimes("containerd-2.1")` on those named.
- `pod`, `make_pod`: fresh pods in namespace "if-inject", removed after the test.
- `netns`: a plain named network namespace, deleted after the test.
- `tool`: the argv prefix that runs if_inject.py with this Python.
- every test puts net.ipv4.ip_forward back (the ptp plugin sets it).

After the session the machine must be as it was before: processes (the
runtimes' namespaces included), mounts, netns, links, /var/lib/cni,
/run/containerd, ip_forward, the labs' cgroups and the cached Debian roots are
compared, and any difference fails the run loudly (see the end of the file).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
for _path in (str(REPO / "test"), str(REPO)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from lab import (  # noqa: E402
    DEFAULT_RUNTIME,
    IP_FORWARD,
    RUNTIMES,
    Lab,
    Pod,
    lock_machine,
    mounts_under,
    proc_alive,
    proc_cmdline,
)

POD_NAMESPACE = "if-inject"
# Lab roots of this session start with this, so its processes can be told from
# those of a concurrent session on the same machine.
LAB_PREFIX = f"if-inject-lab-{os.getpid()}-"


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: the lab runs containerd, runc and CNI plugins")


@pytest.fixture(scope="session")
def tool() -> list[str]:
    """argv prefix running the tool from this checkout with the test's Python."""
    return [sys.executable, str(REPO / "if_inject.py")]


@pytest.fixture(scope="session")
def lab_base() -> Iterator[Path]:
    """A private directory for lab roots (the session lab and any a test starts)."""
    need_root()
    base = Path(tempfile.mkdtemp(prefix=LAB_PREFIX))
    yield base
    left = mounts_under(str(base))
    assert not left, f"mounts left under {base}: {left}"  # never rmtree through a mount
    shutil.rmtree(base)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "runtimes(*names): run on these lab runtimes (no names: "
                            "all of lab.RUNTIMES) instead of lab.DEFAULT_RUNTIME")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test using the lab gets its runtime as a parameter (see `lab`)."""
    if "lab" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        if "lab" in str(mark.args[0]).replace(" ", "").split(","):
            return  # the test parametrizes it itself (indirect, with runtime names)
    marker = metafunc.definition.get_closest_marker("runtimes")
    runtimes = (marker.args or RUNTIMES) if marker else (DEFAULT_RUNTIME,)
    unknown = set(runtimes) - set(RUNTIMES)
    if unknown:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown runtimes {sorted(unknown)}")
    metafunc.parametrize("lab", runtimes, indirect=True, scope="session")


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest, lab_base: Path) -> Iterator[Lab]:
    """The session's lab of one runtime: containerd + CRI + CNI with pause and busybox images.

    Session-scoped per runtime: pytest groups the tests by runtime, so each
    runtime starts once, and is torn down before the next one starts.
    """
    runtime = getattr(request, "param", DEFAULT_RUNTIME)
    lab = Lab(str(lab_base / runtime), runtime=runtime)
    lab.up()
    try:
        yield lab
    finally:
        lab.down()


@pytest.fixture
def make_pod(lab: Lab) -> Iterator[Callable[..., Pod]]:
    """make_pod(name=None, namespace="if-inject", labels={"app": "alpine"}, **run_pod kw).

    Pods are like test/alpine.yaml's (label app=alpine, a busybox container);
    every sandbox of them, restarted attempts included, is removed afterwards.
    """
    made: list[Pod] = []

    def make(name: str | None = None, namespace: str = POD_NAMESPACE, **kw: Any) -> Pod:
        kw.setdefault("labels", {"app": "alpine"})
        pod = lab.run_pod(namespace, name or f"alpine-{uuid.uuid4().hex[:8]}", **kw)
        made.append(pod)
        return pod

    yield make
    for pod in made:
        lab.remove_pod(pod)


@pytest.fixture
def pod(make_pod: Callable[..., Pod]) -> Pod:
    """A fresh ready pod with a busybox container in namespace "if-inject"."""
    return make_pod()


@pytest.fixture(autouse=True)
def restore_ip_forward() -> Iterator[None]:
    """The ptp plugin sets net.ipv4.ip_forward=1 on every ADD (failed ones too), and
    neither libcni nor the tool puts it back: each test does, as a kubelet-less node would."""
    before = IP_FORWARD.read_text()
    yield
    if IP_FORWARD.read_text() != before:
        IP_FORWARD.write_text(before)


@pytest.fixture(scope="session", autouse=True)
def netns_dir() -> Iterator[None]:
    """`ip netns add` makes /run/netns a mount point of its own (stacked, when
    two find it none yet). Undone once, last of all, when no pod holds it: right
    after a test, with the lab's pods up, rmdir can still find it busy."""
    # (os.path.ismount cannot see a bind mount of a directory onto itself.)
    def mounted() -> bool:
        return "/run/netns" in mounts_under("/run/netns")

    existed, was_mount = os.path.isdir("/run/netns"), mounted()
    yield
    if os.geteuid() != 0 or not os.path.isdir("/run/netns") or os.listdir("/run/netns"):
        return
    while not was_mount and mounted():
        subprocess.run(["umount", "/run/netns"], check=True)
    if not existed:
        os.rmdir("/run/netns")


@pytest.fixture
def netns() -> Iterator[str]:
    """A plain named netns made with `ip netns add`; yields its path /run/netns/NAME."""
    need_root()
    name = f"if-inject-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


# ---- the machine is as before ---------------------------------------------------------

def _tree(top: str) -> list[str] | None:
    if not os.path.exists(top):
        return None
    return sorted(os.path.join(d, n) for d, dirs, files in os.walk(top) for n in dirs + files)


def _our_processes() -> list[str]:
    """Live processes started by this session: descendants, and those of our labs."""
    parents: dict[int, int] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    ours = {os.getpid()}
    changed = True
    while changed:  # close over children: pods' processes are children of shims
        new = {pid for pid, ppid in parents.items() if ppid in ours or
               any(LAB_PREFIX in arg for arg in proc_cmdline(pid))}
        changed, ours = not new <= ours, ours | new
    ours.discard(os.getpid())
    return sorted(f"{pid} {' '.join(proc_cmdline(pid))}" for pid in ours if proc_alive(pid))


def _links() -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


def _roots_written() -> list[str]:
    """Files of the cached Debian roots newer than the root itself: labs only read them
    (through an overlay), so that concurrent labs and later sessions get the same root."""
    from debroot import ROOTS_DIR

    changed: list[str] = []
    try:
        marks = sorted(ROOTS_DIR.glob("*/.complete"))
    except OSError:
        return changed
    for complete in marks:
        found = subprocess.run(["find", str(complete.parent), "-xdev", "-newer", str(complete)],
                               capture_output=True, text=True).stdout
        changed += found.splitlines()
    return changed


def machine_snapshot() -> dict[str, Any]:
    """What tests and labs may change on the host, to compare before and after."""
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {
        "processes": _our_processes(),
        "mounts": sorted(Path("/proc/mounts").read_text().splitlines()),
        "ip netns list": sorted(netns.splitlines()),
        "/run/netns": _tree("/run/netns"),
        "links": _links(),
        "/var/lib/cni": _tree("/var/lib/cni"),
        "/run/containerd": _tree("/run/containerd"),
        "net.ipv4.ip_forward": IP_FORWARD.read_text().strip(),
        "lab cgroups": sorted(glob.glob("/sys/fs/cgroup/*/if-inject-lab-*")),
        "Debian roots written": _roots_written(),
    }


def machine_differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    lines = []
    for key, old in before.items():
        new = after[key]
        if old == new:
            continue
        if isinstance(old, list) and isinstance(new, list):
            lines += [f"{key}: + {x}" for x in new if x not in old]
            lines += [f"{key}: - {x}" for x in old if x not in new]
        else:
            lines.append(f"{key}: {old!r} -> {new!r}")
    return lines


_BEFORE = pytest.StashKey[dict[str, Any]]()
_LOCK = pytest.StashKey[int]()


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() == 0:  # root sessions change the host: one at a time
        session.config.stash[_LOCK] = lock_machine()
    session.config.stash[_BEFORE] = machine_snapshot()


@pytest.hookimpl(trylast=True)  # after the runner's, which tears the session fixtures down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    differences = machine_differences(session.config.stash[_BEFORE], machine_snapshot())
    if _LOCK in session.config.stash:
        os.close(session.config.stash[_LOCK])
    if not differences:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    write = reporter.write_line if reporter else (lambda s, **kw: print(s, file=sys.stderr))
    write("")
    write("!!! the machine is not as the test session found it:", red=True, bold=True)
    for line in differences:
        write(f"!!!   {line}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
