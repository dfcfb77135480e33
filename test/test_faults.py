"""Nothing lost under faults: signals at every step, a full disk, the runtime
crashing under a batch, and what is left after each (leases, host links, the
pod's interfaces, the cache).

The network is examples/ptp.json followed by `slow`, a plugin of this test's own
CNI path that takes its time (or fills the disk) and then runs the real
tuning plugin, so that ADDs and rollbacks last long enough to be hit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from support.node import host_links, netns_addrs, pod_addrs, settled
from support.toolrun import Run, Tool, args_for, json_lines, wait_for

# ---- helpers --------------------------------------------------------------------------

def slow_plugin(inject: Tool, add: str = "", delete: str = "") -> Path:
    """`slow`: logs each command and touches a file named after it in the test's
    dir, runs the shell code given for ADD or DEL, then execs the real tuning
    plugin (which passes the prevResult on). Returns the log's path."""
    calls = inject.tmp / "slow.log"
    inject.fake_plugin("slow", f'echo "$CNI_COMMAND" >> {calls}\ntouch {inject.tmp}/"$CNI_COMMAND"\n'
                               f'case "$CNI_COMMAND" in ADD) {add or ":"};; DEL) {delete or ":"};; esac\n'
                               "exec /usr/lib/cni/tuning")
    return calls


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> Run:
    """The run's outcome; after a readline() too, whose buffer may hold more
    lines already (communicate() would read past them, from the pipe itself)."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    return Run(proc.wait(timeout), out, err)


def nothing_left(inject: Tool, lab: Any, pod: Any, links: str) -> None:
    assert pod_addrs(lab, pod) == "" and inject.leases() == [] and inject.cache_files() == []
    assert host_links() == links


# ---- signals ------------------------------------------------------------------------------

@pytest.mark.parametrize("first, second", [
    (signal.SIGINT, signal.SIGINT),  # Ctrl-C pressed twice
    (signal.SIGTERM, signal.SIGTERM),  # a supervisor's stop, then its retry
    (signal.SIGHUP, signal.SIGTERM),  # the ssh session drops, then a stop
])
def test_second_signal_during_the_rollback_does_not_cut_it_short(
        inject: Tool, lab: Any, pod: Any, first: int, second: int) -> None:
    slow_plugin(inject, add="exec sleep 60", delete="sleep 2")
    links = host_links()
    proc = inject.start("add", *args_for(pod), "-spec", inject.chain("slow"))
    wait_for(inject.tmp / "ADD", proc)
    proc.send_signal(first)
    wait_for(inject.tmp / "DEL", proc)  # the rollback is under way: 2 s in slow's DEL
    for _ in range(3):
        proc.send_signal(second)
        time.sleep(0.1)
    run = finish(proc)
    assert (run.code, run.out) == (1, "")
    assert run.error == f"interrupted by {signal.Signals(first).name}; rolled back (DEL ran for slow, ptp)"
    assert (inject.tmp / "slow.log").read_text().split() == ["ADD", "DEL"]
    nothing_left(inject, lab, pod, links)


def test_sighup_ignored_by_nohup_stays_ignored(inject: Tool, lab: Any, pod: Any) -> None:
    slow_plugin(inject, add="sleep 1")
    proc = inject.start("add", *args_for(pod), "-spec", inject.chain("slow"), ignored=("SIGHUP",))
    wait_for(inject.tmp / "ADD", proc)
    proc.send_signal(signal.SIGHUP)
    run = finish(proc)
    assert (run.code, run.err) == (0, "")
    address = json.loads(run.out)["ips"][0]["address"]
    assert f"inet {address}" in pod_addrs(lab, pod) and len(inject.leases()) == 1
    assert inject("del", *args_for(pod), "-spec", inject.chain("slow")).code == 0
    assert inject.leases() == [] and inject.cache_files() == []


def test_closed_stdout_keeps_the_add_and_says_so(inject: Tool, lab: Any, pod: Any) -> None:
    """No reader left (`add ... | head -c 10` once head is gone): the ADD is
    done and cached, as `ip addr add` would leave it; only the report is lost."""
    proc = inject.start("add", *args_for(pod), "-spec", inject.spec)
    assert proc.stdout is not None
    proc.stdout.close()  # before the tool writes: the write is sure to fail
    err = proc.communicate(timeout=60)[1]
    run = Run(proc.returncode, "", err)
    assert run.code == 1
    assert run.error == ("stdout was closed (broken pipe): the output was not fully written; what "
                         "was added stays (see `if-inject list`, undo it with `del`)")
    assert "inet 10.22.22." in pod_addrs(lab, pod)
    assert len(inject.leases()) == 1 and len(inject.cache_files()) == 1
    assert inject("check", *args_for(pod), "-spec", inject.spec).code == 0
    assert inject("del", *args_for(pod), "-spec", inject.spec).code == 0
    assert inject.leases() == [] and inject.cache_files() == []


def test_add_piped_into_head(inject: Tool, lab: Any, pod: Any) -> None:
    """The shell's `| head -c 10`: head may or may not be gone when the tool
    writes; either way the ADD stays, and no traceback."""
    command = " ".join(f"'{arg}'" for arg in inject.cmd("add", *args_for(pod), "-spec", inject.spec))
    proc = subprocess.run(["bash", "-c", f'{command} | head -c 10; echo " ${{PIPESTATUS[0]}}"'],
                          capture_output=True, text=True, timeout=60)
    head, code = proc.stdout.rsplit(" ", 1)
    assert head == "{\n    \"cni" and code.strip() in ("0", "1")
    if code.strip() == "1":
        assert "stdout was closed (broken pipe)" in Run(1, "", proc.stderr).error
    else:
        assert proc.stderr == ""
    assert "inet 10.22.22." in pod_addrs(lab, pod) and len(inject.leases()) == 1
    assert inject("del", *args_for(pod), "-spec", inject.spec).code == 0
    assert inject.leases() == [] and inject.cache_files() == []


def test_signal_during_a_batch_finishes_the_pods_under_way(
        inject: Tool, lab: Any, make_pod: Callable[..., Any]) -> None:
    pods = {p.name: p for p in (make_pod(labels={"app": "stopped"}, container=False) for _ in range(6))}
    slow_plugin(inject, add="sleep 1")
    spec = inject.chain("slow")
    proc = inject.start("add", "-ns", "if-inject", "-l", "app=stopped", "-spec", spec, "-parallel", "2")
    assert proc.stdout is not None
    first = proc.stdout.readline()  # two pods done, the next two under way
    for signum in (signal.SIGTERM, signal.SIGTERM, signal.SIGINT):
        proc.send_signal(signum)
        time.sleep(0.05)
    run = finish(proc)
    lines = json_lines(Run(run.code, first + run.out, run.err))
    assert sorted(lines) == sorted(pods)
    added = {name for name, line in lines.items() if "result" in line}
    skipped = {name for name, line in lines.items() if "error" in line}
    assert len(added) >= 2 and skipped, lines
    assert {lines[name]["error"] for name in skipped} == {"not started: interrupted by SIGTERM"}
    assert run.code == 1 and run.error == (f"interrupted by SIGTERM: the pods under way were finished, "
                                           f"{len(skipped)} of 6 not started")
    assert sorted(inject.leases()) == sorted(
        lines[name]["result"]["ips"][0]["address"].split("/")[0] for name in added)
    assert len(inject.cache_files()) == len(added)
    for name, pod in pods.items():
        assert ("inet 10.22.22." in netns_addrs(pod.netns)) == (name in added)
    assert inject("del", "-ns", "if-inject", "-l", "app=stopped", "-spec", spec).code == 0
    assert inject.leases() == [] and inject.cache_files() == []


def test_closed_stdout_stops_a_batch_cleanly(inject: Tool, lab: Any, make_pod: Callable[..., Any]) -> None:
    pods = [make_pod(labels={"app": "unread"}, container=False) for _ in range(4)]
    slow_plugin(inject, add="sleep 0.5")
    spec = inject.chain("slow")
    proc = inject.start("add", "-ns", "if-inject", "-l", "app=unread", "-spec", spec, "-parallel", "1")
    assert proc.stdout is not None
    proc.stdout.close()
    err = proc.communicate(timeout=60)[1]
    run = Run(proc.returncode, "", err)
    assert run.code == 1 and run.error.startswith("stdout was closed (broken pipe)")
    # The pod under way when the first line failed finished whole; no more started.
    added = [pod for pod in pods if "inet 10.22.22." in netns_addrs(pod.netns)]
    assert 1 <= len(added) <= 2
    assert len(inject.leases()) == len(inject.cache_files()) == len(added)
    assert inject("del", "-ns", "if-inject", "-l", "app=unread", "-spec", spec).code == 0
    assert inject.leases() == [] and inject.cache_files() == []


# ---- a full disk --------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs with 64 inodes, unmounted after the test. The tool's
    whole -cache-dir (results, locks, whatever its layout) goes in `cni`."""
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=64,mode=0700", "tmpfs", str(disk)],
                   check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def fill_blocks(disk: Path) -> None:
    subprocess.run(["sh", "-c", f"cat /dev/zero > {disk / 'fill'}"], capture_output=True)


