"""if-inject's CNI layer against libcni, without root: result conversion
(GetAsVersion), the cache entry, and the call sequences with canned plugins
that touch nothing. Each builds support/libcni_driver.go (conftest's
`libcni_driver`), and is skipped without Go and libcni's source.
test/test_libcni.py does the same with the reference plugins, as root.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import if_inject as ii
from support.libcni import ARGS, Harness, Step, compare, conflist, fake_plugins, libcni

VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0")


# ---- results across versions: the Python conversion against GetAsVersion ----

RESULTS: dict[str, dict[str, Any]] = {
    "0.2.0 dual stack": {
        "cniVersion": "0.2.0",
        "ip4": {"ip": "10.1.0.5/24", "gateway": "10.1.0.1",
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.0.254"}]},
        "ip6": {"ip": "fd00::5/64", "routes": [{"dst": "::/0", "gw": "fd00::1"}]},
        "dns": {"nameservers": ["10.1.0.1"], "domain": "example.test"}},
    "no version (0.1.0)": {"ip4": {"ip": "10.1.0.5/24"}},
    "0.3.1": {
        "cniVersion": "0.3.1",
        "interfaces": [{"name": "veth0", "mac": "0a:58:0a:01:00:01"},
                       {"name": "eth1", "mac": "0a:58:0a:01:00:05", "sandbox": "/run/netns/x"}],
        "ips": [{"version": "4", "interface": 1, "address": "10.1.0.5/24", "gateway": "10.1.0.1"},
                {"version": "6", "interface": 1, "address": "fd00::5/64"},
                {"version": "4", "address": "10.2.0.5/24"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "fd01::/64"}], "dns": {}},
    "0.4.0": {
        "cniVersion": "0.4.0", "interfaces": [{"name": "eth1", "sandbox": "/run/netns/x"}],
        "ips": [{"version": "4", "interface": 0, "address": "10.1.0.5/24"}], "dns": {"search": ["a.test"]}},
    "1.0.0": {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth1", "mac": "0a:58:0a:01:00:05", "sandbox": "/run/netns/x"}],
        "ips": [{"interface": 0, "address": "fd00::5/64", "gateway": "fd00::1"},
                {"interface": 0, "address": "10.1.0.5/24"}, {"address": "fd01::7/64"}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}], "dns": {"options": ["ndots:2"]}},
    "1.0.0 without addresses": {"cniVersion": "1.0.0", "interfaces": [{"name": "lo"}], "dns": {}},
    "0.5.0 (no such version)": {"cniVersion": "0.5.0", "dns": {}},
}


@pytest.mark.parametrize("name", RESULTS)
def test_result_conversion_is_libcnis(libcni_driver: str, name: str) -> None:
    """Every result to every version libcni 1.1.2 knows: the same result, or both refuse."""
    for version in (*VERSIONS, "9.9.9"):
        answer = libcni(libcni_driver, {"command": "CONVERT", "result": RESULTS[name], "version": version})
        try:
            ours: Any = ii._convert_result(RESULTS[name], version)
        except ii.InjectError as e:
            assert e.code == ii.CODE_INCOMPATIBLE_VERSION
            assert str(e).startswith("cannot convert a CNI ")
            ours = None
        assert ours == answer.get("result"), (version, answer)


def test_result_conversion_examples() -> None:
    r040 = RESULTS["0.4.0"]
    assert ii._convert_result(r040, "0.4.0") is r040  # the same version is left alone, as libcni does
    assert ii._convert_result(r040, "1.0.0") == {
        "cniVersion": "1.0.0", "interfaces": [{"name": "eth1", "sandbox": "/run/netns/x"}],
        "ips": [{"interface": 0, "address": "10.1.0.5/24"}], "dns": {"search": ["a.test"]}}
    assert ii._convert_result(RESULTS["1.0.0"], "0.4.0")["ips"] == [
        {"version": "6", "interface": 0, "address": "fd00::5/64", "gateway": "fd00::1"},
        {"version": "4", "interface": 0, "address": "10.1.0.5/24"},
        {"version": "6", "address": "fd01::7/64"}]
    # 1.1.0 reads as 1.0.0 (libcni 1.2 and later; 1.1.2 predates it).
    assert ii._convert_result(RESULTS["1.0.0"], "1.1.0") == dict(RESULTS["1.0.0"], cniVersion="1.1.0")
    assert ii._convert_result(r040, "1.1.0")["cniVersion"] == "1.1.0"
    with pytest.raises(ii.InjectError, match=r"^cannot convert a CNI 1\.0\.0 result to 0\.2\.0: "
                                             r"no valid IP addresses$"):
        ii._convert_result(RESULTS["1.0.0 without addresses"], "0.2.0")
    with pytest.raises(ii.InjectError, match=r"^cannot convert a CNI 0\.5\.0 result to 1\.0\.0: "
                                             r"no such result version$"):
        ii._convert_result(RESULTS["0.5.0 (no such version)"], "1.0.0")
    with pytest.raises(ii.InjectError, match=r"^cannot convert a CNI 1\.0\.0 result to 0\.4\.0: "):
        ii._convert_result({"cniVersion": "1.0.0", "ips": [{"address": "nope"}]}, "0.4.0")


# ---- the cache entry ------------------------------------------------------------

def test_cache_entry_format() -> None:
    """libcni's cachedInfo key order; cniArgs, capabilityArgs, result omitted when empty."""
    net = ii.parse_network_config(b'{"cniVersion": "1.0.0", "name": "n", "type": "ptp"}')
    bare = ii._cache_entry(net, ii.Attachment("c1", "", "eth1"), None)
    assert list(bare) == ["kind", "containerId", "config", "ifName", "networkName", ii._CACHE_MARK]
    assert base64.b64decode(bare["config"]) == net.raw
    att = ii.Attachment("c1", "/run/netns/c1", "eth1", [("A", "1")], {"mac": "02:00:00:00:00:01"})
    full = ii._cache_entry(net, att, {"ips": [], "cniVersion": "1.0.0"})
    assert list(full) == ["kind", "containerId", "config", "ifName", "networkName", "netns",
                          "cniArgs", "capabilityArgs", "result", ii._CACHE_MARK]
    assert full["cniArgs"] == [["A", "1"]] and list(full["result"]) == ["cniVersion", "ips"]  # Go's map order


