"""Shared fixtures: the runtime lab, pods, named netns, the libcni driver, and a machine check.

test/unit needs none of the lab's: its tests run without root, containerd or
the CNI plugins. The lab's fixtures skip their tests unless root.

- `lab`: one real containerd lab per runtime and session (skipped unless root).
  A test runs on lab.DEFAULT_RUNTIME; marked `@pytest.mark.runtimes` it runs on
  every one of lab.RUNTIMES, `@pytest.mark.runtimes("containerd-2.1")` on those named.
  cri-o's tests skip, with one line saying how to provide it, where its static
  binaries are missing (support.lab.crio_dir); with IF_INJECT_REQUIRE_CRIO=1
  (.ci/run sets it) they fail instead.
- `pod`, `make_pod`: fresh pods in namespace "if-inject", removed after the test.
- `netns`: a plain named network namespace, deleted after the test; `netns_pid`: a
  process in it (killed by its PID after the test).
- `sock_dir`, `serve`: fake CRI runtimes (support/fake_cri.py) on sockets of a temporary dir.
- `tool`: the argv prefix that runs if_inject.py with this Python.
- `inject`: a support.toolrun.Tool on the lab (private cache, CNI dir, dataDir).
- `libcni_driver`: support/libcni_driver.go built (skipped without Go and libcni's source).
- every test puts net.ipv4.ip_forward back (the ptp plugin sets it); in test/unit, the
  node's cache dir that if-inject reads beside a private one is one that is not there.

After a root session the machine must be as it was before: processes (the
runtimes' namespaces included), mounts, netns, links, /var/lib/cni, /run/cni,
/run/containerd, ip_forward, the labs' cgroups and the cached Debian roots are
compared, and any difference fails the run loudly (support/machine.py). Before
it looks, a root session tears down the labs a killed session left running.
A session without root can change none of these but processes: it compares those.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support import REPO
from support.fake_cri import FakeCRI, Runtime, Sandbox, Serve
from support.lab import (
    CRIO,
    DEFAULT_RUNTIME,
    RUNTIMES,
    Lab,
    Pod,
    crio_missing,
    ip_forward_restored,
    lock_machine,
    log,
    machine_lock_lost,
    mounts_under,
)
from support.libcni import build_driver
from support.machine import LAB_PREFIX, clean_killed_sessions, machine_differences, machine_snapshot
from support.node import inode, need_root
from support.toolrun import Tool

POD_NAMESPACE = "if-inject"
pytest_plugins = ["support.skips"]  # every skip seen, or a failure under IF_INJECT_NO_SKIP=1


@pytest.fixture(scope="session")
def tool() -> list[str]:
    """argv prefix running the tool from this checkout with the test's Python."""
    return [sys.executable, str(REPO / "if_inject.py")]


@pytest.fixture
def inject(tool: list[str], lab: Lab, tmp_path: Path) -> Tool:
    """if-inject on the session's lab, with a private cache, CNI dir and IPAM dataDir."""
    return Tool(tool, lab, tmp_path)