def files_on(disk: Path) -> list[str]:
    return sorted(str(Path(d, f).relative_to(disk)) for d, _, files in os.walk(disk) for f in files
                  if not f.startswith("fill"))


def test_full_disk_before_the_add_runs_no_plugin(inject: Tool, lab: Any, pod: Any,
                                                  small_disk: Path) -> None:
    inject.cache = small_disk / "cni"
    calls = slow_plugin(inject)
    links = host_links()
    fill_blocks(small_disk)
    run = inject("add", *args_for(pod), "-spec", inject.chain("slow"))
    assert (run.code, run.out) == (1, "")
    assert run.error.startswith("result cache ") and run.error.endswith(": No space left on device")
    assert not calls.exists() and files_on(small_disk) == []
    nothing_left(inject, lab, pod, links)


def test_full_disk_after_the_add_rolls_it_back(inject: Tool, lab: Any, pod: Any, small_disk: Path) -> None:
    inject.cache = small_disk / "cni"
    fill = small_disk / "fill"
    calls = slow_plugin(inject, add=f"cat /dev/zero > {fill} 2>/dev/null")
    links = host_links()
    run = inject("add", *args_for(pod), "-spec", inject.chain("slow"))
    assert (run.code, run.out) == (1, "")
    assert run.error.startswith("result cache ")
    assert run.error.endswith(": No space left on device; rolled back (DEL ran for slow, ptp)")
    assert calls.read_text().split() == ["ADD", "DEL"] and fill.stat().st_size > 0
    assert files_on(small_disk) == []
    nothing_left(inject, lab, pod, links)


