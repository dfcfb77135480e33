"""if-inject on every CRI runtime users run, each played by test/support/fake_cri.py.

cri-dockerd and older cri-o releases cannot run on these machines, and the
runtimes' rarer states (a shim gone, 2.3's quiet info, /proc paths) cannot be
had on demand: here every runtime is a fake_cri personality that answers as
that runtime's source does (test/unit/test_fakes_real.py and
test/test_fakes_live.py hold them against the lab's real containerd 1.6, 1.7,
2.1 and cri-o 1.36.3). Their answers point at a real network namespace the test
makes (`ip netns add`, or a process inside one for /proc/<pid>/ns/net), so
`add`, `check` and `del` run the real ptp and host-local plugins, and the tests
look at the result from inside the namespace.

Also here: the runtime faults (gRPC errors, answers the tool cannot use, pods
it must refuse). The order in which the tool looks for a runtime socket needs
no netns, nor root: test/unit/test_endpoints.py.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest

import if_inject
from support import CNI_BIN
from support.cri_schema import POD, SANDBOX_NOTREADY
from support.fake_cri import (
    CONTAINERD_16,
    CONTAINERD_17,
    CONTAINERD_20,
    CONTAINERD_23,
    CRI_DOCKERD,
    CRIO,
    NAME,
    NS,
    PROC_PATH,
    Runtime,
    Sandbox,
    Serve,
    containerd2_sandbox,
    containerd16_sandbox,
    containerd_host_network_sandbox,
    cri_dockerd_sandbox,
    crio_old_spoofed_sandbox,
    crio_sandbox,
    proc_path_sandbox,
    with_info,
)
from support.node import cache_entries, inode, ip, leases, link_exists, link_names
from support.toolrun import error_of
from support.toolrun import run_clean as run

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists(f"{CNI_BIN}/ptp"),
    reason="needs root and the CNI plugins in /usr/lib/cni (network namespaces, ptp)")


# ---- fixtures -------------------------------------------------------------


@pytest.fixture
def node_netns(netns: str) -> Iterator[str]:
    """A pinned copy of the node's own netns, as cri-o pins one for hostNetwork pods.
    (After conftest's `netns`, so that its cleanup of /run/netns comes last.)"""
    name = f"if-inject-node-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "attach", name, str(os.getpid())], check=True)
    path = f"/run/netns/{name}"
    try:
        assert inode(path) == inode("/proc/self/ns/net")
        yield path
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


_subnets = itertools.count(1)


@dataclass
class Network:
    """A ptp + host-local network with its own IPAM dir and result cache."""

    spec: Path
    name: str
    data_dir: Path
    cache_dir: Path

    def flags(self) -> list[str]:
        return ["-cni-path", CNI_BIN, "-cache-dir", str(self.cache_dir)]

    def leases(self) -> dict[str, str]:
        """{address: container ID} as host-local keeps them."""
        ipam = self.data_dir / self.name
        return {a: (ipam / a).read_text().splitlines()[0] for a in leases(self.data_dir, self.name)}

    def leftovers(self) -> list[str]:
        """Cache entries, leases and lock files: none after a del or a failure."""
        locks = self.cache_dir / "if-inject-locks"
        left = cache_entries(self.cache_dir) + leases(self.data_dir, self.name)
        return left + ([str(locks)] if locks.exists() else [])


@pytest.fixture
def network(tmp_path: Path) -> Network:
    """The ptp network of the add/check/del tests (conftest's restore_ip_forward puts
    back the ip_forward that ptp sets)."""
    net = Network(tmp_path / "ptp.json", "if-inject-rt", tmp_path / "ipam", tmp_path / "cache")
    net.spec.write_text(json.dumps({
        "cniVersion": "1.0.0", "name": net.name, "type": "ptp",
        "ipam": {"type": "host-local", "dataDir": str(net.data_dir),
                 "ranges": [[{"subnet": f"10.231.{next(_subnets)}.0/24"}]]}}))
    return net


# ---- helpers ------------------------------------------------------------------


def addresses_in(netns: str, ifname: str) -> list[str] | None:
    """The IPv4 addresses of `ifname` seen from inside `netns`; None when it does not exist."""
    if ifname not in link_names(netns):
        return None
    out = ip("-o", "-4", "addr", "show", "dev", ifname, netns=netns)
    return [line.split()[3] for line in out.splitlines()]


def host_end(result: dict[str, object]) -> str:
    """The ptp veth's node end in a CNI result: the interface without a sandbox."""
    interfaces = result["interfaces"]
    assert isinstance(interfaces, list)
    (name,) = [i["name"] for i in interfaces if not i.get("sandbox")]
    return str(name)


def var_run(netns: str) -> str:
    """The netns as cri-o and containerd 2.x name it: /var/run/netns/NAME (/var/run is /run)."""
    return "/var" + netns


# ---- personalities: each runtime's answers for a pod in a real netns ----------

# (netns path, pid in it) -> (the runtime, its sandbox, the path if-inject must print)
Personality = Callable[[str, int], tuple[Runtime, Sandbox, str]]

PERSONALITIES: dict[str, Personality] = {
    "cri-o": lambda netns, pid: (CRIO, crio_sandbox(NAME, var_run(netns), NS), var_run(netns)),
    "cri-o-infra-ctr": lambda netns, pid: (
        CRIO, crio_sandbox(NAME, var_run(netns), NS, infra_pid=pid), var_run(netns)),
    "containerd-1.6": lambda netns, pid: (
        CONTAINERD_16, containerd16_sandbox(NAME, netns, pid, NS), netns),
    "containerd-1.7": lambda netns, pid: (
        CONTAINERD_17, containerd16_sandbox(NAME, var_run(netns), pid, NS), var_run(netns)),
    "proc-path-in-spec": lambda netns, pid: (
        PROC_PATH, proc_path_sandbox(NAME, pid, NS), f"/proc/{pid}/ns/net"),
    "containerd-2.0": lambda netns, pid: (
        CONTAINERD_20, containerd2_sandbox(NAME, var_run(netns), pid, NS), var_run(netns)),
    "containerd-2.0-no-spec": lambda netns, pid: (
        CONTAINERD_20, ready_without_spec(containerd2_sandbox(NAME, var_run(netns), pid, NS, shim_gone=True)),
        var_run(netns)),
    "containerd-2.3": lambda netns, pid: (
        CONTAINERD_23, containerd2_sandbox(NAME, var_run(netns), pid, NS), var_run(netns)),
    "cri-dockerd": lambda netns, pid: (
        CRI_DOCKERD, cri_dockerd_sandbox(NAME, pid, NS), f"/proc/{pid}/ns/net"),
}


def ready_without_spec(sandbox: Sandbox) -> Sandbox:
    """runtimeSpec null but the sandbox still ready: only NetNSPath tells the netns."""
    sandbox.status_state = None
    return sandbox


@needs_root
def test_a_sandbox_whose_shim_is_gone_is_no_target(tool: list[str], serve: Serve, netns: str,
                                                   netns_pid: int) -> None:
    """containerd 2.x lists it READY a moment longer than its status says so: refused."""
    sandbox = containerd2_sandbox(NAME, var_run(netns), netns_pid, NS, shim_gone=True)
    cri = serve(CONTAINERD_20, [sandbox])
    out = run(tool, "-runtime-endpoint", cri.endpoint, "netns", "-ns", NS, "-pod", NAME)
    assert (out.returncode, out.stdout) == (1, "")
    assert json.loads(out.stderr)["error"] == (f"pod {NS}/{NAME} not found on this node "
                                               f"(sandbox {sandbox.id} is no longer ready)")


def container_id(sandbox: Sandbox, netns_path: str) -> str:
    """The CNI container ID the tool uses: the netns file's name, the sandbox ID for /proc paths."""
    return sandbox.id if netns_path.startswith("/proc/") else os.path.basename(netns_path)


@needs_root
@pytest.mark.parametrize("personality", PERSONALITIES)
def test_netns_prints_the_path_the_runtime_gives(personality: str, tool: list[str], serve: Serve,
                                                  netns: str, netns_pid: int) -> None:
    runtime, sandbox, expected = PERSONALITIES[personality](netns, netns_pid)
    cri = serve(runtime, [sandbox])
    out = run(tool, "-runtime-endpoint", cri.endpoint, "netns", "-ns", NS, "-pod", NAME)
    assert (out.returncode, out.stdout, out.stderr) == (0, expected + "\n", "")
    assert inode(expected) == inode(netns)
    # Only a verbose status has the netns (containerd 2.3 sends an empty info without).
    assert [r.verbose for m, r in cri.calls if m == "PodSandboxStatus"] == [True]


@needs_root
@pytest.mark.parametrize("personality", PERSONALITIES)
def test_add_check_del_through_the_cli(personality: str, tool: list[str], serve: Serve, netns: str,
                                       netns_pid: int, network: Network) -> None:
    runtime, sandbox, path = PERSONALITIES[personality](netns, netns_pid)
    cri = serve(runtime, [sandbox])
    pod = ["-ns", NS, "-pod", NAME, "-spec", str(network.spec)]
    flags = ["-runtime-endpoint", cri.endpoint, *network.flags()]

    added = run(tool, *flags, "add", *pod)
    assert added.returncode == 0, added.stderr
    result = json.loads(added.stdout)
    address = result["ips"][0]["address"]
    assert addresses_in(netns, "net1") == [address]
    assert network.leases() == {address.split("/")[0]: container_id(sandbox, path)}
    assert link_exists(host_end(result))

    checked = run(tool, *flags, "check", *pod)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")

    deleted = run(tool, *flags, "del", *pod)
    assert (deleted.returncode, deleted.stdout, deleted.stderr) == (0, "", "")
    assert addresses_in(netns, "net1") is None
    assert not link_exists(host_end(result))
    assert network.leftovers() == []


@needs_root
@pytest.mark.parametrize("personality", PERSONALITIES)
def test_add_check_del_through_the_api(personality: str, serve: Serve, netns: str, netns_pid: int,
                                       network: Network) -> None:
    runtime, sandbox, path = PERSONALITIES[personality](netns, netns_pid)
    cri = serve(runtime, [sandbox])
    assert if_inject.resolve_netns(NS, NAME, endpoint=cri.endpoint, timeout=5) == path
    with if_inject.Node(cri.endpoint, 5, [CNI_BIN], str(network.cache_dir)) as node:
        pod = node.pod(NS, NAME)
        assert (pod.sandbox_id, pod.uid, pod.netns, pod.network_mode) == (
            sandbox.id, sandbox.uid, path, "POD")
        assert node.client.version.runtime_name == runtime.name
        result = if_inject.add(NS, NAME, str(network.spec), node=node)
        assert addresses_in(netns, "net1") == [result["ips"][0]["address"]]
        if_inject.check(NS, NAME, str(network.spec), node=node)
        assert if_inject.delete(NS, NAME, str(network.spec), node=node) == 1
    assert addresses_in(netns, "net1") is None
    assert network.leftovers() == []


@needs_root
def test_del_of_a_sandbox_removed_while_looking_uses_the_cache(
        tool: list[str], serve: Serve, netns: str, network: Network) -> None:
    """Listed, then NOT_FOUND: for a del that is a pod that is gone, not an error."""
    sandbox = crio_sandbox(NAME, var_run(netns), NS)
    cri = serve(CRIO, [sandbox])
    flags = ["-runtime-endpoint", cri.endpoint, *network.flags()]
    pod = ["-ns", NS, "-pod", NAME, "-spec", str(network.spec)]
    assert run(tool, *flags, "add", *pod).returncode == 0
    sandbox.vanishes = True
    before = len(cri.calls)
    deleted = run(tool, *flags, "del", *pod)
    assert (deleted.returncode, deleted.stdout, deleted.stderr) == (0, "", "")
    assert [m for m, _ in cri.calls[before:]] == [
        "Version", "ListPodSandbox", "PodSandboxStatus", "ListPodSandbox"]
    assert addresses_in(netns, "net1") is None
    assert network.leftovers() == []


@needs_root
def test_del_after_the_shim_is_gone_uses_the_cache(tool: list[str], serve: Serve, netns: str,
                                                   netns_pid: int, network: Network) -> None:
    """containerd 2.x: the sandbox turns NOTREADY (runtimeSpec null); del still cleans up."""
    sandbox = containerd2_sandbox(NAME, var_run(netns), netns_pid, NS)
    cri = serve(CONTAINERD_20, [sandbox])
    flags = ["-runtime-endpoint", cri.endpoint, *network.flags()]
    pod = ["-ns", NS, "-pod", NAME, "-spec", str(network.spec)]
    assert run(tool, *flags, "add", *pod).returncode == 0
    cri.sandboxes = [containerd2_sandbox(NAME, var_run(netns), netns_pid, NS, shim_gone=True)]
    cri.sandboxes[0].state = SANDBOX_NOTREADY
    deleted = run(tool, *flags, "del", *pod)
    assert (deleted.returncode, deleted.stdout, deleted.stderr) == (0, "", "")
    assert addresses_in(netns, "net1") is None
    assert network.leftovers() == []


@needs_root
@pytest.mark.parametrize("spec", [True, False], ids=["with-spec", "from-the-cache"])
def test_del_in_a_running_pod_whose_netns_cannot_be_seen_does_nothing(
        tool: list[str], serve: Serve, netns: str, netns_pid: int, network: Network, spec: bool) -> None:
    """Ready, but its netns is not there for this process (a pod without /run/netns
    mounted): never taken for a pod that is gone, whose DEL runs without a netns and
    would free the lease of the interface that stays."""
    sandbox = containerd2_sandbox(NAME, var_run(netns), netns_pid, NS)
    cri = serve(CONTAINERD_20, [sandbox])
    flags = ["-runtime-endpoint", cri.endpoint, *network.flags()]
    pod = ["-ns", NS, "-pod", NAME, *(["-spec", str(network.spec)] if spec else [])]
    assert run(tool, *flags, "add", "-ns", NS, "-pod", NAME, "-spec", str(network.spec)).returncode == 0
    left = network.leftovers()  # its cache entry and lease
    unseen = "/var/run/netns/if-inject-unseen"
    cri.sandboxes = [replace(sandbox, info=containerd2_sandbox(NAME, unseen, netns_pid, NS).info)]
    deleted = run(tool, *flags, "del", *pod)
    assert (deleted.returncode, deleted.stdout) == (1, "")
    assert error_of(deleted) == (f"pod {NS}/{NAME} is running, but network namespace {unseen}: "
                                 "No such file or directory: nothing deleted")
    assert addresses_in(netns, "net1") is not None
    assert network.leftovers() == left and len(left) == 2
    cri.sandboxes = [sandbox]
    assert run(tool, *flags, "del", *pod).returncode == 0
    assert network.leftovers() == []


@needs_root
def test_add_after_an_add_killed_half_way_releases_what_it_took(
        tool: list[str], serve: Serve, netns: str, netns_pid: int, network: Network) -> None:
    """An add killed after its plugin took a lease, before its interface was done and
    its result cached (its entry written first, result-less): the next add of that
    interface DELs it first, so the lease is not taken twice."""
    cri = serve(CONTAINERD_16, [containerd16_sandbox(NAME, netns, netns_pid, NS)])
    flags = ["-runtime-endpoint", cri.endpoint, *network.flags()]
    add = [*flags, "add", "-ns", NS, "-pod", NAME, "-spec", str(network.spec)]
    first = run(tool, *add)
    assert first.returncode == 0, first.stderr
    (entry_file,) = (network.cache_dir / "results").iterdir()
    entry = json.loads(entry_file.read_text())
    entry_file.write_text(json.dumps({k: v for k, v in entry.items() if k != "result"}))
    ip("link", "del", "net1", netns=netns)  # its node end goes with it
    assert len(network.leases()) == 1
    again = run(tool, *add)
    assert again.returncode == 0, again.stderr
    assert "Cleaning up an earlier interrupted add" in again.stderr
    address = json.loads(again.stdout)["ips"][0]["address"]
    assert addresses_in(netns, "net1") == [address] and len(network.leases()) == 1
    assert run(tool, *flags, "del", "-ns", NS, "-pod", NAME, "-spec", str(network.spec)).returncode == 0
    assert network.leftovers() == []


@needs_root
@pytest.mark.parametrize("whose", ["libcni", "another pod"])
def test_add_over_an_entry_that_is_not_this_pods_leaves_it_alone(
        tool: list[str], serve: Serve, netns: str, netns_pid: int, network: Network, whose: str) -> None:
    """A cache entry already under the name of the coming add (network, container ID,
    interface) that if-inject did not leave in this pod's sandbox, Multus' or a runtime's
    (libcni format), or another pod's (the same -containerid twice): no DEL with it (its
    lease would be freed), no overwrite; the add is refused and nothing runs."""
    cri = serve(CONTAINERD_16, [containerd16_sandbox(NAME, netns, netns_pid, NS)])
    flags = ["-runtime-endpoint", cri.endpoint, *network.flags()]
    entry: dict[str, object] = {"kind": "cniCacheV1", "containerId": "shared", "ifName": "net1",
                                "networkName": network.name, "config": "e30=",
                                "result": {"cniVersion": "1.0.0", "ips": [{"address": "10.231.0.9/24"}]}}
    if whose == "another pod":
        entry["ifInject"] = {"namespace": NS, "pod": "other", "sandboxId": "f" * 64}
    (network.cache_dir / "results").mkdir(parents=True, mode=0o700)
    planted = network.cache_dir / "results" / f"{network.name}-shared-net1"
    planted.write_text(json.dumps(entry))
    planted.chmod(0o600)
    added = run(tool, *flags, "add", "-ns", NS, "-pod", NAME, "-spec", str(network.spec),
                "-containerid", "shared")
    assert (added.returncode, added.stdout) == (1, "")
    whose_text = f"pod {NS}/other's" if whose == "another pod" else "not if-inject's"
    assert error_of(added) == (f"cache entry {planted} is {whose_text}: refusing to add over it "
                               "(another -containerid?)")
    assert json.loads(planted.read_text()) == entry and network.leases() == {}
    assert addresses_in(netns, "net1") is None
    planted.unlink()


@needs_root
def test_del_without_spec_in_a_running_cri_dockerd_pod(tool: list[str], serve: Serve, netns: str,
                                                       netns_pid: int, network: Network) -> None:
    """cri-dockerd's netns is /proc/<pid>/ns/net: a del from the cache in a running
    pod runs in the netns the runtime reports now, not in none (which would leave
    the interface in the pod)."""
    cri = serve(CRI_DOCKERD, [cri_dockerd_sandbox(NAME, netns_pid, NS)])
    flags = ["-runtime-endpoint", cri.endpoint, *network.flags()]
    added = run(tool, *flags, "add", "-ns", NS, "-pod", NAME, "-spec", str(network.spec))
    assert added.returncode == 0, added.stderr
    result = json.loads(added.stdout)
    assert addresses_in(netns, "net1") == [result["ips"][0]["address"]]
    deleted = run(tool, *flags, "del", "-ns", NS, "-pod", NAME)
    assert (deleted.returncode, deleted.stdout, deleted.stderr) == (0, "", "")
    assert addresses_in(netns, "net1") is None
    assert not link_exists(host_end(result))
    assert network.leftovers() == []


@needs_root
def test_del_through_another_runtime_runs_in_the_netns_the_pods_runtime_reports(
        tool: list[str], serve: Serve, netns: str, netns_pid: int, network: Network) -> None:
    """A mistyped -r, or two runtimes: the runtime that made the attachment says
    its pod lives, in /proc/<pid>/ns/net (cri-dockerd): the DEL runs there, not in none."""
    made = serve(CRI_DOCKERD, [cri_dockerd_sandbox(NAME, netns_pid, NS)], name="made.sock")
    other = serve(CONTAINERD_16, name="other.sock")
    added = run(tool, "-runtime-endpoint", made.endpoint, *network.flags(), "add", "-ns", NS, "-pod", NAME,
                "-spec", str(network.spec))
    assert added.returncode == 0, added.stderr
    result = json.loads(added.stdout)
    deleted = run(tool, "-runtime-endpoint", other.endpoint, *network.flags(), "del", "-ns", NS, "-pod", NAME)
    assert (deleted.returncode, deleted.stdout, deleted.stderr) == (0, "", "")
    assert addresses_in(netns, "net1") is None
    assert not link_exists(host_end(result))
    assert network.leftovers() == []


@needs_root
def test_del_through_another_runtime_while_the_pods_runtime_is_down_does_nothing(
        tool: list[str], serve: Serve, netns: str, netns_pid: int, network: Network) -> None:
    """The runtime that made the attachment cannot be asked, and its netns (a
    /proc/<pid>/ns/net path, never taken from the cache) is not here to DEL in:
    whether the pod lives cannot be told, so nothing is deleted (a DEL without
    the netns would free the lease of an interface left in the pod). Once that
    runtime answers again, the del runs in the netns it reports."""
    sandbox = cri_dockerd_sandbox(NAME, netns_pid, NS)
    made = serve(CRI_DOCKERD, [sandbox], name="made.sock")
    other = serve(CONTAINERD_16, name="other.sock")
    added = run(tool, "-runtime-endpoint", made.endpoint, *network.flags(), "add", "-ns", NS, "-pod", NAME,
                "-spec", str(network.spec))
    assert added.returncode == 0, added.stderr
    address = json.loads(added.stdout)["ips"][0]["address"]
    kept = network.leftovers()
    made.stop()
    delete = ["-runtime-endpoint", other.endpoint, *network.flags(), "del", "-ns", NS, "-pod", NAME]
    error = error_of(run(tool, *delete))
    assert error.startswith(f"cannot tell whether pod {NS}/{NAME} still runs: the runtime that "
                            f"made it ({made.endpoint}) cannot be asked ("), error
    assert error.endswith(f"and its netns /proc/{netns_pid}/ns/net is not here to DEL in: "
                          "nothing deleted"), error
    assert addresses_in(netns, "net1") == [address] and network.leftovers() == kept
    serve(CRI_DOCKERD, [sandbox], name="made.sock")
    deleted = run(tool, *delete)
    assert (deleted.returncode, deleted.stdout, deleted.stderr) == (0, "", "")
    assert addresses_in(netns, "net1") is None and network.leftovers() == []


@needs_root
def test_gc_asks_the_runtime_that_made_each_attachment(tool: list[str], serve: Serve, netns: str,
                                                       network: Network) -> None:
    """gc through another runtime: the one that made the attachment says its pod
    lives; once it cannot be asked (gone, or another runtime on its socket),
    gc leaves the attachment alone and says so."""
    made = serve(CRIO, [crio_sandbox(NAME, var_run(netns), NS)], name="made.sock")
    other = serve(CONTAINERD_16, name="other.sock")
    pod = ["-ns", NS, "-pod", NAME]
    flags = ["-runtime-endpoint", other.endpoint, *network.flags()]
    added = run(tool, "-runtime-endpoint", made.endpoint, *network.flags(), "add", *pod,
                "-spec", str(network.spec))
    assert added.returncode == 0, added.stderr
    address = json.loads(added.stdout)["ips"][0]["address"]
    kept = network.leftovers()
    alive = run(tool, *flags, "gc")
    assert (alive.returncode, alive.stdout, alive.stderr) == (0, "", "")

    def left_alone(why: str) -> None:
        blind = run(tool, *flags, "gc")
        assert (blind.returncode, blind.stdout) == (1, "")
        [line] = [json.loads(text) for text in blind.stderr.splitlines()]
        assert (line["level"], line["pod"], line["interface"]) == ("error", NAME, "net1")
        assert line["error"].startswith(why), line["error"]
        assert addresses_in(netns, "net1") == [address] and network.leftovers() == kept

    made.stop()
    left_alone(f"cannot reach the runtime that made it ({made.endpoint}): ")
    serve(CONTAINERD_16, name="made.sock")  # another runtime on its socket
    left_alone(f"the runtime that made it (cri-o on {made.endpoint}) is gone: containerd answers there now")

    deleted = run(tool, *flags, "del", *pod)  # named by the user: from the cache, in its netns
    assert (deleted.returncode, deleted.stdout, deleted.stderr) == (0, "", "")
    assert addresses_in(netns, "net1") is None and network.leftovers() == []


# ---- faults: exit 1, one JSON error line, nothing changed -------------------------


@dataclass
class Scene:
    """What a fault's setup may use."""

    serve: Serve
    netns: str
    tmp_path: Path


def answering(info: str) -> Callable[[Scene], str]:
    """A cri-o whose pod's info["info"] is `info` ({netns} is replaced by the real path)."""
    def setup(scene: Scene) -> str:
        sandbox = with_info(Sandbox(NAME, NS), info.replace("{netns}", scene.netns))
        return scene.serve(CRIO, [sandbox]).endpoint
    return setup


def crio_pod(**faults: object) -> Callable[[Scene], str]:
    """A cri-o with a good pod in the test's netns, and `faults`."""
    def setup(scene: Scene) -> str:
        return scene.serve(CRIO, [crio_sandbox(NAME, var_run(scene.netns), NS)], **faults).endpoint
    return setup


def crio_pods(*states: int, vanishes: bool = False) -> Callable[[Scene], str]:
    """A cri-o with one sandbox of the pod per state (attempts)."""
    def setup(scene: Scene) -> str:
        sandboxes = [crio_sandbox(NAME, var_run(scene.netns), NS) for _ in states]
        for attempt, (sandbox, state) in enumerate(zip(sandboxes, states, strict=True)):
            sandbox.state, sandbox.attempt, sandbox.vanishes = state, attempt, vanishes
        return scene.serve(CRIO, sandboxes).endpoint
    return setup


def fifo_netns(scene: Scene) -> str:
    fifo = scene.tmp_path / "fifo"
    os.mkfifo(fifo)
    return scene.serve(CRIO, [crio_sandbox(NAME, str(fifo), NS)]).endpoint


SPEC_WITH = '{"runtimeSpec": {"linux": {"namespaces": [{"type": "network", "path": %s}]}}}'
NO_NETNS = "the runtime reports no network namespace for this sandbox"

FAULTS: dict[str, tuple[Callable[[Scene], str], list[str]]] = {
    "unavailable": (crio_pod(abort={"Version": grpc.StatusCode.UNAVAILABLE}),
                    ["no container runtime answers", "Version: UNAVAILABLE"]),
    "unavailable-after-connecting": (crio_pod(abort={"ListPodSandbox": grpc.StatusCode.UNAVAILABLE}),
                                     ["ListPodSandbox: UNAVAILABLE"]),
    "deadline-exceeded": (crio_pod(delay={"PodSandboxStatus": 30}),
                          ["PodSandboxStatus: DEADLINE_EXCEEDED: no answer within 0.5s"]),
    "unimplemented-v1alpha2-only": (crio_pod(v1alpha2_only=True),
                                    ["Version: UNIMPLEMENTED: the runtime does not serve CRI runtime.v1"]),
    "info-not-json": (answering('{"runtimeSpec": {"linux": '), ["runtime info is not JSON"]),
    "info-nested-too-deep": (answering("[" * 100_000), ["runtime info is not JSON"]),
    "info-not-an-object": (answering('["runtimeSpec"]'), ["runtime info is not a JSON object"]),
    "info-null": (answering("null"), ["runtime info is not a JSON object"]),
    "info-empty-old-cri-o": (
        lambda scene: scene.serve(CRIO, [crio_old_spoofed_sandbox(NAME, NS)]).endpoint,
        [NO_NETNS, "its info is empty"]),
    "runtime-spec-null": (answering('{"runtimeSpec": null, "pid": 0}'), [NO_NETNS, "pid, runtimeSpec"]),
    "namespaces-not-a-list": (answering('{"runtimeSpec": {"linux": {"namespaces": "network"}}}'),
                              [NO_NETNS]),
    "pid-a-string": (answering('{"pid": "4242"}'), [NO_NETNS]),
    "pid-true": (answering('{"pid": true}'), [NO_NETNS]),
    "metadata-not-an-object": (answering('{"runtimeSpec": null, "sandboxMetadata": "{netns}"}'),
                               [NO_NETNS]),
    "path-not-a-string": (answering(SPEC_WITH % "42"),
                          ["the runtime reports an invalid network namespace path: 42"]),
    "path-relative": (answering(SPEC_WITH % '"run/netns/x"'),
                      ["invalid network namespace path: 'run/netns/x'"]),
    "path-with-nul": (answering(SPEC_WITH % '"/var/run/netns/x\\u0000y"'),
                      ["invalid network namespace path: '/var/run/netns/x\\x00y'"]),
    "path-with-a-lone-surrogate": (answering(SPEC_WITH % '"/var/run/netns/x\\ud800y"'),
                                   ["invalid network namespace path: '/var/run/netns/x\\ud800y'"]),
    "uid-with-nul": (lambda scene: scene.serve(CRIO, [replace(crio_sandbox(NAME, var_run(scene.netns), NS),
                                                              uid="u\0x")]).endpoint,
                     ["the runtime reports a pod UID with a NUL: 'u\\x00x'"]),
    "netnspath-not-a-string": (
        answering('{"runtimeSpec": null, "sandboxMetadata": {"Version": "v1", '
                  '"Metadata": {"NetNSPath": ["{netns}"]}}}'),
        ["invalid network namespace path: ['/run/netns/"]),
    "path-not-a-netns": (answering(SPEC_WITH % '"/etc/hostname"'),
                         ["/etc/hostname is not a network namespace"]),
    "path-a-fifo": (fifo_netns, ["fifo is not a network namespace"]),
    "path-gone": (answering(SPEC_WITH % '"/var/run/netns/if-inject-gone"'),
                  ["network namespace /var/run/netns/if-inject-gone: No such file or directory"]),
    "sandbox-removed-after-list": (crio_pods(0, vanishes=True),
                                   ['PodSandboxStatus: NOT_FOUND: could not find pod "']),
    "two-ready-sandboxes": (crio_pods(0, 0), [f"pod {NS}/{NAME} has 2 ready sandboxes: "]),
    "only-notready-sandboxes": (crio_pods(SANDBOX_NOTREADY, SANDBOX_NOTREADY),
                                [f"pod {NS}/{NAME} not found on this node (only not-ready sandboxes: "]),
    "no-such-pod": (lambda scene: scene.serve(CRIO, []).endpoint,
                    [f"pod {NS}/{NAME} not found on this node"]),
}


@needs_root
@pytest.mark.parametrize("command", ["netns", "add"])
@pytest.mark.parametrize("fault", FAULTS)
def test_runtime_fault(fault: str, command: str, tool: list[str], serve: Serve, netns: str,
                       network: Network, tmp_path: Path) -> None:
    setup, words = FAULTS[fault]
    endpoint = setup(Scene(serve, netns, tmp_path))
    args = ["-ns", NS, "-pod", NAME] + (["-spec", str(network.spec)] if command == "add" else [])
    started = time.monotonic()
    out = run(tool, "-runtime-endpoint", endpoint, "-timeout", "0.5", *network.flags(), command, *args,
              timeout=10)
    error = error_of(out)
    for word in words:
        assert word in error
    assert time.monotonic() - started < 5
    assert link_names(netns) == ["lo"]
    assert network.leftovers() == []


# A spec whose plugin does not exist: should a refusal fail, nothing runs on the node.
NEVER_RUNS = {"cniVersion": "1.0.0", "name": "if-inject-never", "type": "if-inject-no-such-plugin"}

HOST_NETWORK = f"pod {NS}/{NAME} uses the node's network (hostNetwork): refusing to change the node"
NODE_NETNS = "is the node's own network namespace: refusing to change the node"

# (the node's netns pinned at /run/netns/NAME) -> (runtime, sandbox), and what
# the error must say ({pinned}: that path as cri-o names it).
NODE_PODS: dict[str, tuple[Callable[[str], tuple[Runtime, Sandbox]], str]] = {
    "cri-o-host-network": (
        lambda pinned: (CRIO, crio_sandbox(NAME, var_run(pinned), NS, host_network=True)),
        HOST_NETWORK),
    "cri-o-node-netns-as-pod": (lambda pinned: (CRIO, crio_sandbox(NAME, var_run(pinned), NS)),
                                "{pinned} " + NODE_NETNS),
    "containerd-host-network": (
        lambda pinned: (CONTAINERD_17, containerd_host_network_sandbox(NAME, os.getpid(), NS)),
        HOST_NETWORK),
    "containerd-host-network-as-pod": (
        lambda pinned: (CONTAINERD_17, containerd_host_network_sandbox(NAME, os.getpid(), NS, mode=POD)),
        f"/proc/{os.getpid()}/ns/net {NODE_NETNS}"),
    "cri-dockerd-host-network": (
        lambda pinned: (CRI_DOCKERD, cri_dockerd_sandbox(NAME, os.getpid(), NS, host_network=True)),
        HOST_NETWORK),
}


@needs_root
@pytest.mark.parametrize("command", ["netns", "add"])
@pytest.mark.parametrize("case", NODE_PODS)
def test_the_nodes_network_is_refused(case: str, command: str, tool: list[str], serve: Serve,
                                      node_netns: str, tmp_path: Path) -> None:
    build, words = NODE_PODS[case]
    runtime, sandbox = build(node_netns)
    cri = serve(runtime, [sandbox])
    spec = tmp_path / "never.json"
    spec.write_text(json.dumps(NEVER_RUNS))
    args = ["-ns", NS, "-pod", NAME] + (["-spec", str(spec)] if command == "add" else [])
    out = run(tool, "-runtime-endpoint", cri.endpoint, "-cache-dir", str(tmp_path / "cache"),
              command, *args)
    assert words.format(pinned=var_run(node_netns)) in error_of(out)
    assert not (tmp_path / "cache").exists()


# ---- endpoint forms (the other endpoint tests need no root: test/unit/test_endpoints.py) ----

@needs_root
def test_cli_endpoint_forms(tool: list[str], serve: Serve, netns: str) -> None:
    """unix:///path, unix:/path and a bare path name the same socket."""
    cri = serve(CRIO, [crio_sandbox(NAME, var_run(netns), NS)])
    for endpoint in (cri.endpoint, "unix:" + cri.socket_path, cri.socket_path):
        out = run(tool, "-runtime-endpoint", endpoint, "netns", "-ns", NS, "-pod", NAME)
        assert (out.returncode, out.stdout, out.stderr) == (0, var_run(netns) + "\n", "")
        out = run(tool, "netns", "-ns", NS, "-pod", NAME, env={"CONTAINER_RUNTIME_ENDPOINT": endpoint})
        assert (out.returncode, out.stdout) == (0, var_run(netns) + "\n")
