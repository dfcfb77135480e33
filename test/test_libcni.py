"""if-inject's CNI layer against libcni itself, with the reference plugins
from /usr/lib/cni into real namespaces (as root; test/unit/test_libcni_formats.py
does it without root, with canned plugins). Each run is a worker (this file run
as a script) in a private network and mount namespace under `unshare`, with
/run and /sys its own: links, leases, cache files and iptables rules never show
on the host and go with the worker. support/libcni.py has the driver and the
comparison.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import if_inject as ii
from support import CNI_BIN, REPO
from support.libcni import (
    CANNED_110,
    Harness,
    Libcni13,
    Step,
    compare,
    conflist,
    fake_plugins,
    libcni,
    libcni13,
    without_empty_dns,
)
from support.node import link_names

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces")


def ptp(version: str, subnet: str = "10.77.1.0/24", **extra: Any) -> dict[str, Any]:
    return conflist(version, {"type": "ptp", "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                                                      "dataDir": "IPAM"}}, **extra)


BRIDGE = conflist("1.0.0",
                  {"type": "bridge", "bridge": "cnibr0", "isGateway": True, "ipMasq": False,
                   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.77.2.0/24"}]],
                            "dataDir": "IPAM"}},
                  {"type": "tuning", "capabilities": {"mac": True}},
                  {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
BANDWIDTH = dict(ptp("1.0.0", "10.77.3.0/24"))
BANDWIDTH["plugins"] = [*BANDWIDTH["plugins"], {"type": "bandwidth", "capabilities": {"bandwidth": True}}]
MACVLAN = conflist("0.4.0", {"type": "macvlan", "master": "master0", "mode": "bridge",
                             "ipam": {"type": "static", "addresses": [{"address": "10.77.4.7/24",
                                                                        "gateway": "10.77.4.1"}]}})
FAILING = dict(ptp("1.0.0", "10.77.5.0/24"))
FAILING["plugins"] = [*FAILING["plugins"], {"type": "failing"}, {"type": "tuning"}]
DEL_FAILS = dict(ptp("0.4.0", "10.77.6.0/24"))
DEL_FAILS["plugins"] = [*DEL_FAILS["plugins"], {"type": "failing", "fails": "DEL"}, {"type": "tuning"}]
MAC = "02:11:22:33:44:55"
CAPABILITIES = {"mac": MAC,
                "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
                "bandwidth": {"ingressRate": 1000000, "ingressBurst": 100000,
                              "egressRate": 1000000, "egressBurst": 100000}}


def steps(conf: dict[str, Any], *commands: str, then: dict[str, Any] | None = None) -> list[list[Any]]:
    """[command, conf] pairs; commands after the first use `then` when given."""
    return [[c, conf if i == 0 or then is None else then] for i, c in enumerate(commands)]


LAB_CASES: dict[str, list[list[Any]]] = {
    "ptp 0.3.1": steps(ptp("0.3.1"), "ADD", "CHECK", "DEL", "DEL"),
    "ptp 0.4.0": steps(ptp("0.4.0"), "ADD", "CHECK", "DEL", "DEL"),
    "ptp 1.0.0": steps(ptp("1.0.0"), "ADD", "CHECK", "DEL", "DEL"),
    "bridge tuning portmap": steps(BRIDGE, "ADD", "CHECK", "DEL", "DEL"),
    "ptp bandwidth": steps(BANDWIDTH, "ADD", "CHECK", "DEL"),
    "macvlan static": steps(MACVLAN, "ADD", "CHECK", "DEL"),
    "failing plugin mid-list": steps(FAILING, "ADD", "DEL"),
    "DEL fails once": steps(DEL_FAILS, "ADD", "DEL", "DEL"),
    "DEL without cache": steps(ptp("1.0.0"), "DEL"),
    "disableCheck": steps(ptp("1.0.0", disableCheck=True), "ADD", "CHECK", "DEL"),
    "0.4.0 ADD, 1.0.0 CHECK and DEL": steps(ptp("0.4.0"), "ADD", "CHECK", "DEL", then=ptp("1.0.0")),
    "1.0.0 ADD, 0.4.0 CHECK and DEL": steps(ptp("1.0.0"), "ADD", "CHECK", "DEL", then=ptp("0.4.0")),
}


# The steps that fail (by index), in libcni and if-inject alike; the others succeed.
LAB_FAILURES = {"ptp 0.3.1": [1], "failing plugin mid-list": [0], "DEL fails once": [1],
                # Debian's portmap (plugins 1.1.1) fails every CHECK: it looks for an IPv6
                # chain it never made. It does so under libcni too, which is what counts here.
                "bridge tuning portmap": [1]}
PORTMAP_CHECK = "could not check ipv6 dnat"


def in_private_namespaces(plan: dict[str, Any]) -> dict[str, Any]:
    """Run a plan in a worker of its own network and mount namespace."""
    proc = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "--",
                           sys.executable, str(Path(__file__)), "worker"],
                          input=json.dumps(plan), capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # sys.path[0], test/, has support
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


@needs_root
@pytest.mark.parametrize("case", LAB_CASES)
def test_same_calls_cache_and_result_as_libcni(libcni_driver: str, case: str) -> None:
    runs = {impl: in_private_namespaces({"driver": libcni_driver,
                                         "steps": [[impl, c, conf] for c, conf in LAB_CASES[case]]})
            for impl in ("libcni", "if-inject")}
    for impl, answer in runs.items():
        assert answer["leftovers"] == {"leases": [], "cache": {}, "links": [], "pod links": ["lo"]}, impl
    reference = runs["libcni"]["runs"]
    assert [i for i, r in enumerate(reference) if not r["ok"]] == LAB_FAILURES.get(case, []), reference
    assert all(r["result"]["ips"] for r in reference if r["command"] == "ADD" and r["ok"])
    compare(reference, runs["if-inject"]["runs"], fixed=(MAC,))


@needs_root
@pytest.mark.parametrize("conf", ["ptp 1.0.0", "bridge tuning portmap", "0.4.0 ADD, 1.0.0 CHECK and DEL"])
@pytest.mark.parametrize("first, then", [("libcni", "if-inject"), ("if-inject", "libcni")])
def test_one_adds_the_other_checks_and_deletes(libcni_driver: str, conf: str, first: str, then: str) -> None:
    (_, added), (_, checked), (_, deleted) = LAB_CASES[conf][:3]
    plan = [[first, "ADD", added], [then, "CHECK", checked], [then, "DEL", deleted]]
    answer = in_private_namespaces({"driver": libcni_driver, "steps": plan})
    runs = answer["runs"]
    assert [(r["command"], r["ok"]) for r in runs] == [("ADD", True), ("CHECK", "portmap" not in conf),
                                                        ("DEL", True)], runs
    assert PORTMAP_CHECK in runs[1]["error"] if "portmap" in conf else runs[1]["error"] == ""
    assert [c["type"] for c in runs[1]["calls"]][:1] == [added["plugins"][0]["type"]]
    delete = answer["runs"][2]["calls"]
    assert all(c["stdin"].get("prevResult", {}).get("cniVersion") == deleted["cniVersion"] for c in delete)
    assert all("prevResult" in c["stdin"] for c in delete if c["type"] != "host-local")
    assert answer["leftovers"] == {"leases": [], "cache": {}, "links": [], "pod links": ["lo"]}


# ---- CNI 1.1 against libcni 1.3 (Debian sid's, with its plugins 1.9.1) ------------

@pytest.fixture(scope="session")
def libcni_13() -> Libcni13:
    """libcni 1.3's driver and sid's plugins (support/libcni.py: built once, kept)."""
    return libcni13()


def with_plugins(conf: dict[str, Any], *plugins: dict[str, Any]) -> dict[str, Any]:
    return {**conf, "plugins": [*conf["plugins"], *plugins]}


def status_fails(code: int) -> dict[str, Any]:
    failing = {"type": "failing", "fails": "STATUS", "failCode": code}
    return with_plugins(ptp("1.1.0", "10.77.12.0/24"), failing, {"type": "tuning"})


PTP_11 = ptp("1.1.0", "10.77.11.0/24")
GC_NET = ptp("1.1.0", "10.77.14.0/24")
# A second attachment of the same network, in a second pod (two ptp links of one
# subnet in one netns clash on their gateway route).
SECOND = {"container": "ctr2", "ifname": "eth2", "netns": "/run/netns/pod2"}
CANNED_11 = conflist("1.1.0", {"type": "one"}, {"type": "two"}, name="canned")
# cniVersions (CNI 1.1): the highest usable wins, above 1.1.0 left out; a list without cniVersion.
OFFERED = ptp("1.0.0", "10.77.13.0/24", cniVersions=["0.4.0", "1.1.0", "2.0.0"])
OFFERED_OLD = {k: v for k, v in ptp("0.4.0", "10.77.13.0/24", cniVersions=["0.3.1", "0.4.0"]).items()
               if k != "cniVersion"}


def steps13(conf: dict[str, Any], *commands: str | tuple[str, dict[str, Any]],
            then: dict[str, Any] | None = None) -> list[list[Any]]:
    """[command, conf, options]; a command may come with its Step options."""
    out = []
    for i, c in enumerate(commands):
        command, options = (c, {}) if isinstance(c, str) else c
        out.append([command, conf if i == 0 or then is None else then, options])
    return out


LAB13_CASES: dict[str, list[list[Any]]] = {
    "ptp 1.1.0": steps13(PTP_11, "ADD", "STATUS", "CHECK", "DEL", "DEL"),
    "bridge tuning portmap 1.1.0": steps13({**BRIDGE, "cniVersion": "1.1.0"}, "ADD", "STATUS", "DEL"),
    "STATUS 50": steps13(status_fails(50), "STATUS"),
    "STATUS 51": steps13(status_fails(51), "STATUS"),
    "STATUS below 1.1.0": steps13(ptp("1.0.0"), "STATUS"),
    "GC live and stale": steps13(GC_NET, "ADD", ("ADD", SECOND), ("GC", {"valid": [["ctr1", "eth1"]]}),
                                 "DEL"),
    "GC below 1.1.0": steps13(ptp("1.0.0", "10.77.14.0/24"), "ADD", ("ADD", SECOND), ("GC", {"valid": []})),
    "disableGC": steps13({**GC_NET, "disableGC": True}, "ADD", ("ADD", SECOND), ("GC", {"valid": []}), "DEL",
                         ("DEL", SECOND)),
    "cniVersions": steps13(OFFERED, "ADD", "STATUS", "CHECK", "DEL"),
    "cniVersions without cniVersion": steps13(OFFERED_OLD, "ADD", "CHECK", "DEL"),
    "1.1.0 result": steps13(CANNED_11, "ADD", "CHECK", "DEL"),
    "1.1.0 result, 0.4.0 CHECK and DEL": steps13(CANNED_11, "ADD", "CHECK", "DEL",
                                                 then={**CANNED_11, "cniVersion": "0.4.0"}),
    "1.1.0 result, 1.0.0 CHECK and DEL": steps13(CANNED_11, "ADD", "CHECK", "DEL",
                                                 then={**CANNED_11, "cniVersion": "1.0.0"}),
}
LAB13_FAILURES = {"STATUS 50": [0], "STATUS 51": [0]}
# "GC below 1.1.0" DELs the attachments GC does not list, as libcni does, and sends no GC;
# "disableGC" does nothing at all (the DELs after it clean up). The plugins 1.9.1 answer
# GC without doing anything (their source: "FIXME GC"): what counts is the calls.


def run13(libcni_13: Libcni13, impl: str, case: list[list[Any]]) -> dict[str, Any]:
    return in_private_namespaces({"driver": libcni_13.driver, "cniBin": libcni_13.cni_bin,
                                  "steps": [[impl, c, conf, options] for c, conf, options in case]})


@needs_root
@pytest.mark.parametrize("case", LAB13_CASES)
def test_cni_11_as_libcni_13(libcni_13: Libcni13, case: str) -> None:
    runs = {impl: run13(libcni_13, impl, LAB13_CASES[case]) for impl in ("libcni", "if-inject")}
    for impl, answer in runs.items():
        leftovers = {"leases": [], "cache": {}, "links": [], "pod links": ["lo"], "pod2 links": ["lo"]}
        assert answer["leftovers"] == leftovers, impl
    reference, ours = runs["libcni"]["runs"], runs["if-inject"]["runs"]
    assert [i for i, r in enumerate(reference) if not r["ok"]] == LAB13_FAILURES.get(case, []), reference
    assert [r["code"] for r in ours if not r["ok"]] == [r["code"] for r in reference if not r["ok"]]
    compare(reference, ours, fixed=(MAC,), libcni13=True)


@needs_root
def test_status_and_gc_calls(libcni_13: Libcni13) -> None:
    """The calls themselves, as libcni 1.3 makes them: STATUS stops at the first
    error; GC DELs the stale attachment, then asks every plugin with the valid ones."""
    status = run13(libcni_13, "if-inject", LAB13_CASES["STATUS 50"])["runs"][0]
    assert [c["type"] for c in status["calls"]] == ["ptp", "host-local", "failing"]  # ptp asks its IPAM
    assert status["calls"][0]["env"] | {"CNI_PATH": ""} == {
        "CNI_COMMAND": "STATUS", "CNI_CONTAINERID": "", "CNI_NETNS": "", "CNI_IFNAME": "", "CNI_ARGS": "",
        "CNI_PATH": ""}
    gc = run13(libcni_13, "if-inject", LAB13_CASES["GC live and stale"])["runs"][2]
    commands = [(c["type"], c["env"]["CNI_COMMAND"]) for c in gc["calls"]]
    assert commands == [("ptp", "DEL"), ("host-local", "DEL"), ("ptp", "GC")]
    sent = next(c["stdin"] for c in gc["calls"] if c["env"]["CNI_COMMAND"] == "GC")
    assert sent["cni.dev/valid-attachments"] == sent["cni.dev/attachments"] == [
        {"containerID": "ctr1", "ifname": "eth1"}]


@needs_root
@pytest.mark.parametrize("conf", ["ptp 1.1.0", "1.1.0 result", "1.1.0 result, 0.4.0 CHECK and DEL"])
@pytest.mark.parametrize("first, then", [("libcni", "if-inject"), ("if-inject", "libcni")])
def test_libcni_13_and_if_inject_take_over(libcni_13: Libcni13, conf: str, first: str, then: str) -> None:
    (_, added, _), (_, checked, _), (_, deleted, _) = [s for s in LAB13_CASES[conf] if s[0] != "STATUS"][:3]
    plan = [[first, "ADD", added], [then, "CHECK", checked], [then, "DEL", deleted]]
    answer = in_private_namespaces({"driver": libcni_13.driver, "cniBin": libcni_13.cni_bin, "steps": plan})
    outcomes = [(r["command"], r["ok"]) for r in answer["runs"]]
    assert outcomes == [("ADD", True), ("CHECK", True), ("DEL", True)], answer["runs"]
    delete = answer["runs"][2]["calls"]
    assert all(c["stdin"].get("prevResult", {}).get("cniVersion") == deleted["cniVersion"] for c in delete)
    assert all("prevResult" in c["stdin"] for c in delete if c["type"] != "host-local")
    assert answer["leftovers"] == {"leases": [], "cache": {}, "links": [], "pod links": ["lo"],
                                   "pod2 links": ["lo"]}


RESULTS_110 = {"1.1.0": CANNED_110,
               "1.1.0 IPv6, empty dns": {"cniVersion": "1.1.0", "interfaces": [{"name": "eth1", "mtu": 9000}],
                                         "ips": [{"address": "fd00::5/64"}],
                                         "routes": [{"dst": "::/0", "gw": "fd00::1", "scope": 253}],
                                         "dns": {}}}


@needs_root
@pytest.mark.parametrize("name", RESULTS_110)
def test_1_1_0_result_conversion_is_libcni_13s(libcni_13: Libcni13, name: str) -> None:
    for version in ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"):
        request = {"command": "CONVERT", "result": RESULTS_110[name], "version": version}
        answer = libcni(libcni_13.driver, request)
        ours = ii._convert_result(RESULTS_110[name], version)
        if version.startswith("1."):  # docs/cni-1.1.md: dns {} as libcni 1.1 writes it
            ours = without_empty_dns(ours)
        assert ours == answer["result"], version


# ---- the worker: run in its own namespaces by in_private_namespaces() --------------

WORKER_BASE = Path("/run/cni-conformance")


def links(netns: str | None = None) -> list[str]:
    return sorted(link_names(netns))


def worker(plan: dict[str, Any]) -> dict[str, Any]:
    """Run `plan` here, in the namespaces unshare made: /run and /sys are made
    this worker's own first, so its netns mount and iptables lock never show."""
    for argv in (["mount", "-t", "tmpfs", "tmpfs", "/run"], ["mount", "-t", "sysfs", "sysfs", "/sys"],
                 ["ip", "link", "set", "lo", "up"],
                 ["ip", "link", "add", "master0", "type", "veth", "peer", "name", "master1"],  # macvlan's
                 ["ip", "netns", "add", "pod"], ["ip", "netns", "add", "pod2"]):
        subprocess.run(argv, check=True)
    harness = Harness(WORKER_BASE, plan["driver"], "/run/netns/pod", CAPABILITIES)
    harness.spy_on_real_plugins(plan.get("cniBin", CNI_BIN))
    fake_plugins(harness, "failing", "one", "two")
    node_links = links()
    data_dir = json.dumps(str(harness.base / "ipam"))
    runs = [harness.run(Step(impl, command, json.loads(json.dumps(conf).replace('"IPAM"', data_dir)),
                             *options))
            for impl, command, conf, *options in plan["steps"]]
    # The bridge plugin leaves its bridge on DEL (so does libcni): it is not a leftover.
    left = sorted(set(links()) - set(node_links) - {"cnibr0"})
    leftovers = {"leases": harness.leases(), "cache": harness.cache(), "links": left,
                 "pod links": links("pod")}
    if plan.get("cniBin"):  # the libcni 1.3 cases' second pod
        leftovers["pod2 links"] = links("pod2")
    return {"runs": runs, "leftovers": leftovers}


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    print(json.dumps(worker(json.load(sys.stdin))))
