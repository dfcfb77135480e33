"""if-inject's CNI layer against libcni itself.

test/libcni_driver.go is built from Debian's libcni source (golang-go,
golang-github-containernetworking-cni-dev; GOPATH mode, offline) once per
session. Spy plugins in a private CNI_PATH log every call's stdin and CNI_*
environment, then run the real plugin (or a canned one). The same steps go
through libcni and through if-inject's `CNI` class, and what the plugins saw,
the cache entries and the ADD results must be the same.

- Without root: result conversion (GetAsVersion), the cache entry and the call
  sequences with canned plugins that touch nothing.
- With root: the reference plugins from /usr/lib/cni into real namespaces. Each
  run is a worker (this file run as a script) in a private network and mount
  namespace under `unshare`, with /run and /sys its own: links, leases, cache
  files and iptables rules never show on the host and go with the worker.

if-inject's deliberate differences (README, "Running CNI plugins", the list
"Where if-inject does more than libcni") are normalised where they show, each
with a comment naming its line.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import if_inject as ii  # noqa: E402

GOPATH = "/usr/share/gocode"
LIBCNI_SRC = f"{GOPATH}/src/github.com/containernetworking/cni/libcni"
CNI_BIN = "/usr/lib/cni"
CONTAINER = "ctr1"
IFNAME = "eth1"
# README "kubelet's CNI_ARGS at the pod level": the CNI class, as libcni, passes its
# caller's args alone, so both get the same (these stand in for kubelet's).
ARGS = [["IgnoreUnknown", "1"], ["K8S_POD_NAME", "p1"]]
VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces")


@pytest.fixture(scope="session")
def driver(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The libcni driver, built for this session from Debian's packages."""
    if not shutil.which("go") or not os.path.isdir(LIBCNI_SRC):
        pytest.skip("needs golang-go and golang-github-containernetworking-cni-dev (make deps)")
    out = tmp_path_factory.mktemp("libcni")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(out), "GOPATH": GOPATH,
           "GO111MODULE": "off", "GOPROXY": "off", "GOFLAGS": "", "CGO_ENABLED": "0",
           "GOCACHE": str(out / "gocache")}
    build = subprocess.run(["go", "build", "-o", str(out / "libcni-driver"), str(HERE / "libcni_driver.go")],
                           env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    shutil.rmtree(out / "gocache")
    return str(out / "libcni-driver")


def libcni(driver: str, request: dict[str, Any]) -> dict[str, Any]:
    """One request through the driver: {"result": ...}, {} or {"error": ...}."""
    proc = subprocess.run([driver], input=json.dumps(request), capture_output=True, text=True, timeout=120)
    answer: dict[str, Any] = json.loads(proc.stdout)
    assert (proc.returncode == 0) == ("error" not in answer), proc.stderr
    return answer


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
def test_result_conversion_is_libcnis(driver: str, name: str) -> None:
    """Every result to every version libcni 1.1.2 knows: the same result, or both refuse."""
    for version in (*VERSIONS, "9.9.9"):
        answer = libcni(driver, {"command": "CONVERT", "result": RESULTS[name], "version": version})
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
    net = ii.parse_network(b'{"cniVersion": "1.0.0", "name": "n", "type": "ptp"}')
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
        return ii.parse_network(json.dumps({"cniVersion": "1.0.0", "name": "n", **conf}).encode(), "x")
    assert parse({"plugins": [{"type": "ptp"}], "disableCheck": True}).disable_check
    assert not parse({"plugins": [{"type": "ptp"}]}).disable_check
    assert not parse({"type": "ptp", "disableCheck": True}).disable_check  # libcni ignores it in a conf
    with pytest.raises(ii.InjectError, match="'disableCheck' must be true or false"):
        parse({"plugins": [{"type": "ptp"}], "disableCheck": "yes"})


# ---- the same steps through both -----------------------------------------------

@dataclass
class Step:
    """One call: `command` of `conf` through libcni or if-inject."""

    impl: str  # "libcni" or "if-inject"
    command: str
    conf: dict[str, Any]


@dataclass
class Bench:
    """A private CNI_PATH of spies, a log of their calls, a cache dir and a dataDir."""

    base: Path
    driver: str
    netns: str
    capability_args: dict[str, Any] = field(default_factory=dict)
    args: list[list[str]] = field(default_factory=lambda: ARGS)

    def __post_init__(self) -> None:
        for d in ("bin", "log", "ipam", "cache"):
            (self.base / d).mkdir(parents=True, exist_ok=True)

    @property
    def cache_dir(self) -> Path:
        return self.base / "cache"

    def spy(self, plugin_type: str, body: str) -> None:
        """A plugin that logs its call, then runs `body` with the same stdin."""
        log = self.base / "log"
        script = (f'#!/bin/sh\nlog={log}\nn=$(($(cat "$log/seq" 2>/dev/null || echo 0) + 1))\n'
                  f'echo "$n" > "$log/seq"\ncat > "$log/$n.stdin"\n'
                  f'env | grep "^CNI_" > "$log/$n.env"\necho {plugin_type} > "$log/$n.type"\n'
                  f'exec < "$log/$n.stdin"\n{body}\n')
        path = self.base / "bin" / plugin_type
        path.write_text(script)
        path.chmod(0o755)

    def spy_on_real_plugins(self) -> None:
        for name in os.listdir(CNI_BIN):
            self.spy(name, f"exec {CNI_BIN}/{name}")

    def calls(self) -> list[dict[str, Any]]:
        """The calls logged since the last time, in order; the log is emptied."""
        log = self.base / "log"
        count = int((log / "seq").read_text()) if (log / "seq").exists() else 0
        calls = []
        for n in range(1, count + 1):
            env = dict(line.split("=", 1) for line in (log / f"{n}.env").read_text().splitlines())
            calls.append({"type": (log / f"{n}.type").read_text().strip(), "env": env,
                          "stdin": json.loads((log / f"{n}.stdin").read_text())})
        for entry in log.iterdir():
            entry.unlink()
        return calls

    def cache(self) -> dict[str, Any]:
        results = self.cache_dir / "results"
        names = sorted(os.listdir(results)) if results.exists() else []
        return {name: json.loads((results / name).read_text()) for name in names}

    def leases(self) -> list[str]:
        return sorted(p.name for p in (self.base / "ipam").glob("*/*")
                      if p.name[0].isdigit() or ":" in p.name)

    def run(self, step: Step) -> dict[str, Any]:
        """The step's outcome: ok, result, error, the calls seen and the cache after it."""
        conf = self.base / "conf.json"
        conf.write_text(json.dumps(step.conf, indent=2))
        if step.impl == "libcni":
            answer = libcni(self.driver, {
                "command": step.command, "conf": str(conf), "cacheDir": str(self.cache_dir),
                "cniPath": [str(self.base / "bin")], "containerId": CONTAINER, "netns": self.netns,
                "ifName": IFNAME, "args": self.args, "capabilityArgs": self.capability_args})
        else:
            answer = self.run_if_inject(step.command, conf)
        return {"command": step.command, "ok": "error" not in answer, "error": answer.get("error", ""),
                "result": answer.get("result"), "calls": self.calls(), "cache": self.cache()}

    def run_if_inject(self, command: str, conf: Path) -> dict[str, Any]:
        cni = ii.CNI([str(self.base / "bin")], str(self.cache_dir), timeout=60)
        att = ii.Attachment(CONTAINER, self.netns, IFNAME, [(k, v) for k, v in self.args],
                            dict(self.capability_args))
        try:
            network = ii.load_network(str(conf))
            if command == "ADD":
                return {"result": cni.add(network, att)}
            getattr(cni, {"CHECK": "check", "DEL": "delete"}[command])(network, att)
            return {}
        except ii.InjectError as e:
            return {"error": str(e)}


def conflist(version: str, *plugins: dict[str, Any], name: str = "conformance",
             **extra: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": name, **extra, "plugins": list(plugins)}


def for_if_inject(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """if-inject's runs with its deliberate differences taken out."""
    out = []
    for run in runs:
        run = dict(run)
        if run["command"] == "ADD" and not run["ok"]:
            # README "rollback of a failed ADD": the DELs it ran are not libcni's.
            run["calls"] = [c for c in run["calls"] if c["env"]["CNI_COMMAND"] == "ADD"]
        if run["command"] == "DEL" and not run["ok"]:
            # README "DEL runs every plugin": libcni stops at the first plugin that fails.
            failed = next(i for i, c in enumerate(run["calls"]) if c["type"] == "failing")
            run["calls"] = run["calls"][:failed + 1]
        run["cache"] = {name: without_our_keys(entry) for name, entry in run["cache"].items()}
        out.append(run)
    return out


def without_our_keys(entry: dict[str, Any]) -> dict[str, Any]:
    # README "the ifInject key" and "netns, as libcni 1.2 writes it" (1.1.2 has no netns).
    return {k: v for k, v in entry.items() if k not in (ii._CACHE_MARK, "netns")}


RANDOM = re.compile(r"\b(?:[0-9a-f]{2}:){5}[0-9a-f]{2}\b|\bveth[0-9a-f]{8}\b")


def normalised(runs: list[dict[str, Any]], fixed: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Random MACs and veth names become MAC1, veth1, ... in order of appearance."""
    text = json.dumps(runs, sort_keys=True)
    seen: dict[str, str] = {}

    def token(match: re.Match[str]) -> str:
        value = match.group(0)
        if value in fixed:
            return value
        kind = "veth" if value.startswith("veth") else "MAC"
        return seen.setdefault(value, f"{kind}{sum(v.startswith(kind) for v in seen.values()) + 1}")

    result: list[dict[str, Any]] = json.loads(RANDOM.sub(token, text))
    return result


def compare(libcni_runs: list[dict[str, Any]], if_inject_runs: list[dict[str, Any]],
            fixed: tuple[str, ...] = ()) -> None:
    def outcomes(runs: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        return [(r["command"], r["ok"]) for r in runs]

    def key_order(runs: list[dict[str, Any]]) -> list[dict[str, list[str]]]:
        return [{name: list(entry) for name, entry in run["cache"].items()} for run in runs]

    errors = [r["error"] for r in if_inject_runs + libcni_runs]
    assert outcomes(if_inject_runs) == outcomes(libcni_runs), errors
    # Key for key, in libcni's order (normalised() sorts them).
    assert key_order(for_if_inject(if_inject_runs)) == key_order(libcni_runs)
    ours, theirs = normalised(for_if_inject(if_inject_runs), fixed), normalised(libcni_runs, fixed)
    for mine, reference in zip(ours, theirs, strict=True):
        mine.pop("error"), reference.pop("error")
        for entry in (*mine["cache"].values(), *reference["cache"].values()):
            entry["config"] = json.loads(base64.b64decode(entry["config"]))  # readable diffs
        assert mine == reference


# ---- without root: canned plugins that touch nothing -----------------------------

CANNED = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth1", "sandbox": "/x"}],
          "ips": [{"interface": 0, "address": "10.1.0.5/24", "gateway": "10.1.0.1"}], "dns": {}}

# A plugin that touches nothing. "one" answers ADD with CANNED as the conf's
# version; the others pass prevResult on. A conf's "fails": "ADD" (the default
# of "failing") or "DEL" makes it fail that command, a DEL only once.
FAKE_PLUGIN = """
import json, os, pathlib, sys
role, results, marker = sys.argv[1], json.loads(sys.argv[2]), pathlib.Path(sys.argv[3])
conf, command = json.load(sys.stdin), os.environ["CNI_COMMAND"]
fails = conf.get("fails", "ADD" if role == "failing" else "")
if command == fails and not (command == "DEL" and marker.exists()):
    if command == "DEL":
        marker.touch()
    print(json.dumps({"code": 111, "msg": "fails on purpose"}))
    sys.exit(1)
if command == "ADD":
    print(json.dumps(conf.get("prevResult") or results[conf["cniVersion"]]))
"""


def fake_plugins(bench: Bench, *names: str) -> None:
    script = bench.base / "fake_plugin.py"
    script.write_text(FAKE_PLUGIN)
    results = json.dumps({v: ii._convert_result(CANNED, v) for v in ("0.3.1", "0.4.0", "1.0.0")})
    for name in names:
        role = name if name in ("one", "failing") else "chained"
        bench.spy(name, f"exec {sys.executable} {script} {role} '{results}' {bench.base}/del-failed")


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
def test_same_calls_and_cache_as_libcni_with_canned_plugins(driver: str, tmp_path: Path, case: str) -> None:
    steps, options = CANNED_CASES[case]
    args, capability_args = options.get("args", ARGS), {k: v for k, v in options.items() if k != "args"}
    runs = {}
    for impl in ("libcni", "if-inject"):
        bench = Bench(tmp_path / "bench", driver, "/run/netns/nowhere", capability_args, args)
        fake_plugins(bench, "one", "two", "failing")
        runs[impl] = [bench.run(Step(impl, command, conf)) for command, conf in steps]
        assert bench.cache() == {}
        shutil.rmtree(bench.base)
    compare(runs["libcni"], runs["if-inject"], fixed=("02:11:22:33:44:55",))
    check_runs = [r for r in runs["libcni"] if r["command"] == "CHECK"]
    if case == "disableCheck":  # libcni runs no plugin, and still refuses CHECK before 0.4.0
        assert [(r["ok"], r["calls"]) for r in check_runs] == [(True, []), (False, [])]
    if case == "single conf":  # libcni ignores disableCheck in a single conf
        assert check_runs[0]["ok"] and [c["type"] for c in check_runs[0]["calls"]] == ["one"]


# ---- with root: the reference plugins in private namespaces -----------------------

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
                          input=json.dumps(plan), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


@needs_root
@pytest.mark.parametrize("case", LAB_CASES)
def test_same_calls_cache_and_result_as_libcni(driver: str, case: str) -> None:
    runs = {impl: in_private_namespaces({"driver": driver,
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
def test_one_adds_the_other_checks_and_deletes(driver: str, conf: str, first: str, then: str) -> None:
    (_, added), (_, checked), (_, deleted) = LAB_CASES[conf][:3]
    plan = [[first, "ADD", added], [then, "CHECK", checked], [then, "DEL", deleted]]
    answer = in_private_namespaces({"driver": driver, "steps": plan})
    runs = answer["runs"]
    assert [(r["command"], r["ok"]) for r in runs] == [("ADD", True), ("CHECK", "portmap" not in conf),
                                                        ("DEL", True)], runs
    assert PORTMAP_CHECK in runs[1]["error"] if "portmap" in conf else runs[1]["error"] == ""
    assert [c["type"] for c in runs[1]["calls"]][:1] == [added["plugins"][0]["type"]]
    delete = answer["runs"][2]["calls"]
    assert all(c["stdin"].get("prevResult", {}).get("cniVersion") == deleted["cniVersion"] for c in delete)
    assert all("prevResult" in c["stdin"] for c in delete if c["type"] != "host-local")
    assert answer["leftovers"] == {"leases": [], "cache": {}, "links": [], "pod links": ["lo"]}


# ---- the worker: run in its own namespaces by in_private_namespaces() --------------

WORKER_BASE = Path("/run/cni-conformance")


def links(netns: str | None = None) -> list[str]:
    argv = ["ip", *(["-n", netns] if netns else []), "-o", "link"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return sorted(line.split(":")[1].strip().split("@")[0] for line in out.splitlines())


def worker(plan: dict[str, Any]) -> dict[str, Any]:
    """Run `plan` here, in the namespaces unshare made: /run and /sys are made
    this worker's own first, so its netns mount and iptables lock never show."""
    for argv in (["mount", "-t", "tmpfs", "tmpfs", "/run"], ["mount", "-t", "sysfs", "sysfs", "/sys"],
                 ["ip", "link", "set", "lo", "up"],
                 ["ip", "link", "add", "master0", "type", "veth", "peer", "name", "master1"],  # macvlan's
                 ["ip", "netns", "add", "pod"]):
        subprocess.run(argv, check=True)
    bench = Bench(WORKER_BASE, plan["driver"], "/run/netns/pod", CAPABILITIES)
    bench.spy_on_real_plugins()
    fake_plugins(bench, "failing")
    node_links = links()
    data_dir = json.dumps(str(bench.base / "ipam"))
    runs = [bench.run(Step(impl, command, json.loads(json.dumps(conf).replace('"IPAM"', data_dir))))
            for impl, command, conf in plan["steps"]]
    # The bridge plugin leaves its bridge on DEL (so does libcni): it is not a leftover.
    left = sorted(set(links()) - set(node_links) - {"cnibr0"})
    return {"runs": runs, "leftovers": {"leases": bench.leases(), "cache": bench.cache(), "links": left,
                                        "pod links": links("pod")}}


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    print(json.dumps(worker(json.load(sys.stdin))))
