"""if-inject's CNI layer against libcni itself: the driver and the comparison.

support/libcni_driver.go is built from Debian's libcni source (golang-go,
golang-github-containernetworking-cni-dev; GOPATH mode, offline) once per
session (conftest's `libcni_driver`). Spy plugins in a private CNI_PATH log
every call's stdin and CNI_* environment, then run the real plugin (or a canned
one). The same steps go through libcni and through if-inject's `CNI` class
(a Harness each), and what the plugins saw, the cache entries and the ADD results must
be the same (compare()).

if-inject's deliberate differences (docs/cni.md, "Where if-inject differs from
libcni, on purpose") are normalised where they show, each with a comment naming
its line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import if_inject as ii
from support import CNI_BIN
from support.node import cache_entries, leases
from support.toolrun import fake_plugin

HERE = Path(__file__).resolve().parent
GOPATH = "/usr/share/gocode"
LIBCNI_SRC = f"{GOPATH}/src/github.com/containernetworking/cni/libcni"
CONTAINER = "ctr1"
IFNAME = "eth1"
# docs/cni.md "kubelet's CNI_ARGS at the pod level": the CNI class, as libcni, passes its
# caller's args alone, so both get the same (these stand in for kubelet's).
ARGS = [["IgnoreUnknown", "1"], ["K8S_POD_NAME", "p1"]]


def build_driver(out: Path) -> str:
    """Build the libcni driver into `out`; skips the test without Go or libcni's source."""
    if not shutil.which("go") or not os.path.isdir(LIBCNI_SRC):
        pytest.skip("needs golang-go and golang-github-containernetworking-cni-dev (make deps)")
    _go_build("go", {"GOPATH": GOPATH}, out / "libcni-driver", "libcni_driver_112.go")
    return str(out / "libcni-driver")


