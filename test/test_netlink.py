"""pods, links and veth: the node's view of pods and veth pairs, through netlink.

Function-level tests run on plain network namespaces made with `ip netns add`;
command tests on the lab's real pods, checked from inside the pod (ExecSync in
its busybox container) and on the node. Addresses are 10.254.x.y/30 on the
test's own veth pair only; pings go to the far end of that pair.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import if_inject as ii
from support.docs import commands, readme_section
from support.node import inode, ip, link_exists, link_local, settled
from support.toolrun import Run, args_for, run_clean, with_signals

# ---- helpers -------------------------------------------------------------------------

def ifindex(name: str, netns: str | None = None) -> int:
    return int(ip("-o", "link", "show", "dev", name, netns=netns).split(":")[0])


def subnet() -> tuple[str, str]:
    """A /30 of our own: (node end, pod end)."""
    a, b = uuid.uuid4().bytes[:2]
    return f"10.254.{a}.{b & 0xfc | 1}/30", f"10.254.{a}.{b & 0xfc | 2}/30"


@pytest.fixture
def host_name() -> Iterator[Callable[[], str]]:
    """Unique names for node links; any left at the end is deleted (and fails the test)."""
    names: list[str] = []

    def make() -> str:
        names.append(f"iit{uuid.uuid4().hex[:8]}")
        return names[-1]

    yield make
    left = [n for n in names if link_exists(n)]
    for name in left:
        ip("link", "del", name, check=False)  # a veth's peer goes with it
    assert not left, f"links left on the node: {left}"


# ---- links ---------------------------------------------------------------------------

def test_pod_links_equal_what_ip_shows_inside(netns: str, host_name: Callable[[], str]) -> None:
    host = host_name()
    node_end, pod_end = subnet()
    ii.add_veth(netns, "net1", host, [pod_end, "fd00:254::2/64"], node_end, mtu=1400)
    ip("link", "set", "lo", "up", netns=netns)
    links = ii.pod_links(netns)
    expected = []
    for link in json.loads(ip("-j", "addr", "show", netns=netns)):
        expected.append({
            "name": link["ifname"], "index": link["ifindex"], "state": link["operstate"],
            "mac": link["address"], "mtu": link["mtu"],
            "kind": "veth" if link["ifname"] == "net1" else "",
            "link": f"if{ifindex(host)}" if link["ifname"] == "net1" else "",
            "addresses": [f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]]})
    assert [link.json() for link in links] == expected
    net1 = links[1]
    assert net1.mtu == 1400 and {pod_end, "fd00:254::2/64"} <= set(net1.addresses)
    ii.delete_veth(netns, "net1", host)


def test_pod_links_of_a_missing_netns_fails_and_creates_nothing(tmp_path: Path) -> None:
    for path in (str(tmp_path / "gone"), "/run/netns/if-inject-test-missing-" + uuid.uuid4().hex[:8]):
        with pytest.raises(ii.InjectError, match=f"network namespace {path}: No such file"):
            ii.pod_links(path)
        assert not os.path.exists(path)


def test_pod_links_refuses_a_file_that_is_not_a_netns(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    with pytest.raises(ii.InjectError, match=r"/plain is not a network namespace$"):
        ii.pod_links(str(tmp_path / "plain"))


# ---- add_veth ------------------------------------------------------------------------

def test_add_veth_pings_both_ways_and_delete_leaves_nothing(netns: str,
                                                            host_name: Callable[[], str]) -> None:
    host = host_name()
    node_end, pod_end = subnet()
    made = ii.add_veth(netns, "net1", host, pod_end, node_end).json()
    assert made == {
        "netns": netns, "interface": "net1", "hostInterface": host, "mtu": 1500,
        "addresses": {"interface": [pod_end], "hostInterface": [node_end]},
        "macs": {"interface": json.loads(ip("-j", "link", "show", "net1", netns=netns))[0]["address"],
                 "hostInterface": json.loads(ip("-j", "link", "show", host))[0]["address"]}}
    assert "state UP" in ip("link", "show", "net1", netns=netns) and f"inet {pod_end}" in \
        ip("addr", "show", "net1", netns=netns)
    assert f"inet {node_end}" in ip("addr", "show", host)
    pod_ll = link_local(lambda: ip("-6", "addr", "show", "dev", "net1", netns=netns))
    node_ll = link_local(lambda: ip("-6", "addr", "show", "dev", host))
    in_pod = ["ip", "netns", "exec", os.path.basename(netns)]
    for argv in (["ping", "-c1", "-W2", f"{pod_ll}%{host}"],
                 [*in_pod, "ping", "-c1", "-W2", f"{node_ll}%net1"],
                 ["ping", "-c1", "-W2", pod_end.split("/")[0]],
                 [*in_pod, "ping", "-c1", "-W2", node_end.split("/")[0]]):
        ping = subprocess.run(argv, capture_output=True, text=True)
        assert ping.returncode == 0, (argv, ping.stdout, ping.stderr)

    ii.delete_veth(netns, "net1", host)
    assert not link_exists(host) and not link_exists("net1", netns)


def test_interface_names_through_a_process_in_the_netns_or_entering_it(netns: str, netns_pid: int) -> None:
    """A pod's names are read through its pause's /proc entry only when that
    process is in the pod's netns: not when it is elsewhere, or gone."""
    ip("link", "add", "taken0", "type", "veth", "peer", "name", "taken1", netns=netns)
    expected = {"lo", "taken0", "taken1"}
    assert ii._interface_names_of_process(netns, netns_pid) == expected
    assert ii._interface_names(netns) == expected  # entering it
    assert ii._interface_names_of_process(netns, os.getpid()) is None  # in the node's netns
    assert ii._interface_names(netns, os.getpid()) == expected
    os.kill(netns_pid, signal.SIGKILL)
    os.waitpid(netns_pid, 0)
    assert ii._interface_names_of_process(netns, netns_pid) is None  # gone
    assert ii._interface_names(netns, netns_pid) == expected


