"""What the node and the pods show: links and addresses, seen with `ip`."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
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


def link_names(netns: str | None = None) -> list[str]:
    """The names of the links on the node, or in `netns`, in `ip`'s order."""
    return [line.split(":")[1].strip().split("@")[0] for line in ip("-o", "link", netns=netns).splitlines()]


def node_links() -> set[str]:
    """The names of every link on the node."""
    return set(link_names())


def links_in_subnet(subnet: str) -> str:
    """`ip -o -4 addr` of the node's links with an address in `subnet` (a ptp spec's host ends).
    Only these: other sessions' labs may add and remove links meanwhile."""
    return subprocess.run(["ip", "-o", "-4", "addr", "show", "to", subnet], capture_output=True, text=True,
                          check=True).stdout


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
