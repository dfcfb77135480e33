"""The lab itself: real pods as kubelet makes them, and a clean machine afterwards."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from support import REPO, cri_schema
from support.lab import (
    BUSYBOX_IMAGE,
    CNI_RESULTS,
    DEFAULT_RUNTIME,
    IP_FORWARD,
    KERNEL_DEATHS,
    KILL,
    OWNED,
    PAUSE_IMAGE,
    RUNTIMES,
    SHIM_SOCKETS,
    Lab,
    Pod,
    mounts_under,
    proc_alive,
    proc_cmdline,
    stop_ours,
)
from support.machine import LAB_PREFIX, clean_killed_sessions

SCRIPT_ENV = {**os.environ, "PYTHONPATH": str(REPO)}  # support.lab as a script, from test/
READY, NOTREADY = "SANDBOX_READY", "SANDBOX_NOTREADY"


def sandboxes_of(lab: Lab, pod: Pod) -> dict[str, str]:
    """{sandbox id: state} of the pod, found by its labels as the tool finds it."""
    selector = {"io.kubernetes.pod.name": pod.name, "io.kubernetes.pod.namespace": pod.namespace}
    items = lab.cri("ListPodSandbox", {"filter": {"label_selector": selector}}).items
    return {s.id: (READY if s.state == cri_schema.SANDBOX_READY else NOTREADY) for s in items}


def eth0_address(lab: Lab, pod: Pod) -> ipaddress.IPv4Interface:
    code, out, err = lab.exec(pod, ["ip", "-o", "-4", "addr", "show", "eth0"])
    assert code == 0, err
    return ipaddress.IPv4Interface(out.split()[3])


def is_netns(path: str | None) -> bool:
    """A network namespace's file (on nsfs), not the plain file its vanished mount leaves."""
    return path is not None and os.path.exists(path) and \
        os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev


def leftovers(lab: Lab, sandbox_ids: set[str]) -> list[str]:
    """Everything of `lab` still on the machine, concretely."""
    root = str(lab.root)
    found = [f"process {pid}" for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
             if proc_alive(pid) and any(root in arg for arg in proc_cmdline(pid))]
    found += [f"mount {m}" for m in mounts_under(root)]
    found += [f"link {lab.bridge}"] if os.path.exists(f"/sys/class/net/{lab.bridge}") else []
    found += [f"cgroup {d}" for d in Path("/sys/fs/cgroup").glob(f"*{lab.cgroup_parent}")]
    found += [f"cni cache {p}" for p in CNI_RESULTS.glob("*")
              if p.name.startswith(f"{lab.network}-") or any(i in p.name for i in sandbox_ids)]
    for id_ in sandbox_ids:
        shim = SHIM_SOCKETS / hashlib.sha256(f"{lab.socket}/k8s.io/{id_}".encode()).hexdigest()
        found += [f"shim socket {shim}"] if shim.exists() else []
    found += [f"file {lab.root / n}" for n in OWNED if (lab.root / n).exists()]
    return found


# ---- pods as kubelet makes them -------------------------------------------------------

def test_pod_netns_is_the_pause_process_netns(lab: Lab, pod: Pod) -> None:
    assert pod.netns is not None
    assert pod.netns.startswith(f"{lab.root}/state/io.containerd.grpc.v1.cri/netns/cni-")
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    assert any(line.split()[4] == pod.netns and " - nsfs " in line for line in mountinfo)
    info = lab.sandbox_info(pod)
    assert proc_cmdline(info["pid"]) == ["/pause"]
    ns, pause_ns = os.stat(pod.netns), os.stat(f"/proc/{info['pid']}/ns/net")
    assert (ns.st_dev, ns.st_ino) == (pause_ns.st_dev, pause_ns.st_ino)
    own = os.stat("/proc/self/ns/net")
    assert (ns.st_dev, ns.st_ino) != (own.st_dev, own.st_ino)
    assert info["cniResult"]["Interfaces"]["eth0"]["Sandbox"] == pod.netns


def test_exec_sees_eth0_with_an_address_of_the_lab_subnet(lab: Lab, pod: Pod) -> None:
    address = eth0_address(lab, pod)
    assert address.network == ipaddress.IPv4Network(lab.subnet)
    status = lab.cri("PodSandboxStatus", {"pod_sandbox_id": pod.sandbox_id}).status
    assert status.network.ip == str(address.ip)


@pytest.mark.runtimes
def test_exec_runs_in_the_container_of_the_pod(lab: Lab, pod: Pod) -> None:
    """In the image's files and the container's PID namespace, not the runtime's or the node's."""
    assert lab.exec(pod, ["cat", "/etc/passwd"]) == (0, "root:x:0:0:root:/root:/bin/sh\n", "")
    assert lab.exec(pod, ["cat", "/proc/1/cmdline"]) == (0, "sleep\0infinity\0", "")