@pytest.fixture(scope="session")
def libcni_driver(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The libcni driver, built for this session from Debian's packages."""
    return build_driver(tmp_path_factory.mktemp("libcni"))


@pytest.fixture(scope="session")
def lab_base() -> Iterator[Path]:
    """A private directory for lab roots (the session lab and any a test starts)."""
    need_root("the lab runs containerd, runc and CNI plugins")
    base = Path(tempfile.mkdtemp(prefix=LAB_PREFIX))
    yield base
    left = mounts_under(str(base))
    assert not left, f"mounts left under {base}: {left}"  # never rmtree through a mount
    shutil.rmtree(base)


@pytest.fixture
def machine_lock(request: pytest.FixtureRequest) -> int:
    """The fd of the machine lock this root session holds (lab.lock_machine),
    for a test to hand to a process it runs that takes the lock too."""
    need_root("the session holds the machine lock as root only")
    return request.config.stash[_LOCK]


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


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test on the cri-o lab (its `lab` or `runtime` parameter) needs cri-o's binaries."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or CRIO not in callspec.params.values():
        return
    reason = crio_missing()
    if reason and os.environ.get("IF_INJECT_REQUIRE_CRIO") == "1":
        pytest.fail(reason, pytrace=False)
    if reason:
        pytest.skip(reason)


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

    Pods are like examples/alpine.yaml's (label app=alpine, a busybox container);
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
    if os.geteuid() != 0:  # nothing without root can change it
        yield
        return
    with ip_forward_restored():
        yield


@pytest.fixture(autouse=True)
def the_nodes_cache_dir_unread_by_unit_tests(request: pytest.FixtureRequest,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """if-inject reads the node's /var/lib/cni beside a private -cache-dir (gc,
    veth -delete): in test/unit, in-process, it reads a directory that is not
    there instead, so that no unit test depends on what the machine keeps."""
    if request.path.parent.name == "unit":
        import if_inject

        monkeypatch.setattr(if_inject, "_DEFAULT_CACHE_DIR", "/nonexistent/if-inject-unit-tests/cni")


@pytest.fixture(autouse=True)
def keep_the_machine_lock(request: pytest.FixtureRequest) -> Iterator[None]:
    """A root session holds the machine lock to its end: a test that lets it go
    (closes its fd, unlocks it) would let a second session change the host at
    the same time, and each would fail on what the other does."""
    yield
    if _LOCK in request.config.stash:
        lost = machine_lock_lost(request.config.stash[_LOCK])
        assert not lost, f"the session lost the machine lock during this test: {lost}"


@pytest.fixture(scope="session", autouse=True)
def netns_dir() -> Iterator[None]:
    """`ip netns add` makes /run/netns a mount point of its own (stacked, when
    two find it none yet). Undone once, last of all, when no pod holds it: right
    after a test, with the lab's pods up, rmdir can still find it busy."""
    if os.geteuid() != 0:  # nothing without root can change it
        yield
        return

    # (os.path.ismount cannot see a bind mount of a directory onto itself.)
    def mounted() -> bool:
        return "/run/netns" in mounts_under("/run/netns")

    existed, was_mount = os.path.isdir("/run/netns"), mounted()
    yield
    if not os.path.isdir("/run/netns") or os.listdir("/run/netns"):
        return
    while not was_mount and mounted():
        subprocess.run(["umount", "/run/netns"], check=True)
    if not existed:
        os.rmdir("/run/netns")


@pytest.fixture
def default_dirs() -> Iterator[None]:
    """examples/ptp.json and examples/ptp-nad.yaml as users run them keep their
    leases in /var/lib/cni/networks/NAME: a dir made during the test goes after it,
    once the test released its leases. (The rest that if-inject makes in
    /var/lib/cni, its lock dir and results/, the lab removes when it made
    /var/lib/cni, as on a machine without a CNI runtime of its own.)"""
    networks = Path("/var/lib/cni/networks")
    existed = networks.exists()
    made = [networks / name for name in ("mynet", "ptp-conf") if not (networks / name).exists()]
    yield
    for leases in made:
        if leases.exists():
            for p in leases.iterdir():
                p.unlink()
            leases.rmdir()
    if not existed and networks.exists() and not any(networks.iterdir()):
        networks.rmdir()


@pytest.fixture
def netns() -> Iterator[str]:
    """A plain named netns made with `ip netns add`; yields its path /run/netns/NAME."""
    need_root("network namespaces")
    name = f"if-inject-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture
def netns_pid(netns: str) -> Iterator[int]:
    """A process in `netns`, as a pod's pause is in its own."""
    proc = subprocess.Popen(["ip", "netns", "exec", os.path.basename(netns), "sleep", "60"])
    try:
        deadline = time.monotonic() + 5
        while inode(f"/proc/{proc.pid}/ns/net") != inode(netns):
            assert proc.poll() is None and time.monotonic() < deadline, "sleep did not start in the netns"
            time.sleep(0.002)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short private directory for sockets (a socket path has at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ifi-cri-"))
    yield path
    for entry in path.iterdir():
        entry.unlink()
    path.rmdir()


@pytest.fixture
def serve(sock_dir: Path) -> Iterator[Serve]:
    """serve(runtime, sandboxes, name=None, **faults): a running FakeCRI, stopped after the test."""
    started: list[FakeCRI] = []

    def start(runtime: Runtime, sandboxes: list[Sandbox] | tuple[()] = (), name: str = "",
              **faults: object) -> FakeCRI:
        cri = FakeCRI(sock_dir / (name or f"cri{len(started)}.sock"), runtime, sandboxes,
                      **faults)  # type: ignore[arg-type]
        started.append(cri.start())
        return cri

    yield start
    for cri in started:
        cri.stop()


_BEFORE = pytest.StashKey[dict[str, Any]]()
_LOCK = pytest.StashKey[int]()


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() == 0:  # root sessions change the host: one at a time
        session.config.stash[_LOCK] = lock_machine()
        for base in clean_killed_sessions():
            log(f"cleaned up after a killed test session: removed {base}")
    session.config.stash[_BEFORE] = machine_snapshot(full=os.geteuid() == 0)


@pytest.hookimpl(trylast=True)  # after the runner's, which tears the session fixtures down
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    differences = machine_differences(session.config.stash[_BEFORE],
                                      machine_snapshot(full=os.geteuid() == 0))
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
