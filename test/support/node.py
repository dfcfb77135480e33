"""What the node and the pods show: links and addresses, seen with `ip`; and
what CNI keeps on the node: host-local's leases, libcni's result cache."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def need_root(why: str = "") -> None:
    """Skip the calling test or fixture unless root, saying what needs it."""
    if os.geteuid() != 0:
        pytest.skip(f"needs root{': ' + why if why else ''}")


def inode(path: str) -> int:
    """The inode of the file at `path` (a namespace's, on nsfs); 0 when there is none."""
    try:
        return os.stat(path).st_ino
    except OSError:
        return 0


def ip(*argv: str, netns: str | None = None, check: bool = True) -> str:
    """`ip argv` on the node, or inside `netns` (a path, or a name under /run/netns); its stdout.

    The one way the tests look into a network namespace. With check, a failure raises."""
    path = netns if netns is None or "/" in netns else f"/run/netns/{netns}"
    prefix = ["nsenter", f"--net={path}"] if path else []
    proc = subprocess.run([*prefix, "ip", *argv], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"ip {' '.join(argv)}{' in ' + path if path else ''}: {proc.stderr}")
    return proc.stdout


def link_exists(name: str, netns: str | None = None) -> bool:
    """Whether the node, or `netns`, has a link `name`."""
    return bool(ip("-o", "link", "show", "dev", name, netns=netns, check=False))


def link_names(netns: str | None = None) -> list[str]:
    """The names of the links on the node, or in `netns`, in `ip`'s order."""
    return [line.split(":")[1].strip().split("@")[0] for line in ip("-o", "link", netns=netns).splitlines()]


def node_links() -> set[str]:
    """The names of every link on the node."""
    return set(link_names())


PTP_SUBNET = "10.22.22.0/24"  # examples/ptp.json's


def host_links(subnet: str = PTP_SUBNET) -> str:
    """`ip -o -4 addr` of the node's links with an address in `subnet` (by default
    examples/ptp.json's): a ptp spec's host ends. Only these: other sessions' labs
    may add and remove links meanwhile."""
    return ip("-o", "-4", "addr", "show", "to", subnet)


def pod_addrs(lab: Any, pod: Any, ifname: str = "net1") -> str:
    """`ip -o addr` of `ifname` as the pod's container sees it; "" if there is none."""
    code, out, _ = lab.exec(pod, ["ip", "-o", "addr", "show", "dev", ifname])
    return str(out) if code == 0 else ""


def netns_addrs(netns: str, ifname: str = "net1") -> str:
    """The same for a pod without a container, seen from the node through its netns."""
    return ip("-o", "addr", "show", "dev", ifname, netns=netns, check=False)


def settled(show: Callable[[], str], timeout: float = 10, need: str = "") -> str:
    """`show()` (`ip addr` of some links) once it has `need` and no address in
    it is tentative any more (IPv6 DAD, 1-2 s after a link comes up): two looks
    at a link nothing touched meanwhile are then alike."""
    deadline = time.monotonic() + timeout
    while True:
        out = show()
        if need in out and "tentative" not in out:
            return out
        assert time.monotonic() < deadline, f"addresses still tentative after {timeout:g}s: {out}"
        time.sleep(0.1)


def link_local(show: Callable[[], str], timeout: float = 10) -> str:
    """The fe80:: address in `show()` (`ip -6 addr` of one link), once DAD is done."""
    match = re.search(r"(fe80::[0-9a-f:]+)/64", settled(show, timeout, need="fe80::"))
    assert match is not None
    return match.group(1)


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def leases(data_dir: Path, network: str | None = None) -> list[str]:
    """The addresses host-local leased under its dataDir `data_dir`, in `network`
    (by default in every network there), sorted. A lease is a file named by its
    address (10.22.22.2, fd00::2); host-local's other files there are `lock`
    and `last_reserved_ip.N`."""
    if not data_dir.is_dir():
        return []
    networks = [data_dir / network] if network else [d for d in data_dir.iterdir() if d.is_dir()]
    return sorted(p.name for d in networks if d.is_dir() for p in d.iterdir() if _is_address(p.name))


def cache_entries(cache_dir: Path) -> list[str]:
    """The names of the entries in libcni's result cache under `cache_dir` (its
    results/, as libcni and if-inject's -cache-dir keep it), sorted; [] when there is none."""
    results = cache_dir / "results"
    return sorted(os.listdir(results)) if results.is_dir() else []