def test_no_room_for_the_lock_file_runs_no_plugin(inject: Tool, lab: Any, pod: Any,
                                                   small_disk: Path) -> None:
    inject.cache = small_disk / "cni"
    calls = slow_plugin(inject)
    links = host_links()
    for n in range(64):  # use up the inodes
        try:
            (small_disk / f"fill{n}").touch()
        except OSError:
            break
    run = inject("add", *args_for(pod), "-spec", inject.chain("slow"))
    assert (run.code, run.out) == (1, "")
    assert run.error.startswith("lock ") and run.error.endswith(": No space left on device")
    assert not calls.exists() and files_on(small_disk) == []
    nothing_left(inject, lab, pod, links)


# ---- the runtime crashes under a batch ----------------------------------------------------------

def test_containerd_killed_and_restarted_during_a_batch(
        inject: Tool, lab: Any, make_pod: Callable[..., Any]) -> None:
    pods = {p.name: p for p in (make_pod(labels={"app": "crash"}, container=False) for _ in range(20))}
    slow_plugin(inject, add="sleep 1")
    spec = inject.chain("slow")
    selector = ["-ns", "if-inject", "-l", "app=crash", "-spec", spec]
    proc = inject.start("add", *selector, "-parallel", "4")
    assert proc.stdout is not None
    first = proc.stdout.readline()  # four pods done, the next four under way
    lab.kill_containerd()
    try:
        time.sleep(1.5)  # the pods looked up meanwhile find no runtime
    finally:
        lab.start_containerd()
    run = finish(proc)
    lines = json_lines(Run(run.code, first + run.out, run.err))
    assert sorted(lines) == sorted(pods) and run.code == 1, (first + run.out, run.err)
    added = {name for name, line in lines.items() if "result" in line}
    failed = set(pods) - added
    assert len(added) >= 4 and failed, lines
    for name in failed:  # each with its own error, from the runtime, before anything was done
        assert "rolled back" not in lines[name]["error"], lines[name]
    for name, pod in pods.items():
        assert ("inet 10.22.22." in netns_addrs(pod.netns)) == (name in added)
    assert sorted(inject.leases()) == sorted(
        lines[name]["result"]["ips"][0]["address"].split("/")[0] for name in added)
    assert len(inject.cache_files()) == len(added)

    before = {name: settled(partial(netns_addrs, pods[name].netns)) for name in added}
    again = inject("add", *selector)
    lines = json_lines(again)
    assert again.code == 1 and sorted(lines) == sorted(pods)
    assert {name for name, line in lines.items() if "result" in line} == failed
    for name in added:
        assert lines[name]["error"] == f"interface net1 already exists in pod if-inject/{name}"
        assert netns_addrs(pods[name].netns) == before[name]
    assert len(inject.leases()) == 20 and len(inject.cache_files()) == 20
    assert inject("del", *selector).code == 0
    assert inject.leases() == [] and inject.cache_files() == []
