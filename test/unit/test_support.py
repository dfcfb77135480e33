"""The tests' own machinery, without root: the CRI schema helpers a fake
server uses, the machine check's report, the machine lock's hand-over, the
signal dispositions a started tool gets, what counts as a lease or a cache
entry, and the support package's map of itself."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support import cri_schema, lab
from support.lab import MACHINE_LOCK_FD, _handed_lock, kernel_deaths, machine_lock_lost
from support.machine import machine_differences
from support.node import cache_entries, leases
from support.toolrun import with_signals


def test_cri_schema_serves_what_it_calls(tmp_path: Path) -> None:
    """The helpers a fake CRI server uses, against the client helper (no root needed)."""
    from concurrent import futures

    import grpc

    def version(request: Any, context: Any) -> Any:
        return cri_schema.M["VersionResponse"](version=request.version, runtime_name="fake")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers(
        [cri_schema.rpc_handler(cri_schema.RUNTIME_SERVICE, {"Version": version})])
    server.add_insecure_port(f"unix://{tmp_path}/cri.sock")
    server.start()
    try:
        with grpc.insecure_channel(f"unix://{tmp_path}/cri.sock") as channel:
            response = cri_schema.call(channel, "Version", {"version": "v1"}, timeout=5)
    finally:
        server.stop(None)
    assert (response.version, response.runtime_name) == ("v1", "fake")


def test_machine_check_names_what_changed() -> None:
    before = {"links": ["eth0", "lo"], "net.ipv4.ip_forward": "0", "/var/lib/cni": None}
    after = {"links": ["eth0", "lo", "pod0"], "net.ipv4.ip_forward": "1",
             "/var/lib/cni": ["/var/lib/cni/results"]}
    assert machine_differences(before, after) == [
        "links: + pod0", "net.ipv4.ip_forward: '0' -> '1'",
        "/var/lib/cni: None -> ['/var/lib/cni/results']"]
    assert machine_differences(before, before) == []


def test_kernel_deaths_are_the_crash_and_oom_records() -> None:
    """What Lab.exec reports of the kernel's log when an exec fails (test/support/LAB.md)."""
    records = ["6,1,1000000,-;ifilab0: port 1(veth0) entered disabled state\n",
               "6,2,2500000,-;exe[4242]: segfault at 0 ip 00 sp 00 error 4 in runc[400000+a00000]\n",
               "4,3,2600000,-;memfd_create() called without MFD_EXEC or MFD_NOEXEC_SEAL set\n",
               "3,4,3000000,-;Out of memory: Killed process 8 (runc:[2:INIT])\n SUBSYSTEM=memory\n",
               "6,5,3100000,-;traps: memfd:runc_clon[9] general protection fault ip:0 sp:0 error:0\n"]
    assert kernel_deaths(records) == [
        "[2.500000] exe[4242]: segfault at 0 ip 00 sp 00 error 4 in runc[400000+a00000]",
        "[3.000000] Out of memory: Killed process 8 (runc:[2:INIT])",
        "[3.100000] traps: memfd:runc_clon[9] general protection fault ip:0 sp:0 error:0"]
    assert kernel_deaths(records[:1] + records[2:3]) == []


def test_a_machine_lock_is_taken_over_only_through_the_lock_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """lock_machine uses a handed-down fd only when it is the lock dir's."""
    lock_dir, other = tmp_path / "lock", tmp_path / "other"
    lock_dir.mkdir()
    other.mkdir()
    for path, handed in ((lock_dir, True), (other, False)):
        fd = os.open(path, os.O_RDONLY)
        try:
            monkeypatch.setenv(MACHINE_LOCK_FD, str(fd))
            assert _handed_lock(str(lock_dir)) == (fd if handed else -1)
        finally:
            os.close(fd)
    assert _handed_lock(str(lock_dir)) == -1  # that fd is closed now
    for junk in ("", "x", "-1", "99999"):
        monkeypatch.setenv(MACHINE_LOCK_FD, junk)
        assert _handed_lock(str(lock_dir)) == -1


