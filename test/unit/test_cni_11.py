"""CNI 1.1 without root: cniVersions and disableGC as libcni 1.3 reads them, the
1.1.0 result in network-status, `status` on canned plugins, GC's calls and its
network lock. test/test_libcni.py holds all of it against libcni 1.3 itself."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

import if_inject as ii
from support.libcni import conflist
from support.toolrun import fake_plugin


def ptp_conflist(**extra: Any) -> bytes:
    """A conflist "n" of ptp with `extra` (cniVersion, when given, among them)."""
    return json.dumps(conflist(extra.pop("cniVersion", None), {"type": "ptp"}, name="n", **extra)).encode()


@pytest.mark.parametrize("extra, version", [
    ({"cniVersion": "1.0.0", "cniVersions": ["0.4.0", "1.1.0", "2.0.0"]}, "1.1.0"),
    ({"cniVersions": ["0.3.1", "0.4.0"]}, "0.4.0"),
    ({"cniVersion": "1.0.0", "cniVersions": ["2.0.0"]}, "1.0.0"),  # above 1.1.0: left out
    ({"cniVersion": "1.1.0", "cniVersions": ["0.4.0"]}, "1.1.0"),  # cniVersion counts too
    ({"cniVersion": "1.1.0"}, "1.1.0"),
])
def test_cni_versions_pick_the_highest_usable(extra: dict[str, Any], version: str) -> None:
    assert ii.parse_network_config(ptp_conflist(**extra)).cni_version == version


@pytest.mark.parametrize("extra, message, code", [
    ({"cniVersions": ["2.0.0", "1.2.0"]}, "no usable CNI version among those offered (2.0.0, 1.2.0)",
     ii.CODE_INCOMPATIBLE_VERSION),
    ({"cniVersions": []}, "offered (none)", ii.CODE_INCOMPATIBLE_VERSION),
    ({"cniVersions": ["1.x"]}, "invalid CNI version '1.x' in cniVersions", ii.CODE_INVALID_CONFIG),
    ({"cniVersions": "1.1.0"}, "'cniVersions' must be a list of strings", ii.CODE_INVALID_CONFIG),
    ({"cniVersions": ["1.0"]}, "unknown cniVersion '1.0'", ii.CODE_INCOMPATIBLE_VERSION),
    ({"cniVersion": "1.1.0", "disableGC": "maybe"}, "'disableGC' must be true or false",
     ii.CODE_INVALID_CONFIG),
])
def test_bad_cni_versions_and_switches(extra: dict[str, Any], message: str, code: int) -> None:
    with pytest.raises(ii.InjectError) as e:
        ii.parse_network_config(ptp_conflist(**extra), "x.json")
    assert str(e.value).startswith("x.json: ") and message in str(e.value), str(e.value)
    assert e.value.code == code


def test_switches_as_libcni_13_reads_them() -> None:
    net = ii.parse_network_config(ptp_conflist(cniVersion="1.1.0", disableGC="True", disableCheck="false"))
    assert (net.disable_gc, net.disable_check) == (True, False)
    # A single plugin conf has no switches and no cniVersions, as in libcni.
    single = ii.parse_network_config(b'{"name": "n", "cniVersion": "1.0.0", "cniVersions": ["1.1.0"], '
                              b'"disableGC": true, "type": "ptp"}')
    assert (single.cni_version, single.disable_gc) == ("1.0.0", False)


RESULT_110 = {"cniVersion": "1.1.0",
              "interfaces": [{"name": "veth1", "mac": "02:00:00:00:00:01"},
                             {"name": "net1", "mac": "02:00:00:00:00:02", "mtu": 1400, "sandbox": "/x",
                              "pciID": "0000:3b:00.2", "socketPath": "/run/x.sock"}],
              "ips": [{"interface": 1, "address": "10.1.0.5/24", "gateway": "10.1.0.1"}],
              "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1", "mtu": 1380, "table": 0}], "dns": {}}


def test_network_status_has_mtu_and_device_info_as_multus() -> None:
    # The keys in the order of network-attachment-definition-client's NetworkStatus.
    assert list(ii.network_status(RESULT_110, "ns/net", "net1").items()) == [
        ("name", "ns/net"), ("interface", "net1"), ("ips", ["10.1.0.5"]), ("mac", "02:00:00:00:00:02"),
        ("mtu", 1400), ("dns", {}),
        ("device-info", {"type": "pci", "version": "1.1.0", "pci": {"pci-address": "0000:3b:00.2"}}),
        ("gateway", ["10.1.0.1"])]


def test_1_1_0_routes_survive_conversion_interfaces_lose_what_0_4_0_lacks() -> None:
    r040 = ii._convert_result(RESULT_110, "0.4.0")
    assert r040["routes"] == RESULT_110["routes"]
    assert r040["interfaces"][1] == {"name": "net1", "mac": "02:00:00:00:00:02", "sandbox": "/x"}
    assert ii._convert_result(RESULT_110, "1.0.0")["interfaces"] == RESULT_110["interfaces"]
    r020 = ii._convert_result(RESULT_110, "0.2.0")
    assert r020["ip4"]["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]


# ---- STATUS and GC with canned plugins (shell scripts logging their calls) ----

def plugin(bin_dir: Path, name: str, log: Path, answer: str = "", code: int = 0) -> None:
    """`name`: logs its command and CNI_* (and its stdin), then prints `answer`, exits `code`."""
    fails = f"\necho '{answer}'\nexit {code}" if code else ""
    fake_plugin(bin_dir, name,
                f'echo "{name} $CNI_COMMAND [$CNI_CONTAINERID$CNI_NETNS$CNI_IFNAME$CNI_ARGS]" >> {log}\n'
                f'cat >> {log}.stdin\necho >> {log}.stdin{fails}')


def spec(tmp_path: Path, version: str = "1.1.0", **extra: Any) -> Path:
    path = tmp_path / "net.json"
    plugins = ({"type": "a"}, {"type": "b"}, {"type": "c"})
    path.write_text(json.dumps(conflist(version, *plugins, name="n", **extra)))
    return path


def status(tool: list[str], tmp_path: Path, version: str = "1.1.0") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*tool, "-cni-path", str(tmp_path / "bin"), "-cache-dir", str(tmp_path / "cache"),
                           "status", "-spec", str(spec(tmp_path, version))], capture_output=True, text=True)


@pytest.mark.parametrize("code, word", [(50, "not available"), (51, "limited connectivity")])
def test_status_stops_at_the_first_plugin_not_ready(tool: list[str], tmp_path: Path, code: int,
                                                     word: str) -> None:
    (tmp_path / "bin").mkdir()
    log = tmp_path / "log"
    plugin(tmp_path / "bin", "a", log)
    plugin(tmp_path / "bin", "b", log, json.dumps({"cniVersion": "1.1.0", "code": code, "msg": "down"}), 1)
    plugin(tmp_path / "bin", "c", log)
    proc = status(tool, tmp_path)
    assert (proc.returncode, json.loads(proc.stdout)) == (1, {
        "network": "n", "cniVersion": "1.1.0", "status": word, "code": code,
        "error": f"plugin b failed (code {code}): down"})
    assert log.read_text() == "a STATUS []\nb STATUS []\n"  # every CNI_* of the attachment empty
    assert json.loads(log.with_suffix(".stdin").read_text().split("\n")[0]) == {
        "type": "a", "name": "n", "cniVersion": "1.1.0"}


def test_status_ready_and_below_1_1_0(tool: list[str], tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    log = tmp_path / "log"
    for name in "abc":
        plugin(tmp_path / "bin", name, log)
    proc = status(tool, tmp_path)
    ready = '{"network": "n", "cniVersion": "1.1.0", "status": "ready"}\n'
    assert (proc.returncode, proc.stdout) == (0, ready)
    assert log.read_text().count("STATUS") == 3
    log.unlink()
    proc = status(tool, tmp_path, "1.0.0")
    assert (proc.returncode, json.loads(proc.stdout)["status"]) == (0, "not asked")
    assert "STATUS not sent: it exists from CNI 1.1.0" in proc.stderr
    assert not log.exists()


def test_gc_asks_every_plugin_and_reports_each_failure(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    log = tmp_path / "log"
    plugin(tmp_path / "bin", "a", log)
    plugin(tmp_path / "bin", "b", log, '{"code": 111, "msg": "no"}', 1)
    plugin(tmp_path / "bin", "c", log)
    cni = ii.CNI([str(tmp_path / "bin")], str(tmp_path / "cache"))
    network = ii.read_network(str(spec(tmp_path)))
    with pytest.raises(ii.InjectError, match=r"^GC failed: plugin b: plugin b failed \(code 111\): no$"):
        cni.gc(network, [("c1", "eth1")])
    assert log.read_text() == "a GC []\nb GC []\nc GC []\n"
    sent = json.loads(log.with_suffix(".stdin").read_text().split("\n")[0])
    assert sent["cni.dev/valid-attachments"] == sent["cni.dev/attachments"] == [
        {"containerID": "c1", "ifname": "eth1"}]
    assert not os.path.exists(tmp_path / "cache" / "if-inject-locks")  # the network lock went


def test_disable_gc_runs_nothing(tmp_path: Path) -> None:
    cni = ii.CNI([str(tmp_path / "none")], str(tmp_path / "cache"))
    cni.gc(ii.read_network(str(spec(tmp_path, disableGC=True))), [])  # no plugin: none was looked for


def test_gc_waits_for_adds_and_dels_of_its_network(tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    with ii._network_lock(cache, "n", 1, shared=True), ii._network_lock(cache, "n", 1, shared=True):
        with pytest.raises(ii.InjectError, match="gave up waiting") as e, \
                ii._network_lock(cache, "n", 0.1, shared=False):
            pass
        assert e.value.code == ii.CODE_TRY_AGAIN_LATER
        with ii._network_lock(cache, "other", 0.1, shared=False):
            pass  # another network's GC does not wait
    with ii._network_lock(cache, "n", 0.1, shared=False):
        assert os.listdir(tmp_path / "cache" / "if-inject-locks") == ["network:n.lock"]
    assert os.listdir(tmp_path / "cache") == []


def test_gc_sends_gc_to_networks_at_1_1_0_with_every_attachment_left(tmp_path: Path) -> None:
    """The end of `if-inject gc` (after its stale DELs): one record per network at
    1.1.0 or later, GC to its plugins with the attachments cached for it."""
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    fake_plugin(bin_dir, "a", f'echo "a $CNI_COMMAND" >> {log}\ncat >> {log}.stdin\n'
                              f'echo >> {log}.stdin\necho \'{{"cniVersion": "1.1.0"}}\'')
    node = ii.Node(cni_path=[str(bin_dir)], cache_dir=str(tmp_path / "cache"))
    for name, version in (("n", "1.1.0"), ("o", "1.0.0")):
        (tmp_path / f"{name}.json").write_text(json.dumps(conflist(version, {"type": "a"}, name=name)))
    for name, container in (("n", "c1"), ("n", "c2"), ("o", "c3")):
        node.cni.add(ii.read_network(str(tmp_path / f"{name}.json")), ii.Attachment(container, "/x", "eth1"))
    log.unlink()
    log.with_suffix(".stdin").unlink()
    networks = ii._gc_networks(node.cni)
    valid = [{"containerId": "c1", "interface": "eth1"}, {"containerId": "c2", "interface": "eth1"}]
    assert [r.json() for r in ii._gc_verb(node.cni, networks, dry_run=True)] == [
        {"network": "n", "cniVersion": "1.1.0", "validAttachments": valid, "action": "would gc"}]
    assert not log.exists()
    assert [r.json() for r in ii._gc_verb(node.cni, networks, dry_run=False)] == [
        {"network": "n", "cniVersion": "1.1.0", "validAttachments": valid, "action": "gc"}]
    assert log.read_text() == "a GC\n"
    sent = json.loads(log.with_suffix(".stdin").read_text())
    assert sent["cni.dev/valid-attachments"] == [{"containerID": "c1", "ifname": "eth1"},
                                                {"containerID": "c2", "ifname": "eth1"}]
    networks["n"] = networks["n"]._replace(disable_gc=True)
    assert [r.action for r in ii._gc_verb(node.cni, networks, dry_run=False)] == ["gc disabled"]


def test_gc_leaves_an_attachment_added_while_it_runs_alone(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An add between gc's look at the cache and its GC to the plugins (its entry
    written, its plugin running) is alive: it gets no DEL and is in the GC's valid
    attachments. gc's stale DELs come from its own policy, before."""
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    plugin(bin_dir, "a", log)
    (tmp_path / "n.json").write_text(json.dumps({"cniVersion": "1.1.0", "name": "n",
                                                 "plugins": [{"type": "a"}]}))
    cni = ii.CNI([str(bin_dir)], str(tmp_path / "cache"))
    network = ii.read_network(str(tmp_path / "n.json"))
    ii._write_cache(cni.cache_dir, network, ii.Attachment("c1", "/x", "eth1"), None)  # its ADD under way
    seen = ii._cached_attachments_by_network

    def added_after_the_look(cache_dir: str) -> dict[str, list[tuple[str, str]]]:
        monkeypatch.setattr(ii, "_cached_attachments_by_network", seen)  # only gc's first look misses it
        return {}

    monkeypatch.setattr(ii, "_cached_attachments_by_network", added_after_the_look)
    records = list(ii._gc_verb(cni, {"n": network}, dry_run=False))
    assert [r.action for r in records] == ["gc"]
    assert log.read_text() == "a GC []\n"  # no DEL of c1
    assert json.loads(log.with_suffix(".stdin").read_text())["cni.dev/valid-attachments"] == [
        {"containerID": "c1", "ifname": "eth1"}]
    assert ii._cached_network_attachments(cni.cache_dir, "n") == [("c1", "eth1")]