def _go_build(go: str, env: dict[str, str], binary: Path, version_file: str) -> None:
    """Build the driver (libcni_driver.go and `version_file`) offline, in GOPATH mode, to `binary`."""
    work = Path(tempfile.mkdtemp(prefix="libcni-build-"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "GO111MODULE": "off",
           "GOPROXY": "off", "GOFLAGS": "", "CGO_ENABLED": "0", "GOTOOLCHAIN": "local",
           "GOCACHE": str(work / "gocache"), **env}
    try:
        build = subprocess.run([go, "build", "-o", str(binary), str(HERE / "libcni_driver.go"),
                                str(HERE / version_file)], env=env, capture_output=True, text=True)
        assert build.returncode == 0, build.stderr
    finally:
        shutil.rmtree(work)


# libcni 1.3 (CNI 1.1: STATUS, GC, cniVersions), its Go and the reference plugins 1.9.1:
# Debian sid's, in a cached root of their own (support/debroot.py). Its Go and the
# plugins run on the host as they are (static, and libc only); the root is only read.
SID_LIBCNI_PACKAGES = ("containernetworking-plugins", "golang-github-appc-cni-dev", "golang-go")
# The driver built against it, kept across sessions (a Go build costs a CPU half a minute):
# named by the hash of its sources and of libcni's, so a change of either builds anew.
DRIVER_CACHE = Path(os.environ.get("IF_INJECT_LAB_ROOTS", "/var/cache/if-inject-lab/roots")).parent \
    / "drivers"


@dataclass(frozen=True)
class Libcni13:
    """The libcni 1.3 driver and the plugins (1.9.1) of the same root."""

    driver: str
    cni_bin: str


def libcni13() -> Libcni13:
    """The libcni 1.3 driver, built (once) from Debian sid's root; skips without root."""
    if os.geteuid() != 0:
        pytest.skip("needs root: debootstrap builds Debian sid's root with libcni 1.3")
    from support.debroot import debian_root

    root = debian_root("sid", SID_LIBCNI_PACKAGES)
    gos = sorted(root.glob("usr/lib/go-1.*/bin/go"), key=lambda p: int(p.parts[-3].split(".")[1]))
    sources = [HERE / "libcni_driver.go", HERE / "libcni_driver_13.go",
               *sorted((root / "usr/share/gocode/src/github.com/containernetworking/cni").rglob("*.go"))]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    binary = DRIVER_CACHE / f"libcni13-{digest}"
    if not binary.exists():
        DRIVER_CACHE.mkdir(parents=True, exist_ok=True, mode=0o700)
        building = binary.with_name(f"{binary.name}.{os.getpid()}")
        go_env = {"GOROOT": str(gos[-1].parent.parent), "GOPATH": str(root / "usr/share/gocode")}
        _go_build(str(gos[-1]), go_env, building, "libcni_driver_13.go")
        building.rename(binary)
    return Libcni13(str(binary), str(root / "usr/lib/cni"))


def libcni(driver: str, request: dict[str, Any]) -> dict[str, Any]:
    """One request through the driver: {"result": ...}, {} or {"error": ...}."""
    proc = subprocess.run([driver], input=json.dumps(request), capture_output=True, text=True, timeout=120)
    answer: dict[str, Any] = json.loads(proc.stdout)
    assert (proc.returncode == 0) == ("error" not in answer), proc.stderr
    return answer


@dataclass
class Step:
    """One call: `command` of `conf` through libcni or if-inject."""

    impl: str  # "libcni" or "if-inject"
    command: str  # ADD, CHECK, DEL; STATUS, GC (CNI 1.1)
    conf: dict[str, Any]
    # "container", "ifname", "netns" of the attachment (CONTAINER, IFNAME, the harness's);
    # "valid": GC's [[ID, IFNAME]].
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Harness:
    """Where the steps of one implementation run: a private CNI_PATH of spies,
    a log of their calls, a cache dir and a dataDir."""

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
        fake_plugin(self.base / "bin", plugin_type,
                    f'log={log}\nn=$(($(cat "$log/seq" 2>/dev/null || echo 0) + 1))\n'
                    f'echo "$n" > "$log/seq"\ncat > "$log/$n.stdin"\n'
                    f'env | grep "^CNI_" > "$log/$n.env"\necho {plugin_type} > "$log/$n.type"\n'
                    f'exec < "$log/$n.stdin"\n{body}')

    def spy_on_real_plugins(self, cni_bin: str = CNI_BIN) -> None:
        for name in os.listdir(cni_bin):
            self.spy(name, f"exec {cni_bin}/{name}")

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
        return {name: json.loads((results / name).read_text()) for name in cache_entries(self.cache_dir)}

    def leases(self) -> list[str]:
        return leases(self.base / "ipam")

    def run(self, step: Step) -> dict[str, Any]:
        """The step's outcome: ok, result, error, the calls seen and the cache after it."""
        conf = self.base / "conf.json"
        conf.write_text(json.dumps(step.conf, indent=2))
        options = step.options
        if step.impl == "libcni":
            answer = libcni(self.driver, {
                "command": step.command, "conf": str(conf), "cacheDir": str(self.cache_dir),
                "cniPath": [str(self.base / "bin")], "containerId": options.get("container", CONTAINER),
                "netns": options.get("netns", self.netns), "ifName": options.get("ifname", IFNAME),
                "args": self.args,
                "capabilityArgs": self.capability_args, "validAttachments": options.get("valid", [])})
        else:
            answer = self.run_if_inject(step.command, conf, options)
        return {"command": step.command, "ok": "error" not in answer, "error": answer.get("error", ""),
                "code": answer.get("code"), "result": answer.get("result"), "calls": self.calls(),
                "cache": self.cache()}

    def run_if_inject(self, command: str, conf: Path, options: dict[str, Any]) -> dict[str, Any]:
        cni = ii.CNI([str(self.base / "bin")], str(self.cache_dir), timeout=60)
        try:
            network = ii.read_network(str(conf))
            if command == "STATUS":
                cni.status(network)
                return {}
            if command == "GC":
                cni.gc(network, [(c, i) for c, i in options.get("valid", [])])
                return {}
            att = ii.Attachment(options.get("container", CONTAINER), options.get("netns", self.netns),
                                options.get("ifname", IFNAME), [(k, v) for k, v in self.args],
                                dict(self.capability_args))
            if command == "ADD":
                return {"result": cni.add(network, att)}
            getattr(cni, {"CHECK": "check", "DEL": "delete"}[command])(network, att)
            return {}
        except ii.InjectError as e:
            # A plugin's own code (libcni's driver gives it only for a plugin's CNI error).
            return {"error": str(e), "code": e.code if str(e).startswith("plugin ") else None}


def conflist(version: str | None, *plugins: dict[str, Any], name: str = "conformance",
             **extra: Any) -> dict[str, Any]:
    """A network conflist of `plugins`; without a cniVersion when `version` is None."""
    versioned = {"cniVersion": version} if version is not None else {}
    return {**versioned, "name": name, **extra, "plugins": list(plugins)}


def for_if_inject(runs: list[dict[str, Any]], netns: bool = False) -> list[dict[str, Any]]:
    """if-inject's runs with its deliberate differences taken out (`netns`: libcni 1.2+ caches it too)."""
    out = []
    for run in runs:
        run = dict(run)
        if run["command"] == "ADD" and not run["ok"]:
            # docs/cni.md "rollback of a failed ADD": the DELs it ran are not libcni's.
            run["calls"] = [c for c in run["calls"] if c["env"]["CNI_COMMAND"] == "ADD"]
        if run["command"] == "DEL" and not run["ok"]:
            # docs/cni.md "DEL runs every plugin": libcni stops at the first plugin that fails.
            failed = next(i for i, c in enumerate(run["calls"]) if c["type"] == "failing")
            run["calls"] = run["calls"][:failed + 1]
        run["cache"] = {name: without_our_keys(entry, netns) for name, entry in run["cache"].items()}
        out.append(run)
    return out


def without_our_keys(entry: dict[str, Any], netns: bool = False) -> dict[str, Any]:
    # docs/cni.md "the ifInject key" and "netns, as libcni 1.2 writes it" (1.1.2 has no netns).
    return {k: v for k, v in entry.items() if k != ii._CACHE_MARK and (netns or k != "netns")}


def without_empty_dns(value: Any) -> Any:
    """docs/cni-1.1.md "dns: {} as libcni 1.1 writes it": libcni 1.2+ leaves an empty
    dns out of a 1.0.0/1.1.0 result (in results, prevResults, the cache); taken out of both."""
    if isinstance(value, dict):
        return {k: without_empty_dns(v) for k, v in value.items() if not (k == "dns" and v == {})}
    if isinstance(value, list):
        return [without_empty_dns(v) for v in value]
    return value


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
            fixed: tuple[str, ...] = (), libcni13: bool = False) -> None:
    """The same outcomes, calls, cache entries and results (`libcni13`: against libcni 1.3)."""
    def outcomes(runs: list[dict[str, Any]]) -> list[tuple[str, bool]]:
        return [(r["command"], r["ok"]) for r in runs]

    def key_order(runs: list[dict[str, Any]]) -> list[dict[str, list[str]]]:
        return [{name: list(entry) for name, entry in run["cache"].items()} for run in runs]

    errors = [r["error"] for r in if_inject_runs + libcni_runs]
    assert outcomes(if_inject_runs) == outcomes(libcni_runs), errors
    # Key for key, in libcni's order (normalised() sorts them).
    assert key_order(for_if_inject(if_inject_runs, libcni13)) == key_order(libcni_runs)
    ours, theirs = normalised(for_if_inject(if_inject_runs, libcni13), fixed), normalised(libcni_runs, fixed)
    if libcni13:
        ours, theirs = without_empty_dns(ours), without_empty_dns(theirs)
    for mine, reference in zip(ours, theirs, strict=True):
        for run in (mine, reference):
            run.pop("error"), run.pop("code", None)  # messages differ; codes: where tests say
        for entry in (*mine["cache"].values(), *reference["cache"].values()):
            entry["config"] = json.loads(base64.b64decode(entry["config"]))  # readable diffs
        assert mine == reference


