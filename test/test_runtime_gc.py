"""What a restart of the runtime does to interfaces if-inject injected.

From 1.32 on, cri-o runs libcni's GC at start-up for every network in its CNI
conf dir, with only its sandboxes' own interfaces as valid attachments: a
cached attachment of such a network that is not one of them gets a DEL, with
cri-o's config for that network. An injected interface is in the same cache
(the runtime's /var/lib/cni/results, as on a node). Here, for every lab
runtime, one pod gets two injected ptp interfaces in the runtime's own cache:
(a) net1 on a network name the runtime does not know, (b) net2 on the name of
the runtime's own network (a user re-using the cluster network's conflist).
The runtime is restarted with both in place; what is left of each (interface,
lease, cache entry, `list`) is what docs/runtimes-crio.md reports.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.node import leases, pod_addrs
from support.toolrun import Tool, args_for

OTHER = "if-inject-other"  # (a): a name no runtime of the lab has

# runtime -> {interface: (in the pod, its lease kept, its cache entry kept, listed)} after the restart.
# containerd runs no CNI GC; cri-o DELs (b) with its own (bridge) config: the
# interface and the cache entry go, the lease of our IPAM stays, unseen by `list` and `gc`.
SURVIVES = (True, True, True, True)
EXPECTED: dict[str, dict[str, tuple[bool, bool, bool, bool]]] = {
    "containerd-1.6": {"net1": SURVIVES, "net2": SURVIVES},
    "containerd-1.7": {"net1": SURVIVES, "net2": SURVIVES},
    "containerd-2.1": {"net1": SURVIVES, "net2": SURVIVES},
    "cri-o": {"net1": SURVIVES, "net2": (False, True, False, False)},
}


def ptp(name: str, subnet: str) -> dict[str, Any]:
    return {"cniVersion": "1.0.0", "name": name, "type": "ptp",
            "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]]}}


@pytest.mark.runtimes
def test_injected_interfaces_across_a_runtime_restart(inject: Tool, lab: Any,
                                                      make_pod: Callable[..., Any]) -> None:
    inject.cache = Path(lab.cni_cache)  # the runtime's own libcni cache, as a node's /var/lib/cni
    pod = make_pod()
    specs = {"net1": (OTHER, inject.write_spec("other.json", ptp(OTHER, "10.22.23.0/24"))),
             "net2": (lab.network, inject.write_spec("same.json", ptp(lab.network, "10.22.24.0/24")))}
    entries = {ifname: f"{name}-{Path(pod.netns).name}-{ifname}" for ifname, (name, _) in specs.items()}
    try:
        added = {ifname: inject("add", *args_for(pod), "-spec", spec, "-interface", ifname)
                 for ifname, (_, spec) in specs.items()}
        assert [run.code for run in added.values()] == [0, 0], [run.err for run in added.values()]
        assert added["net1"].err == ""
        warning = json.loads(added["net2"].err)
        runtime = lab.version().split()[0]
        assert (warning["level"], warning["runtime"], warning["network"], warning["confFile"]) == (
            "warn", runtime, lab.network, str(lab.conf_dir / "10-lab.conflist"))
        assert warning["msg"].startswith(f"network {lab.network} is also {runtime}'s own network (")

        lab.restart_runtime()
        listed = {row["interface"] for row in json.loads(inject("list", "-o", "json").out)
                  if row["pod"] == pod.name}
        outcome = {ifname: (pod_addrs(lab, pod, ifname) != "", leases(inject.ipam, name) != [],
                            entries[ifname] in inject.cache_files(), ifname in listed)
                   for ifname, (name, _) in specs.items()}
        assert outcome == EXPECTED[lab.runtime]
        assert pod_addrs(lab, pod, "eth0") != ""  # the runtime's own interface stays
    finally:
        for ifname, (_, spec) in specs.items():  # a DEL without the cache entry still frees the lease
            inject("del", *args_for(pod), "-spec", spec, "-interface", ifname)
    assert [leases(inject.ipam, name) for name, _ in specs.values()] == [[], []]
    assert not set(entries.values()) & set(inject.cache_files())