def libcni_entry(results: Path, network: str, container: str, text: str = "") -> None:
    """A cache entry as a runtime's or Multus' libcni writes it (no ifInject mark)."""
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"{network}-{container}-eth1"
    path.write_text(text or json.dumps({"kind": "cniCacheV1", "containerId": container, "ifName": "eth1",
                                        "networkName": network, "config": ""}))
    path.chmod(0o600)


@pytest.mark.parametrize("where, text, reason", [
    ("results", "", "another program attaches pods to it too ({results}/n-r1-eth1)"),
    ("multus/results", "", "another program attaches pods to it too ({results}/n-r1-eth1)"),
    ("results", '{"kind": "cniCa', "a cache entry that may be its, {results}/n-r1-eth1, cannot be read"),
])
def test_gc_is_not_sent_to_a_network_another_program_uses(tmp_path: Path, where: str, text: str,
                                                          reason: str) -> None:
    """A network that a runtime or Multus' delegates attach pods to as well (an
    entry of theirs, in the cache or in Multus' own), or whose entries cannot all
    be read: another user may be adding to it right now, unseen, and a GC that
    listed only what if-inject knows would have its plugins release that."""
    bin_dir, log = tmp_path / "bin", tmp_path / "log"
    bin_dir.mkdir()
    plugin(bin_dir, "a", log)
    cache = tmp_path / "cache"
    network = ii.parse_network_config(json.dumps({"cniVersion": "1.1.0", "name": "n",
                                                  "plugins": [{"type": "a"}]}).encode())
    cni = ii.CNI([str(bin_dir)], str(cache))
    ii._write_cache(cni.cache_dir, network, ii.Attachment("c1", "/x", "eth1"), None)
    libcni_entry(cache / "results", "n-x", "r0")  # another network's, named alike
    assert [r.action for r in ii._gc_verb(cni, {"n": network}, dry_run=False)] == ["gc"]
    assert log.read_text() == "a GC []\n"
    log.unlink()
    libcni_entry(cache / where, "n", "r1", text)
    only_ours = ii.parse_network_config(json.dumps({"cniVersion": "1.1.0", "name": "m",
                                                    "plugins": [{"type": "a"}]}).encode())
    ii._write_cache(cni.cache_dir, only_ours, ii.Attachment("c1", "/x", "eth1"), None)
    ours, record = ii._gc_verb(cni, {"n": network, "m": only_ours}, dry_run=False)
    assert (ours.network.name, ours.action, record.network.name, record.action, record.reason) == (
        "m", "gc", "n", "gc not sent",
        reason.format(results=cache / where) + ": only if-inject's networks get its GC")
    assert log.read_text() == "a GC []\n"  # m's only: none for n


def test_a_stdout_that_cannot_be_written_is_one_error_line(tool: list[str], tmp_path: Path) -> None:
    """stdout on a full disk (/dev/full): the report is lost, said in one line, exit 1."""
    with open("/dev/full", "w") as full:
        proc = subprocess.run([*tool, "-cache-dir", str(tmp_path / "cache"), "status", "-spec",
                               str(spec(tmp_path, "1.0.0"))], stdout=full, stderr=subprocess.PIPE, text=True)
    lines = proc.stderr.splitlines()
    assert (proc.returncode, len(lines)) == (1, 2) and "Traceback" not in proc.stderr
    assert json.loads(lines[1])["error"] == ("stdout could not be written (No space left on device): "
                                             "the output was not fully written")