def test_a_lost_machine_lock_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the session checks after each test: its fd still holds the lock."""
    monkeypatch.setattr(lab, "_lock_dir", lambda: str(tmp_path))
    ours, other = os.open(tmp_path, os.O_RDONLY), os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(ours, fcntl.LOCK_EX)
        assert machine_lock_lost(ours) == ""
        fcntl.flock(ours, fcntl.LOCK_UN)
        assert machine_lock_lost(ours) == f"nobody held {tmp_path}'s lock"
        fcntl.flock(other, fcntl.LOCK_EX)  # another open file description: another holder
        assert machine_lock_lost(ours) == f"another process holds {tmp_path}'s lock"
    finally:
        os.close(other)
        os.close(ours)
    assert machine_lock_lost(ours) == f"fd {ours}: Bad file descriptor"


def test_a_started_tool_gets_the_signals_tests_send_whatever_was_inherited() -> None:
    """Under `nohup` (SIGHUP ignored) or as a shell's background job (SIGINT
    ignored) the tool rightly keeps ignoring what it inherited ignored: the
    tests that send those signals start it with them at their defaults."""
    show = [sys.executable, "-c", "import signal; print([signal.getsignal(getattr(signal, n)) "
            "is signal.SIG_IGN for n in ('SIGINT', 'SIGTERM', 'SIGHUP')])"]

    def ignored_in(argv: list[str]) -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout.strip()

    inheriting = with_signals(with_signals(show), ignored=("SIGINT", "SIGTERM", "SIGHUP"))
    assert ignored_in(with_signals(show, ignored=("SIGINT", "SIGTERM", "SIGHUP"))) == "[True, True, True]"
    assert ignored_in(inheriting) == "[False, False, False]"
    assert ignored_in(with_signals(show, ignored=("SIGHUP",))) == "[False, False, True]"


def test_leases_are_the_files_named_by_an_address(tmp_path: Path) -> None:
    """host-local's dataDir: a file per lease, named by its address (IPv6 ones too),
    beside its `lock` and `last_reserved_ip.N` files, which are no leases."""
    files = {"a": ["10.22.22.2", "fd00::2", "lock", "last_reserved_ip.0", "last_reserved_ip.1"],
             "b": ["10.22.23.9", "lock"]}
    for network, names in files.items():
        (tmp_path / network).mkdir()
        for name in names:
            (tmp_path / network / name).write_text("c1\r\nnet1")
    assert leases(tmp_path, "a") == ["10.22.22.2", "fd00::2"]
    assert leases(tmp_path) == ["10.22.22.2", "10.22.23.9", "fd00::2"]
    assert leases(tmp_path, "none") == [] and leases(tmp_path / "none") == []
    for name in ("10.22.22.2", "fd00::2"):
        (tmp_path / "a" / name).unlink()
    assert leases(tmp_path, "a") == []  # what is left, lock and last_reserved_ip, is no lease


def test_cache_entries_are_those_of_the_results_dir(tmp_path: Path) -> None:
    assert cache_entries(tmp_path) == []
    (tmp_path / "results").mkdir()
    (tmp_path / "if-inject-locks").mkdir()
    assert cache_entries(tmp_path) == []
    for name in ("mynet-c2-net1", "mynet-c1-net1"):
        (tmp_path / "results" / name).write_text("{}")
    assert cache_entries(tmp_path) == ["mynet-c1-net1", "mynet-c2-net1"]


def test_the_support_package_names_each_of_its_modules() -> None:
    """Its docstring is the map of the support package: every module on it."""
    import support

    assert support.__doc__ is not None
    modules = sorted(p.name for p in Path(support.__file__).parent.glob("*.py") if p.name != "__init__.py")
    assert [m for m in modules if m not in support.__doc__] == []


@pytest.mark.parametrize("fatal, calls, ok", [
    (lab.RUNC_SEAL_BUSY, 2, True),  # once: the exec runs again and answers
    ("nsexec[1]: could not ensure we are a cloned binary: Cannot allocate memory", 1, False),
    (lab.RUNC_SEAL_BUSY + " (every time)", 3, False)])  # three times: it gives up
def test_an_exec_runs_again_only_when_runc_init_could_not_seal_its_copy(
        tmp_path: Path, fatal: str, calls: int, ok: bool) -> None:
    """Lab.exec against a runtime whose first ExecSync fails with runc init's
    `fatal` line in runc's log.json (as containerd leaves it): run again only
    for the seal refused by the kernel (LAB.md), at most three calls in all."""
    import grpc

    the_lab = lab.Lab(str(tmp_path / "lab"), "containerd-1.7")
    pod = lab.Pod("ns", "p", "uid", "sandbox", "container", "/run/netns/x")
    log_json = (the_lab.root / "state/io.containerd.runtime.v2.task" / lab.CRI_NAMESPACE / "container"
                / "log.json")
    log_json.parent.mkdir(parents=True)
    log_json.write_text('{"level":"info","msg":"an earlier exec"}\n')
    made: list[str] = []

    def exec_sync(method: str, request: Any = None, timeout: float = 30) -> Any:
        made.append(method)
        if len(made) == 1 or "every time" in fatal:
            with log_json.open("a") as f:
                f.write(f'{{"level":"fatal","msg":"nsexec[166]: {fatal}"}}\n')
            raise grpc.RpcError("OCI runtime exec failed: ... read init-p: connection reset by peer")
        return type("Answer", (), {"exit_code": 0, "stdout": b"ok\n", "stderr": b""})()

    the_lab.cri = exec_sync  # type: ignore[method-assign]
    if ok:
        assert the_lab.exec(pod, ["true"]) == (0, "ok\n", "")
    else:
        with pytest.raises(RuntimeError) as e:
            the_lab.exec(pod, ["true"])
        assert 'runc\'s log:\n{"level":"info","msg":"an earlier exec"}\n' in str(e.value)
        assert fatal in str(e.value)
    assert made == ["ExecSync"] * calls