# ---- canned plugins that touch nothing ----------------------------------------------

CANNED = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth1", "sandbox": "/x"}],
          "ips": [{"interface": 0, "address": "10.1.0.5/24", "gateway": "10.1.0.1"}], "dns": {}}
# What "one" answers at 1.1.0: every field CNI 1.1 adds to a result.
CANNED_110 = {"cniVersion": "1.1.0",
              "interfaces": [{"name": "eth1", "mac": "02:11:22:33:44:66", "mtu": 1400, "sandbox": "/x",
                              "socketPath": "/run/vhost/eth1.sock", "pciID": "0000:3b:00.2"}],
              "ips": [{"interface": 0, "address": "10.1.0.5/24", "gateway": "10.1.0.1"}],
              "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1", "mtu": 1380, "advmss": 1340, "priority": 100,
                          "table": 0, "scope": 0},
                         {"dst": "10.9.0.0/16", "gw": "10.1.0.254", "table": 200}],
              "dns": {"nameservers": ["10.1.0.1"]}}

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
    print(json.dumps({"code": conf.get("failCode", 111), "msg": "fails on purpose"}))
    sys.exit(1)
if command == "ADD":
    print(json.dumps(conf.get("prevResult") or results[conf["cniVersion"]]))
"""


def fake_plugins(harness: Harness, *names: str) -> None:
    script = harness.base / "fake_plugin.py"
    script.write_text(FAKE_PLUGIN)
    results = json.dumps({v: ii._convert_result(CANNED, v) for v in ("0.3.1", "0.4.0", "1.0.0")}
                         | {"1.1.0": CANNED_110})
    for name in names:
        role = name if name in ("one", "failing") else "chained"
        harness.spy(name, f"exec {sys.executable} {script} {role} '{results}' {harness.base}/del-failed")