def test_exec_reports_exit_code_and_stderr(lab: Lab, pod: Pod) -> None:
    code, out, err = lab.exec(pod, ["ip", "link", "show", "net1"])
    assert code != 0 and out == "" and "net1" in err


@pytest.mark.runtimes("containerd-1.6", "containerd-1.7", "containerd-2.1")  # runc's log.json: containerd's
def test_exec_that_runc_cannot_start_says_what_runc_and_the_kernel_logged(lab: Lab, pod: Pod) -> None:
    """A failed ExecSync carries runc's log.json lines and the kernel's crash and OOM
    records of that moment (LAB.md: an exec's runc init that died before its first byte)."""
    with pytest.raises(RuntimeError) as failed:
        lab.exec(pod, ["/no-such-command"])
    message = str(failed.value)
    runc_log, _, kernel = message.partition("\nthe kernel's crashes and OOM kills meanwhile:\n")
    assert "runc's log:\n" in runc_log and "stat /no-such-command: no such file or directory" in \
        runc_log.partition("runc's log:\n")[2]
    assert kernel and all(line == "(none)" or KERNEL_DEATHS.search(line) for line in kernel.splitlines())


def test_pod_has_kubelet_labels(lab: Lab, make_pod: Callable[..., Pod]) -> None:
    pod = make_pod("alpine-labels", labels={"app": "alpine"})
    assert sandboxes_of(lab, pod) == {pod.sandbox_id: READY}
    status = lab.cri("PodSandboxStatus", {"pod_sandbox_id": pod.sandbox_id}).status
    assert dict(status.labels) == {
        "app": "alpine", "io.kubernetes.pod.name": "alpine-labels",
        "io.kubernetes.pod.namespace": "if-inject", "io.kubernetes.pod.uid": pod.uid}
    assert (status.metadata.name, status.metadata.namespace, status.metadata.uid) == (
        "alpine-labels", "if-inject", pod.uid)


def test_stop_pod_leaves_a_notready_sandbox(lab: Lab, pod: Pod) -> None:
    lab.stop_pod(pod)
    assert sandboxes_of(lab, pod) == {pod.sandbox_id: NOTREADY}
    info = lab.sandbox_info(pod)
    assert info["netNamespaceClosed"] is True and info["pid"] == 0
    assert pod.netns is not None and pod.netns not in mounts_under(str(lab.root))


def test_restart_leaves_a_stopped_sandbox_beside_the_ready_one(lab: Lab, pod: Pod) -> None:
    again = lab.restart_pod(pod)
    assert (again.uid, again.attempt) == (pod.uid, 1)
    assert sandboxes_of(lab, pod) == {pod.sandbox_id: NOTREADY, again.sandbox_id: READY}
    assert again.netns not in (None, pod.netns)
    assert eth0_address(lab, again).network == ipaddress.IPv4Network(lab.subnet)


def test_host_network_pod_has_no_network_namespace_entry(lab: Lab,
                                                         make_pod: Callable[..., Pod]) -> None:
    pod = make_pod(host_network=True)
    assert pod.netns is None
    info = lab.sandbox_info(pod)
    assert "network" not in [ns["type"] for ns in info["runtimeSpec"]["linux"]["namespaces"]]
    status = lab.cri("PodSandboxStatus", {"pod_sandbox_id": pod.sandbox_id}).status
    assert status.linux.namespaces.options.network == cri_schema.NODE
    code, out, _ = lab.exec(pod, ["ip", "-o", "link"])
    assert code == 0 and f": {lab.bridge}:" in out  # the node's own links


# ---- labs side by side, and nothing left behind ------------------------------------------