def test_disable_check_is_read_from_conflists_only() -> None:
    def parse(conf: dict[str, Any]) -> ii.NetworkConfig:
        return ii.parse_network_config(json.dumps({"cniVersion": "1.0.0", "name": "n", **conf}).encode(), "x")
    assert parse({"plugins": [{"type": "ptp"}], "disableCheck": True}).disable_check
    assert not parse({"plugins": [{"type": "ptp"}]}).disable_check
    assert not parse({"type": "ptp", "disableCheck": True}).disable_check  # libcni ignores it in a conf
    with pytest.raises(ii.InjectError, match="'disableCheck' must be true or false"):
        parse({"plugins": [{"type": "ptp"}], "disableCheck": "yes"})


# ---- the same steps through both, with canned plugins ---------------------------

def one(version: str) -> dict[str, Any]:
    return conflist(version, {"type": "one"})


CANNED_CASES: dict[str, tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]] = {
    # No CNI args, no capability args: libcni leaves both keys out of its cache entry.
    "no args": ([("ADD", conflist("1.0.0", {"type": "one"})), ("DEL", conflist("1.0.0", {"type": "one"}))],
                {"args": []}),
    "conflist 1.0.0": ([("ADD", conflist("1.0.0", {"type": "one"}, {"type": "two"})),
                        ("CHECK", conflist("1.0.0", {"type": "one"}, {"type": "two"})),
                        ("DEL", conflist("1.0.0", {"type": "one"}, {"type": "two"})),
                        ("DEL", conflist("1.0.0", {"type": "one"}, {"type": "two"}))], {}),
    "capabilities": ([("ADD", conflist("0.4.0", {"type": "one", "capabilities": {"mac": True, "ips": False}},
                                       {"type": "two", "capabilities": {"portMappings": True}})),
                      ("DEL", conflist("0.4.0", {"type": "one", "capabilities": {"mac": True}},
                                       {"type": "two", "capabilities": {"portMappings": True}}))],
                     {"mac": "02:11:22:33:44:55", "ips": ["10.1.0.9/24"],
                      "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}),
    "single conf": ([("ADD", {"cniVersion": "0.4.0", "name": "conformance", "type": "one"}),
                     ("CHECK", {"cniVersion": "0.4.0", "name": "conformance", "type": "one",
                                "disableCheck": True}),
                     ("DEL", {"cniVersion": "0.4.0", "name": "conformance", "type": "one"})], {}),
    "disableCheck": ([("ADD", conflist("1.0.0", {"type": "one"})),
                      ("CHECK", conflist("1.0.0", {"type": "one"}, disableCheck=True)),
                      ("CHECK", conflist("0.3.1", {"type": "one"}, disableCheck=True)),
                      ("DEL", conflist("1.0.0", {"type": "one"}))], {}),
    "failing mid-list": ([("ADD", conflist("1.0.0", {"type": "one"}, {"type": "failing"}, {"type": "two"})),
                          ("DEL", conflist("1.0.0", {"type": "one"}, {"type": "failing"}, {"type": "two"}))],
                         {}),
    "0.3.1 to 1.0.0": ([("ADD", one("0.3.1")), ("CHECK", one("1.0.0")), ("DEL", one("1.0.0"))], {}),
    "1.0.0 to 0.4.0": ([("ADD", one("1.0.0")), ("CHECK", one("0.4.0")), ("DEL", one("0.4.0"))], {}),
    "0.4.0 DEL without cache": ([("DEL", conflist("0.4.0", {"type": "one"}))], {}),
}


@pytest.mark.parametrize("case", CANNED_CASES)
def test_same_calls_and_cache_as_libcni_with_canned_plugins(libcni_driver: str, tmp_path: Path,
                                                            case: str) -> None:
    steps, options = CANNED_CASES[case]
    args, capability_args = options.get("args", ARGS), {k: v for k, v in options.items() if k != "args"}
    runs = {}
    for impl in ("libcni", "if-inject"):
        harness = Harness(tmp_path / "harness", libcni_driver, "/run/netns/nowhere", capability_args, args)
        fake_plugins(harness, "one", "two", "failing")
        runs[impl] = [harness.run(Step(impl, command, conf)) for command, conf in steps]
        assert harness.cache() == {}
        shutil.rmtree(harness.base)
    compare(runs["libcni"], runs["if-inject"], fixed=("02:11:22:33:44:55",))
    check_runs = [r for r in runs["libcni"] if r["command"] == "CHECK"]
    if case == "disableCheck":  # libcni runs no plugin, and still refuses CHECK before 0.4.0
        assert [(r["ok"], r["calls"]) for r in check_runs] == [(True, []), (False, [])]
    if case == "single conf":  # libcni ignores disableCheck in a single conf
        assert check_runs[0]["ok"] and [c["type"] for c in check_runs[0]["calls"]] == ["one"]