def test_name_taken_in_the_netns_fails_and_leaves_it_alone(netns: str, host_name: Callable[[], str]) -> None:
    ip("link", "add", "net1", "type", "veth", "peer", "name", "other1", netns=netns)
    before = ip("-o", "link", netns=netns)
    host = host_name()
    with pytest.raises(ii.InjectError, match=f"interface net1 already exists in network namespace {netns}"):
        ii.add_veth(netns, "net1", host)
    assert not link_exists(host) and ip("-o", "link", netns=netns) == before


def test_name_taken_on_the_node_fails_and_leaves_it_alone(netns: str, host_name: Callable[[], str]) -> None:
    host, other = host_name(), host_name()
    ip("link", "add", host, "type", "veth", "peer", "name", other)
    index = ifindex(host)
    with pytest.raises(ii.InjectError, match=f"interface {host} already exists on the node"):
        ii.add_veth(netns, "net1", host)
    assert ifindex(host) == index and not link_exists("net1", netns)
    ip("link", "del", host)


def test_name_taken_between_check_and_create_is_never_rolled_back(
        netns: str, host_name: Callable[[], str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel refuses the whole pair, and the undo must not delete the other's link."""
    monkeypatch.setattr(ii, "_refuse_taken_names", lambda *a: None)  # as if it was made meanwhile
    ip("link", "add", "net1", "type", "veth", "peer", "name", "other1", netns=netns)
    before = ip("-o", "link", netns=netns)
    host = host_name()
    with pytest.raises(ii.InjectError, match=f"creating veth {host} - net1: the name .* is taken"):
        ii.add_veth(netns, "net1", host)
    assert not link_exists(host) and ip("-o", "link", netns=netns) == before


def test_failure_after_creation_removes_the_pair(netns: str, host_name: Callable[[], str]) -> None:
    host = host_name()
    _, pod_end = subnet()
    with pytest.raises(ii.InjectError, match=f"adding {pod_end} to net1 in {netns}: File exists; "
                                             "the veth pair was removed"):
        ii.add_veth(netns, "net1", host, [pod_end, pod_end])
    assert not link_exists(host) and not link_exists("net1", netns)


def test_interrupt_while_configuring_removes_the_pair(netns: str, host_name: Callable[[], str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    configure = ii._configure_link

    def interrupted(where: str | None, name: str, cidrs: list[Any]) -> Any:
        if where is not None:  # the node end is done: Ctrl-C arrives now
            raise KeyboardInterrupt
        return configure(where, name, cidrs)

    monkeypatch.setattr(ii, "_configure_link", interrupted)
    host = host_name()
    with pytest.raises(ii.InjectError,
                       match=r"^interrupted \(KeyboardInterrupt\); the veth pair was removed$"):
        ii.add_veth(netns, "net1", host)
    assert not link_exists(host) and not link_exists("net1", netns)


@pytest.mark.parametrize("kw, message", [
    ({"ifname": "a" * 16}, "invalid interface name"),
    ({"host_ifname": "a/b"}, "invalid interface name 'a/b'"),
    ({"address": "10.1.2.3/33"}, "invalid address"),
    ({"host_address": ["fe80::1/64", "nonsense"]}, "invalid address"),
    ({"mtu": 67}, "invalid MTU 67"),
])
def test_bad_arguments_make_nothing(netns: str, host_name: Callable[[], str], kw: dict[str, Any],
                                    message: str) -> None:
    args = {"ifname": "net1", "host_ifname": host_name(), **kw}
    with pytest.raises(ii.InjectError, match=message):
        ii.add_veth(netns, **args)
    assert ip("-o", "link", netns=netns).count("\n") == 1  # lo only
    assert not link_exists(args["host_ifname"])


def test_add_veth_to_a_missing_or_node_netns_is_refused(tmp_path: Path, host_name: Callable[[], str]) -> None:
    host = host_name()
    with pytest.raises(ii.InjectError, match="No such file"):
        ii.add_veth(str(tmp_path / "gone"), "net1", host)
    assert not os.path.exists(tmp_path / "gone")
    with pytest.raises(ii.InjectError, match="the node's own network namespace"):
        ii.add_veth("/proc/self/ns/net", "net1", host)
    assert not link_exists(host) and not link_exists("net1")


def test_add_veth_returns_with_addresses_settled(netns: str, host_name: Callable[[], str]) -> None:
    host = host_name()
    ii.add_veth(netns, "net1", host, "fd00:254::2/64", "fd00:254::1/64")
    for shown in (ip("-6", "-o", "addr", "show", "dev", host), ip("-6", "-o", "addr", "show", "dev", "net1",
                                                                   netns=netns)):
        assert "fe80::" in shown and "fd00:254::" in shown and "tentative" not in shown, shown
    ii.delete_veth(netns, "net1", host)


def test_add_veth_gives_up_on_addresses_that_stay_tentative(netns: str, host_name: Callable[[], str]) -> None:
    """Duplicate address detection that lasts (60 probes, one a second) outlasts the
    timeout: the pair is removed, as after any failure."""
    ip("netns", "exec", os.path.basename(netns), "sysctl", "-qw", "net.ipv6.conf.default.dad_transmits=60")
    host = host_name()
    started = time.monotonic()
    # The node end may still be in its own (short) detection too.
    with pytest.raises(ii.InjectError, match=rf"^addresses of (\w+ on the node, )?net1 in {netns} "
                                             r"still tentative after 1s "
                                             r"\(duplicate address detection\); the veth pair was removed$"):
        ii.add_veth(netns, "net1", host, timeout=1)
    assert time.monotonic() - started < 5
    assert not link_exists(host) and not link_exists("net1", netns)


# ---- delete_veth ---------------------------------------------------------------------

@pytest.mark.parametrize("by", ["pod end", "node end", "both"])
def test_delete_by_either_end(netns: str, host_name: Callable[[], str], by: str) -> None:
    host = host_name()
    ii.add_veth(netns, "net1", host)
    names = {"pod end": ("net1", None), "node end": (None, host), "both": ("net1", host)}[by]
    ii.delete_veth(netns, *names)
    assert not link_exists(host) and not link_exists("net1", netns)


def test_delete_refuses_what_is_not_our_pair(netns: str, host_name: Callable[[], str]) -> None:
    host1, host2, node_a, node_b = host_name(), host_name(), host_name(), host_name()
    ii.add_veth(netns, "net1", host1)
    ii.add_veth(netns, "net2", host2)
    ip("link", "add", node_a, "type", "veth", "peer", "name", node_b)  # both ends on the node
    ip("link", "add", "inner", "type", "veth", "peer", "name", "inner2", netns=netns)  # both in the pod
    before = (ip("-o", "link", netns=netns), sorted(ip("-o", "link").splitlines()))
    for args, message in [
        (("net1", host2), f"net1 in {netns} and {host2} on the node are not the two ends"),
        (("net1", node_a), "are not the two ends of one veth pair"),
        ((None, node_a), f"the peer of {node_a} is not in {netns}"),
        (("lo", None), "lo is a device link, not a veth"),
        (("inner", None), f"the peer of inner in {netns} is not on the node: not deleting it"),
        (("net9", None), f"no interface net9 in {netns}$"),
        (("net9", "iitnothere"), f"no interface net9 in {netns} nor iitnothere on the node"),
        ((None, None), "name the interface"),
    ]:
        with pytest.raises(ii.InjectError, match=message):
            ii.delete_veth(netns, *args)
    assert (ip("-o", "link", netns=netns), sorted(ip("-o", "link").splitlines())) == before
    ip("link", "del", node_a)
    ii.delete_veth(netns, "net1", host1)
    ii.delete_veth(netns, "net2", host2)


# ---- the command on the lab's pods -----------------------------------------------------



@pytest.fixture
def run(tool: list[str], lab: Any, tmp_path: Path) -> Callable[..., Run]:
    """if-inject on the lab, global flags after the subcommand (private lock/cache dir)."""
    def run(command: str, *args: str) -> Run:
        return Run.of(run_clean(tool, command, *args, "-r", lab.endpoint, "-cache-dir", str(tmp_path / "cni"),
                                timeout=60))
    return run


def in_pod(lab: Any, pod: Any, *argv: str) -> str:
    code, out, err = lab.exec(pod, list(argv))
    assert code == 0, (argv, out, err)
    return str(out)


@pytest.mark.runtimes
def test_a_pods_process_is_read_only_when_in_its_netns(lab: Any, pod: Any) -> None:
    """So an add reads the pod's interface names through it, without entering
    the netns; a runtime in a PID namespace of its own (the lab's on a Debian
    root) names it by a PID of that namespace, which if-inject must not take.
    cri-o runs no pause process (drop_infra_ctr): it names none."""
    with ii.Node(lab.endpoint) as node:
        found = node.pod(pod.namespace, pod.name)
    assert (found.pid > 0) == (lab.runtime != "cri-o")
    ours = found.pid > 0 and inode(f"/proc/{found.pid}/ns/net") == inode(found.netns) != 0
    assert ours == (lab.suite is None)
    assert ii._interface_names_of_process(found.netns, found.pid) == ({"lo", "eth0"} if ours else None)
    assert ii._interface_names(found.netns, found.pid) == {"lo", "eth0"}


@pytest.mark.runtimes
def test_links_shows_what_the_container_sees(lab: Any, pod: Any, run: Callable[..., Run]) -> None:
    text, js = run("links", *args_for(pod)), run("links", *args_for(pod), "-o", "json")
    assert (text.code, text.err, js.code, js.err) == (0, "", 0, "")
    links = json.loads(js.out)
    # busybox ip: "2: eth0@if301: <BROADCAST,...> mtu 1500 ... link/ether 6a:..."
    seen = re.findall(r"^\d+: ([^:@]+)(?:@(\S+))?: <[^>]*> mtu (\d+) .*link/\S+ (\S+)",
                      in_pod(lab, pod, "ip", "-o", "link"), re.M)
    assert [(link["name"], link["link"], str(link["mtu"]), link["mac"]) for link in links] == seen
    addresses = re.findall(r"^\d+: (\S+)\s+inet6? (\S+)", in_pod(lab, pod, "ip", "-o", "addr"), re.M)
    assert [(link["name"], a) for link in links for a in link["addresses"]] == addresses
    for link in links:
        operstate = in_pod(lab, pod, "cat", f"/sys/class/net/{link['name']}/operstate").strip()
        assert link["state"] == operstate.upper()
    assert [link["name"] for link in links] == ["lo", "eth0"] and links[1]["state"] == "UP"
    assert text.out.splitlines() == [
        re.sub(r" +$", "", line) for line in text.out.splitlines()]
    header, *rows = text.out.splitlines()
    assert header.split() == ["NAME", "STATE", "MAC", "MTU", "ADDRESSES"]
    assert [row.split() for row in rows] == [
        [link["name"] + (f"@{link['link']}" if link["link"] else ""), link["state"], link["mac"],
         str(link["mtu"]), *link["addresses"]] for link in links]


@pytest.mark.runtimes
def test_veth_pings_both_ways_then_delete_leaves_nothing(lab: Any, pod: Any, run: Callable[..., Run]) -> None:
    node_end, pod_end = subnet()
    made = run("veth", *args_for(pod), "-address", pod_end, "-host-address", node_end)
    assert made.code == 0 and made.err == ""
    result = json.loads(made.out)
    host = ii._host_veth_name(pod.sandbox_id, "net1")
    try:
        pod_link = re.search(r"link/ether (\S+)", in_pod(lab, pod, "ip", "-o", "link", "show", "net1"))
        assert pod_link is not None
        assert result == {
            "pod": f"{pod.namespace}/{pod.name}", "netns": pod.netns, "interface": "net1",
            "hostInterface": host, "mtu": 1500,
            "addresses": {"interface": [pod_end], "hostInterface": [node_end]},
            "macs": {"interface": pod_link.group(1),
                     "hostInterface": json.loads(ip("-j", "link", "show", host))[0]["address"]}}
        pod_ll = link_local(lambda: in_pod(lab, pod, "ip", "-6", "addr", "show", "dev", "net1"))
        node_ll = link_local(lambda: ip("-6", "addr", "show", "dev", host))
        for argv in (["ping", "-c1", "-W2", f"{pod_ll}%{host}"],
                     ["ping", "-c1", "-W2", pod_end.split("/")[0]]):
            ping = subprocess.run(argv, capture_output=True, text=True)
            assert ping.returncode == 0, (argv, ping.stdout, ping.stderr)
        for target in (f"{node_ll}%net1", node_end.split("/")[0]):
            code, out, err = lab.exec(pod, ["ping", "-c1", "-W2", target])
            assert code == 0, (target, out, err)
    finally:
        deleted = run("veth", *args_for(pod), "-delete")
    assert (deleted.code, deleted.out, deleted.err) == (0, "", "")
    assert not link_exists(host)
    assert lab.exec(pod, ["ip", "link", "show", "net1"])[0] != 0
    again = run("veth", *args_for(pod), "-delete")
    assert again.code == 1
    assert again.error == f"pod {pod.namespace}/{pod.name}: no interface net1 in {pod.netns}"



@pytest.mark.runtimes
def test_readme_manual_injection_as_shown(lab: Any, pod: Any, run: Callable[..., Run]) -> None:
    """The README's if-inject lines of "Manually inject an interface", in order, as
    written ($pod the lab's pod): pods, netns, veth with addresses, links, ping, -delete."""
    shown = [[pod.name if w == "$pod" else w for w in words]
             for words in commands(readme_section("Manually inject an interface"))]
    assert [words[0] for words in shown] == ["pods", "netns", "veth", "links", "veth"]
    assert shown[2][-4:] == ["-address", "10.254.22.2/30", "-host-address", "10.254.22.1/30"]
    host = ii._host_veth_name(pod.sandbox_id, "net1")
    try:
        out = [run(*words) for words in shown[:4]]
        assert [(r.code, r.err) for r in out] == [(0, "")] * 4
        assert pod.name in out[0].out and out[1].out == pod.netns + "\n"
        assert json.loads(out[2].out)["addresses"] == {"interface": ["10.254.22.2/30"],
                                                      "hostInterface": ["10.254.22.1/30"]}
        assert re.search(r"^net1@\S+ +UP .* 10\.254\.22\.2/30\b", out[3].out, re.M), out[3].out
        ping = subprocess.run(["ping", "-c1", "-W2", "10.254.22.2"], capture_output=True, text=True)
        assert ping.returncode == 0, ping.stdout
    finally:
        deleted = run(*shown[4])
    assert (deleted.code, deleted.out, deleted.err) == (0, "", "")
    assert not link_exists(host) and lab.exec(pod, ["ip", "link", "show", "net1"])[0] != 0


def test_veth_with_own_names_mtu_and_ipv6(lab: Any, pod: Any, run: Callable[..., Run],
                                          host_name: Callable[[], str]) -> None:
    host = host_name()
    made = run("veth", *args_for(pod), "-interface", "ext0", "-host-interface", host, "-mtu", "1280",
               "-address", "fd00:254::2/64", "-address", "10.254.0.2/30")
    assert made.code == 0, made.err
    assert json.loads(made.out)["addresses"]["interface"] == ["fd00:254::2/64", "10.254.0.2/30"]
    shown = in_pod(lab, pod, "ip", "-o", "addr", "show", "dev", "ext0")
    assert "inet 10.254.0.2/30" in shown and "inet6 fd00:254::2/64" in shown
    assert "mtu 1280" in in_pod(lab, pod, "ip", "link", "show", "ext0")
    assert "mtu 1280" in ip("link", "show", host)
    assert run("veth", *args_for(pod), "-interface", "ext0", "-host-interface", host, "-delete").code == 0
    assert not link_exists(host) and lab.exec(pod, ["ip", "link", "show", "ext0"])[0] != 0


@pytest.mark.parametrize("named", ["pod end", "node end"])
def test_veth_delete_finds_the_other_end(lab: Any, pod: Any, run: Callable[..., Run],
                                         host_name: Callable[[], str], named: str) -> None:
    """`veth -host-interface mine0`, then -delete by the name of one end only:
    a veth knows its peer, no default name is guessed."""
    host = host_name()
    assert run("veth", *args_for(pod), "-host-interface", host).code == 0
    by = ["-interface", "net1"] if named == "pod end" else ["-host-interface", host]
    deleted = run("veth", *args_for(pod), *by, "-delete")
    assert (deleted.code, deleted.out, deleted.err) == (0, "", "")
    assert not link_exists(host) and lab.exec(pod, ["ip", "link", "show", "net1"])[0] != 0


def test_veth_delete_by_the_node_end_waits_for_the_pod_ends_lock(lab: Any, pod: Any, run: Callable[..., Run],
                                                                 host_name: Callable[[], str],
                                                                 tmp_path: Path) -> None:
    """-delete by the node's end alone takes the lock an add or del of the pod's
    end takes (ext0's here, not the default net1's): held, the pair is left."""
    host = host_name()
    assert run("veth", *args_for(pod), "-interface", "ext0", "-host-interface", host).code == 0
    with ii._attachment_lock(str(tmp_path / "cni"), pod.sandbox_id, "ext0", 5) as held:
        waited = run("veth", *args_for(pod), "-host-interface", host, "-delete", "-timeout", "2")
        assert (waited.code, waited.error) == (1, f"another if-inject works on {held.path}: gave up waiting")
        assert link_exists(host)
    deleted = run("veth", *args_for(pod), "-host-interface", host, "-delete")
    assert (deleted.code, deleted.out, deleted.err) == (0, "", "")
    assert not link_exists(host) and lab.exec(pod, ["ip", "link", "show", "ext0"])[0] != 0


def test_veth_delete_refuses_a_pod_veth_whose_peer_is_not_on_the_node(
        lab: Any, pod: Any, run: Callable[..., Run]) -> None:
    in_pod(lab, pod, "ip", "link", "add", "net1", "type", "veth")  # both ends in the pod
    refused = run("veth", *args_for(pod), "-delete")
    assert refused.code == 1 and refused.error == (f"pod {pod.namespace}/{pod.name}: the peer of net1 in "
                                                   f"{pod.netns} is not on the node: not deleting it")
    in_pod(lab, pod, "ip", "link", "show", "net1")


@pytest.mark.parametrize("ifname, by", [("eth0", "pod end"), ("net1", "pod end"), ("net1", "node end"),
                                        ("net1", "multus")])
def test_veth_delete_refuses_an_interface_a_cni_add_made(lab: Any, pod: Any, tool: list[str],
                                                          tmp_path: Path, ifname: str, by: str) -> None:
    """The runtime's eth0 (bridge, its cache entry in the runtime's cache dir), an
    interface if-inject's own `add` made, named by either end, and one of Multus'
    delegates (libcni's entry in Multus' cache dir, multus/ in the runtime's): a veth
    pair with its peer on the node, yet only its DEL may release it (and its lease)."""
    spec = tmp_path / "ptp.json"
    spec.write_text(json.dumps({"cniVersion": "1.0.0", "name": "iit-veth-cni", "type": "ptp",
                                "ipam": {"type": "host-local", "dataDir": str(tmp_path / "ipam"),
                                         "ranges": [[{"subnet": "10.254.40.0/24"}]]}}))
    top = str(tmp_path / "cni") if by == "multus" else lab.cni_cache  # -cache-dir
    flags = ["-r", lab.endpoint, "-cache-dir", top]
    cache = f"{top}/multus" if by == "multus" else top  # where the ADD's entry is
    end = ["-interface", ifname]
    if ifname == "net1":
        added = run_clean(tool, "add", *args_for(pod), "-spec", str(spec), *flags[:2], "-cache-dir", cache)
        assert added.returncode == 0, added.stderr
        host = [i["name"] for i in json.loads(added.stdout)["interfaces"] if not i.get("sandbox")]
        end = ["-host-interface", host[0]] if by == "node end" else end
    if by == "multus":  # its entry as Multus' libcni writes it: without if-inject's mark
        [entry] = Path(cache, "results").iterdir()
        entry.write_text(json.dumps({k: v for k, v in json.loads(entry.read_text()).items()
                                     if k != "ifInject"}))
    try:
        refused = Run.of(run_clean(tool, "veth", *args_for(pod), *end, "-delete", *flags))
        assert (refused.code, refused.out) == (1, "")
        assert re.fullmatch(rf"pod {pod.namespace}/{pod.name}: {ifname} was made by a CNI ADD \(cache entry "
                            rf"{cache}/results/\S+-{ifname}\): not deleting it; a DEL releases it "
                            r"\(`if-inject del` for if-inject's own\)", refused.error), refused.error
        in_pod(lab, pod, "ip", "link", "show", ifname)
    finally:
        if ifname == "net1":
            forced = ["-force"] if by == "multus" else []  # its entry is no longer if-inject's
            deleted = run_clean(tool, "del", *args_for(pod), "-spec", str(spec), *flags[:2],
                                "-cache-dir", cache, *forced)
            assert deleted.returncode == 0, deleted.stderr


def test_signal_while_the_veth_settles_removes_it(tool: list[str], lab: Any, pod: Any,
                                                  host_name: Callable[[], str], tmp_path: Path) -> None:
    host = host_name()
    argv = [*tool, "veth", *args_for(pod), "-host-interface", host, "-r", lab.endpoint,
            "-cache-dir", str(tmp_path / "results"), "-timeout", "120"]
    # The signal must come while the node end's duplicate address detection runs, however
    # late a loaded machine lets this test see the link and send it: one probe (1 s), then
    # eight, were each once over first. 200 probes hold the veth in its settle step until
    # -timeout (120 s) or the signal; the node's default is put back once the link exists
    # (the link keeps the value it was made with).
    dad = Path("/proc/sys/net/ipv6/conf/default/dad_transmits")
    before = dad.read_text()
    dad.write_text("200\n")
    try:
        proc = subprocess.Popen(with_signals(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while not link_exists(host):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.01)
    finally:
        dad.write_text(before)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    run = Run(proc.returncode, out, err)
    assert (run.code, run.out) == (1, "")
    assert run.error == f"pod {pod.namespace}/{pod.name}: interrupted by SIGINT; the veth pair was removed"
    assert not link_exists(host) and lab.exec(pod, ["ip", "link", "show", "net1"])[0] != 0


def test_veth_is_usable_when_it_returns(lab: Any, pod: Any, run: Callable[..., Run],
                                        host_name: Callable[[], str]) -> None:
    """As users run it: `if-inject veth ... && ping -6 fe80::...%<node end>`, no wait between."""
    host = host_name()
    made = run("veth", *args_for(pod), "-host-interface", host, "-address", "fd00:254::2/64")
    assert made.code == 0, made.err
    node_addrs, pod_addrs = ip("-6", "-o", "addr", "show", "dev", host), in_pod(
        lab, pod, "ip", "-6", "-o", "addr", "show", "dev", "net1")
    assert "fe80::" in node_addrs and "fe80::" in pod_addrs and "fd00:254::2/64" in pod_addrs
    assert "tentative" not in node_addrs + pod_addrs
    pod_ll = re.search(r"(fe80::[0-9a-f:]+)/64", pod_addrs)
    assert pod_ll is not None
    ping = subprocess.run(["ping", "-6", "-c1", "-W2", f"{pod_ll.group(1)}%{host}"],
                          capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert run("veth", *args_for(pod), "-host-interface", host, "-delete").code == 0


def test_veth_name_taken_in_the_pod_leaves_nothing(lab: Any, pod: Any, run: Callable[..., Run]) -> None:
    before = settled(partial(in_pod, lab, pod, "ip", "-o", "addr"))  # the pod's eth0 is new
    taken = run("veth", *args_for(pod), "-interface", "eth0", "-address", "10.254.0.2/30")
    assert taken.code == 1 and taken.out == ""
    assert taken.error == (f"pod {pod.namespace}/{pod.name}: interface eth0 already exists in "
                           f"network namespace {pod.netns}")
    assert in_pod(lab, pod, "ip", "-o", "addr") == before
    assert not link_exists(ii._host_veth_name(pod.sandbox_id, "eth0"))


def test_veth_name_taken_on_the_node_leaves_nothing(lab: Any, pod: Any, run: Callable[..., Run]) -> None:
    before = ip("-o", "addr", "show", "dev", lab.bridge)
    taken = run("veth", *args_for(pod), "-host-interface", lab.bridge)
    assert taken.code == 1 and taken.error == (
        f"pod {pod.namespace}/{pod.name}: interface {lab.bridge} already exists on the node")
    assert ip("-o", "addr", "show", "dev", lab.bridge) == before
    assert lab.exec(pod, ["ip", "link", "show", "net1"])[0] != 0


@pytest.mark.parametrize("args, message", [
    (["-interface", "a" * 16], "invalid interface name"),
    (["-host-interface", "a:b"], "invalid interface name 'a:b'"),
    (["-address", "10.0.0.300/24"], "invalid address"),
    (["-mtu", "x"], "argument -mtu/--mtu: invalid int value: 'x'"),
    (["-delete", "-address", "10.254.0.1/30"], "-delete takes no -address"),
])
def test_veth_usage_errors_exit_2(lab: Any, pod: Any, run: Callable[..., Run], args: list[str],
                                  message: str) -> None:
    bad = run("veth", *args_for(pod), *args)
    assert bad.code == 2 and bad.out == "" and message in bad.error
    assert lab.exec(pod, ["ip", "link", "show", "net1"])[0] != 0


def test_host_network_pod_is_refused(lab: Any, make_pod: Callable[..., Any], run: Callable[..., Run]) -> None:
    pod = make_pod(host_network=True)
    for command in ("links", "veth"):
        refused = run(command, *args_for(pod))
        assert refused.code == 1 and "uses the node's network (hostNetwork)" in refused.error
    assert not link_exists(ii._host_veth_name(pod.sandbox_id, "net1"))


# ---- pods ----------------------------------------------------------------------------

@pytest.mark.runtimes
def test_pods_lists_what_the_runtime_has(lab: Any, make_pod: Callable[..., Any],
                                         run: Callable[..., Run]) -> None:
    tier = uuid.uuid4().hex[:8]
    ready = make_pod(labels={"app": "alpine", "tier": tier})
    restarted = lab.restart_pod(make_pod(labels={"app": "alpine", "tier": tier}))
    host = make_pod(labels={"app": "other", "tier": tier}, host_network=True)
    listed = run("pods", "-ns", "if-inject", "-o", "json")
    assert (listed.code, listed.err) == (0, "")
    ours = [p for p in json.loads(listed.out) if p["labels"].get("tier") == tier]
    old = next(s for s in ours if s["name"] == restarted.name and s["state"] == "NOTREADY")["sandboxId"]

    # cri-o labels every sandbox as its infra container's: io.kubernetes.container.name=POD.
    runtime_labels = {"io.kubernetes.container.name": "POD"} if lab.runtime == "cri-o" else {}

    def row(pod: Any, sandbox: str, state: str, network: str, netns: str) -> dict[str, Any]:
        return {"namespace": "if-inject", "name": pod.name, "uid": pod.uid, "sandboxId": sandbox,
                "state": state, "network": network, "netns": netns,
                "labels": {**pod.labels, "io.kubernetes.pod.name": pod.name, **runtime_labels,
                           "io.kubernetes.pod.namespace": "if-inject", "io.kubernetes.pod.uid": pod.uid}}

    assert sorted(ours, key=lambda p: (p["name"], p["state"])) == sorted([
        row(ready, ready.sandbox_id, "READY", "POD", ready.netns),
        row(restarted, restarted.sandbox_id, "READY", "POD", restarted.netns),
        row(restarted, old, "NOTREADY", "POD", ""),  # its netns is gone with the sandbox
        row(host, host.sandbox_id, "READY", "NODE", ""),
    ], key=lambda p: (p["name"], p["state"]))
    # The ready sandbox of a pod comes before its stopped ones.
    assert [p["state"] for p in ours if p["name"] == restarted.name] == ["READY", "NOTREADY"]

    selected = json.loads(run("pods", "-l", f"tier=={tier},app=alpine", "-o", "json").out)
    assert sorted((p["name"], p["state"]) for p in selected) == sorted(
        [(ready.name, "READY"), (restarted.name, "READY"), (restarted.name, "NOTREADY")])
    assert json.loads(run("pods", "-ns", "elsewhere", "-l", f"tier={tier}", "-o", "json").out) == []

    text = run("pods", "-l", f"tier={tier}")
    assert text.code == 0 and text.err == ""
    header, *rows = text.out.splitlines()
    assert header.split() == ["NAMESPACE", "NAME", "SANDBOX", "STATE", "NETWORK", "NETNS"]
    assert sorted(r.split() for r in rows) == sorted([
        ["if-inject", ready.name, ready.sandbox_id[:13], "READY", "POD", ready.netns],
        ["if-inject", restarted.name, restarted.sandbox_id[:13], "READY", "POD", restarted.netns],
        ["if-inject", restarted.name, old[:13], "NOTREADY", "POD", "-"],
        ["if-inject", host.name, host.sandbox_id[:13], "READY", "NODE", "-"]])
    # Columns line up: every row has its fields at the header's offsets.
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    assert all([m.start() for m in re.finditer(r"\S+", r)] == starts for r in rows)


@pytest.mark.parametrize("selector, message", [
    ("app!=alpine", "unsupported label selector term 'app!=alpine'"),
    ("app in (alpine)", "unsupported label selector term 'app in (alpine)'"),
    ("app", "unsupported label selector term 'app'"),
    ("app=a,app=b", "wants app to be both 'a' and 'b'"),
    ("Example.com/app=a", "invalid label key 'Example.com/app'"),
])
def test_pods_bad_selector_exits_2(run: Callable[..., Run], selector: str, message: str) -> None:
    bad = run("pods", "-l", selector)
    assert bad.code == 2 and bad.out == "" and message in bad.error


# ---- pyroute2 stays out of what does not need it ---------------------------------------

def imports(argv: list[str]) -> set[str]:
    """The modules a run of the tool imports (python -X importtime); the run must succeed."""
    proc = subprocess.run([sys.executable, "-X", "importtime", *argv], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {line.split("|")[-1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:")}


def test_version_help_and_pods_do_not_import_pyroute2(tool: list[str], lab: Any, pod: Any) -> None:
    script = tool[1]
    for argv in (["-version"], ["--help"], ["veth", "--help"], ["links", "--help"],
                 ["pods", "-r", lab.endpoint]):
        assert not {m for m in imports([script, *argv]) if m.startswith("pyroute2")}, argv
    # ... and the check does see it where it is used.
    assert "pyroute2" in imports([script, "links", *args_for(pod), "-r", lab.endpoint])