@pytest.mark.runtimes
def test_two_labs_side_by_side(lab: Lab, lab_base: Path, pod: Pod) -> None:
    """Two labs of one runtime (two containerds on one cached Debian root, for 1.7 and 2.1)."""
    second = Lab(str(lab_base / f"second-{lab.runtime}"), lab.runtime)
    names = ["socket", "bridge", "network", "cgroup_parent", "subnet"]
    assert all(getattr(lab, n) != getattr(second, n) for n in names)
    ids: set[str] = set()
    netns = None
    try:
        second.up()
        other = second.run_pod(pod.namespace, pod.name, labels={"app": "alpine"})
        ids.add(other.sandbox_id)
        netns = other.netns
        # The second runtime's namespaces unmounted no pod netns of the first (LAB.md).
        assert is_netns(netns) and is_netns(pod.netns)
        assert eth0_address(second, other).network == ipaddress.IPv4Network(second.subnet)
        assert eth0_address(lab, pod).network == ipaddress.IPv4Network(lab.subnet)
    finally:
        second.down()
    assert leftovers(second, ids) == []
    assert netns is not None and not os.path.exists(netns) and is_netns(pod.netns)
    assert eth0_address(lab, pod).network == ipaddress.IPv4Network(lab.subnet)
    assert sandboxes_of(lab, pod) == {pod.sandbox_id: READY}


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_down_leaves_nothing(lab_base: Path, runtime: str) -> None:
    third = Lab(str(lab_base / f"third-{runtime}"), runtime)
    before = IP_FORWARD.read_text()
    ids: set[str] = set()
    netns: list[str] = []
    try:
        third.up()
        pods = [third.run_pod("if-inject", "a"), third.run_pod("if-inject", "b", host_network=True)]
        pods.append(third.restart_pod(pods[0]))
        ids = {p.sandbox_id for p in pods}
        netns = [p.netns for p in pods[1:] if p.netns]  # the first one's netns is gone already
        assert leftovers(third, ids) != [] and all(map(os.path.exists, netns))
        IP_FORWARD.write_text("0\n" if before.strip() == "1" else "1\n")  # as the ptp plugin does
    finally:
        third.down()
    assert leftovers(third, ids) == [] and not any(map(os.path.exists, netns))
    assert IP_FORWARD.read_text() == before


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_clean_after_a_crash(lab_base: Path, runtime: str) -> None:
    """A lab whose controlling process died and whose containerd was killed;
    a runtime in a root loses its namespaces too, its pods with them."""
    root = str(lab_base / f"crashed-{runtime}")
    up = subprocess.run([sys.executable, "-m", "support.lab", "up", root, runtime], capture_output=True,
                        text=True, cwd=REPO / "test", env=SCRIPT_ENV)
    crashed = Lab(root, runtime)
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == crashed.endpoint
    pod = crashed.run_pod("if-inject", "a")
    crashed._close_channel()
    pid = int((crashed.root / "containerd.pid").read_text())  # recorded by the lab
    assert stop_ours(pid, lambda p: p == crashed._containerd_pid(), KILL)
    if crashed.suite:
        holder = int((crashed.root / "holder.pid").read_text())
        assert stop_ours(holder, lambda p: p == crashed._holder_pid(), KILL)
        assert pod.netns is not None and os.path.exists(pod.netns)  # on the host, held by nothing
    # The runtime is the one `up` recorded.
    down = subprocess.run([sys.executable, "-m", "support.lab", "down", root], capture_output=True,
                          text=True, cwd=REPO / "test", env=SCRIPT_ENV)
    assert down.returncode == 0, down.stderr
    assert leftovers(crashed, {pod.sandbox_id}) == []
    assert pod.netns is not None and not os.path.exists(pod.netns)


KILLED_SESSION = """
import os, signal, sys, tempfile
from support.lab import DEFAULT_RUNTIME, Lab
from support.machine import LAB_BASES
base = tempfile.mkdtemp(prefix=f"{LAB_BASES}{os.getpid()}-", dir=sys.argv[1])  # as a session's
lab = Lab(os.path.join(base, DEFAULT_RUNTIME))
lab.up()
pod = lab.run_pod("if-inject", "a")
print(base, pod.sandbox_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no teardown, as a session killed mid-run
"""


def test_the_labs_of_a_killed_session_are_cleaned_up_by_the_next(lab_base: Path) -> None:
    killed = subprocess.run([sys.executable, "-c", KILLED_SESSION, str(lab_base)], capture_output=True,
                            text=True, cwd=REPO / "test", env=SCRIPT_ENV, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    base, sandbox_id = killed.stdout.split()
    left = Lab(os.path.join(base, DEFAULT_RUNTIME))
    assert leftovers(left, {sandbox_id}) != []  # its containerd and pod run on
    live = tempfile.mkdtemp(prefix=LAB_PREFIX, dir=lab_base)  # a live session's (ours) stays
    assert clean_killed_sessions(str(lab_base)) == [base]
    assert leftovers(left, {sandbox_id}) == [] and not os.path.exists(base)
    assert os.path.isdir(live)


def test_images_are_imported_under_their_names(lab: Lab) -> None:
    tags = {tag for image in lab.cri("ListImages").images for tag in image.repo_tags}
    assert {PAUSE_IMAGE, BUSYBOX_IMAGE} <= tags


# ---- the other fixtures -------------------------------------------------------------------

def test_netns_fixture_is_a_named_netns(netns: str) -> None:
    name = os.path.basename(netns)
    assert name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    ns, own = os.stat(netns), os.stat("/proc/self/ns/net")
    assert (ns.st_dev, ns.st_ino) != (own.st_dev, own.st_ino)
