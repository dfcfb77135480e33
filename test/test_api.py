"""docs/api.md's example, run on the lab as the page shows it: the library's public
API against a real runtime, the reference plugins and the node's default cache dir."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support import REPO
from support.docs import code_block_with
from support.node import link_exists, link_names, pod_addrs
from support.toolrun import args_for, run_clean

API_DOC = REPO / "docs" / "api.md"


def test_the_api_example_runs(tool: list[str], lab: Any, make_pod: Callable[..., Any],
                              default_dirs: None) -> None:
    """The example with the lab's pod and socket put in (CONTAINER_RUNTIME_ENDPOINT for
    the one-line conveniences, Node's endpoint): it prints each record it names, and
    leaves net1 and net2 in the pod (net3 and net4 come and go); `del` from the cache
    then releases both."""
    pod = make_pod(labels={"app": "alpine"})
    example = code_block_with(API_DOC.read_text(), "import if_inject")
    assert example.count('"alpine-0"') == 10 and example.count("unix:///run/containerd/containerd.sock") == 1
    code = example.replace('"alpine-0"', repr(pod.name)).replace("unix:///run/containerd/containerd.sock",
                                                                  lab.endpoint)
    run = run_clean([sys.executable, "-c", code], env={"CONTAINER_RUNTIME_ENDPOINT": lab.endpoint},
                    cwd=REPO, timeout=120)  # the example's paths are the repository's
    try:
        assert (run.returncode, run.stderr) == (0, "")
        added, *cached = run.stdout.splitlines()
        assert added.startswith(f"{pod.name} {{'cniVersion': '1.0.0', ")
        assert re.search(r"'ips': \[\{'interface': 1, 'address': '10\.22\.22\.\d+/24'", added), added
        ip = r"\['(10\.22\.2[23]\.\d+)/24'\]"
        found = [re.fullmatch(rf"{pod.name} (net[12]) {ip} ready False", line) for line in cached]
        assert all(found) and sorted(m[1] for m in found if m) == ["net1", "net2"], run.stdout
        assert re.search(r"inet 10\.22\.22\.\d+/24", pod_addrs(lab, pod, "net1"))
        assert re.search(r"inet 10\.22\.23\.\d+/24", pod_addrs(lab, pod, "net2"))
        assert [n for n in link_names(pod.netns) if n.startswith("net")] == ["net1", "net2"]
        assert not link_exists("mine0")
    finally:  # what the example leaves, or made before it failed
        for ifname in ("net1", "net2"):
            run_clean([*tool, "-r", lab.endpoint, "del", *args_for(pod), "-interface", ifname])
        for ifname in ("net3", "net4"):
            run_clean([*tool, "-r", lab.endpoint, "veth", "-delete", *args_for(pod), "-interface", ifname])
    assert pod_addrs(lab, pod, "net1") == pod_addrs(lab, pod, "net2") == ""
    for network in ("mynet", "ptp-conf"):
        leases = Path("/var/lib/cni/networks") / network
        assert not [p.name for p in leases.glob("10.*")], network
