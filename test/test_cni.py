"""The CNI layer on its own: plugin execution, cache, add/del/check (as root).

Real plugins from /usr/lib/cni run into real network namespaces made here;
fake plugins (small shell scripts) stand in only for faults. Config loading
and validation need no root: test/unit/test_cni_config.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import if_inject as ii
import support.node
import support.toolrun
from support import CNI_BIN
from support.node import ip, node_links
from support.toolrun import wait_for

TUNING_STATE = Path("/run/cni/tuning")  # the tuning plugin's, on the node


@pytest.fixture
def ns(netns: str) -> str:
    """The name of a fresh netns (conftest's `netns` is its path, /run/netns/NAME)."""
    return os.path.basename(netns)


@pytest.fixture
def cni(tmp_path: Path) -> ii.CNI:
    """A CNI runtime with a private cache and a dir for fake plugins first in its path."""
    (tmp_path / "bin").mkdir()
    return ii.CNI([str(tmp_path / "bin"), CNI_BIN], str(tmp_path / "cni"), timeout=5)


def network(tmp_path: Path, *plugins: dict[str, Any], name: str = "iitnet",
            version: str = "1.0.0") -> ii.NetworkConfig:
    """A conflist whose host-local plugins keep their leases under tmp_path."""
    for plugin in plugins:
        if plugin.get("ipam", {}).get("type") == "host-local":
            plugin["ipam"]["dataDir"] = str(tmp_path / "ipam")
    conf = {"cniVersion": version, "name": name, "plugins": list(plugins)}
    return ii.parse_network_config(json.dumps(conf).encode())


def ptp(subnet: str = "10.99.1.0/24") -> dict[str, Any]:
    return {"type": "ptp", "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]]}}


def fake_plugin(cni: ii.CNI, name: str, body: str) -> None:
    support.toolrun.fake_plugin(Path(cni.path[0]), name, body)


def leases(tmp_path: Path, net: str = "iitnet") -> list[str]:
    return support.node.leases(tmp_path / "ipam", net)


def attachment(ns: str, ifname: str = "net1") -> ii.Attachment:
    return ii.Attachment(ns, f"/run/netns/{ns}", ifname, [("IgnoreUnknown", "1")])


# ---- add, check, del with real plugins ----------------------------------

def test_ptp_add_check_del(cni: ii.CNI, ns: str, tmp_path: Path) -> None:
    net = network(tmp_path, ptp())
    att = attachment(ns)
    result = cni.add(net, att)
    assert result["cniVersion"] == "1.0.0"
    assert result["ips"][0]["address"] == "10.99.1.2/24"
    assert "inet 10.99.1.2/24" in ip("-o", "addr", "show", "net1", netns=ns)
    assert leases(tmp_path) == ["10.99.1.2"]
    host_veth = result["interfaces"][0]["name"]
    assert host_veth in node_links()

    cache = Path(cni.cache_dir) / "results" / f"iitnet-{ns}-net1"  # libcni's place under its cacheDir
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    entry = json.loads(cache.read_text())
    assert entry["kind"] == "cniCacheV1" and entry["result"] == result
    assert (entry["containerId"], entry["ifName"], entry["networkName"]) == (ns, "net1", "iitnet")
    assert base64.b64decode(entry["config"]) == net.raw
    assert entry["netns"] == f"/run/netns/{ns}" and entry["cniArgs"] == [["IgnoreUnknown", "1"]]

    cni.check(net, att)
    cni.delete(net, att)
    assert "net1" not in ip("-o", "link", netns=ns)
    assert host_veth not in node_links()
    assert leases(tmp_path) == [] and not cache.exists()
    cni.delete(net, att)  # DEL is idempotent


def test_check_finds_a_missing_interface(cni: ii.CNI, ns: str, tmp_path: Path) -> None:
    net, att = network(tmp_path, ptp()), attachment(ns)
    cni.add(net, att)
    ip("link", "del", "net1", netns=ns)
    with pytest.raises(ii.InjectError, match="plugin ptp failed"):
        cni.check(net, att)
    cni.delete(net, att)
    assert leases(tmp_path) == []


def test_check_needs_a_cached_result_and_cni_040(cni: ii.CNI, ns: str, tmp_path: Path) -> None:
    with pytest.raises(ii.InjectError, match="no cached result for net1 of network iitnet"):
        cni.check(network(tmp_path, ptp()), attachment(ns))
    with pytest.raises(ii.InjectError, match=r"CHECK needs cniVersion 0\.4\.0"):
        cni.check(network(tmp_path, ptp(), version="0.3.1"), attachment(ns))


def test_bridge_conflist_with_tuning_mac_capability(cni: ii.CNI, ns: str, tmp_path: Path) -> None:
    bridge = {"type": "bridge", "bridge": "iitbr0", "isGateway": False, "ipMasq": False,
              "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.2.0/24"}]]}}
    tuning = {"type": "tuning", "capabilities": {"mac": True}}
    net, att = network(tmp_path, bridge, tuning), attachment(ns)
    att.capability_args = {"mac": "02:11:22:33:44:55"}
    existed = {d for d in (TUNING_STATE, TUNING_STATE.parent) if d.exists()}
    try:
        result = cni.add(net, att)
        assert "link/ether 02:11:22:33:44:55" in ip("-o", "link", "show", "net1", netns=ns)
        assert result["ips"][0]["address"] == "10.99.2.2/24"
        cni.check(net, att)
        cni.delete(net, att)
        assert leases(tmp_path) == [] and "net1" not in ip("-o", "link", netns=ns)
    finally:
        subprocess.run(["ip", "link", "del", "iitbr0"], capture_output=True)
        # tuning keeps the link's original settings in /run/cni/tuning, and leaves
        # the directories after DEL: removed here if this test made them.
        (TUNING_STATE / f"{ns}-net1.json").unlink(missing_ok=True)
        for made in (d for d in (TUNING_STATE, TUNING_STATE.parent) if d not in existed):
            with contextlib.suppress(OSError):  # not empty: another's, left alone
                made.rmdir()


def test_macvlan_with_static_ipam(cni: ii.CNI, ns: str, tmp_path: Path) -> None:
    master = ["ip", "link", "add", "iitmaster0", "type", "veth", "peer", "name", "iitmaster1"]
    subprocess.run(master, check=True)
    try:
        macvlan = {"type": "macvlan", "master": "iitmaster0", "mode": "bridge",
                   "ipam": {"type": "static", "addresses": [{"address": "10.99.3.7/24"}]}}
        net, att = network(tmp_path, macvlan, version="0.4.0"), attachment(ns)
        result = cni.add(net, att)
        assert result["ips"][0]["address"] == "10.99.3.7/24"
        assert "inet 10.99.3.7/24" in ip("-o", "addr", "show", "net1", netns=ns)
        cni.check(net, att)
        cni.delete(net, att)
        assert "net1" not in ip("-o", "link", netns=ns)
    finally:
        subprocess.run(["ip", "link", "del", "iitmaster0"], check=True)


# ---- faults: everything is rolled back ----------------------------------

def assert_nothing_left(cni: ii.CNI, ns: str, tmp_path: Path, links_before: set[str]) -> None:
    assert leases(tmp_path) == []
    assert node_links() == links_before
    assert "net1" not in ip("-o", "link", netns=ns)
    assert support.node.cache_entries(Path(cni.cache_dir)) == []


FAULTS = {
    "error JSON": ('echo \'{"cniVersion":"1.0.0","code":111,"msg":"no way","details":"really"}\'; exit 1',
                   "plugin fault failed (code 111): no way: really"),
    "stderr only": ("echo 'it broke' >&2; exit 3", "plugin fault failed (exit 3): it broke"),
    "crash": ("kill -SEGV $$", "plugin fault failed (killed by signal 11): no output"),
    "garbage": ("echo 'not json at all'", "plugin fault returned no valid result: 'not json at all\\n'"),
    "no result": ("exit 0", "plugin fault returned no valid result: ''"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_second_plugin_fails_and_the_first_is_rolled_back(
        cni: ii.CNI, ns: str, tmp_path: Path, fault: str) -> None:
    body, message = FAULTS[fault]
    # The fake plugin fails on ADD only; DEL must succeed, as the spec asks.
    fake_plugin(cni, "fault", f'[ "$CNI_COMMAND" = ADD ] || exit 0\ncat >/dev/null\n{body}')
    links_before = node_links()
    with pytest.raises(ii.InjectError) as e:
        cni.add(network(tmp_path, ptp(), {"type": "fault"}), attachment(ns))
    assert str(e.value).startswith(message)
    assert str(e.value).endswith("; rolled back (DEL ran for fault, ptp)")
    assert_nothing_left(cni, ns, tmp_path, links_before)


def test_a_plugin_that_cannot_be_started_fails_cleanly_and_the_first_is_rolled_back(
        cni: ii.CNI, ns: str, tmp_path: Path) -> None:
    """Found and executable, yet exec fails (ENOEXEC: no #! line, another architecture):
    the ADD and its rollback's DEL of it fail with the reason, ptp's DEL still runs, and
    the entry stays for a later del, which works once the plugin does."""
    bad = Path(cni.path[0]) / "bad"
    bad.write_text("not a program\n")
    bad.chmod(0o755)
    net, att = network(tmp_path, ptp(), {"type": "bad"}), attachment(ns)
    links_before = node_links()
    with pytest.raises(ii.InjectError) as e:
        cni.add(net, att)
    why = "plugin bad could not be started: Exec format error"
    assert str(e.value) == f"{why}; rollback failed: {why}"
    assert leases(tmp_path) == [] and "net1" not in ip("-o", "link", netns=ns)
    assert os.listdir(ii._results_dir(cni.cache_dir)) == [f"iitnet-{ns}-net1"]
    with pytest.raises(ii.InjectError, match=f"^DEL failed: {why}$"):
        cni.delete(net, att)
    fake_plugin(cni, "bad", "exit 0")
    cni.delete(net, att)
    assert_nothing_left(cni, ns, tmp_path, links_before)


def test_hanging_plugin_is_killed_and_rolled_back(cni: ii.CNI, ns: str, tmp_path: Path) -> None:
    marker = tmp_path / "hung.pid"
    fake_plugin(cni, "hang", f'[ "$CNI_COMMAND" = ADD ] || exit 0\necho $$ > {marker}\nexec sleep 60')
    cni.timeout = 1
    links_before = node_links()
    started = time.monotonic()
    with pytest.raises(ii.InjectError, match=r"^plugin hang did not finish within 1s: killed; "
                                             r"rolled back \(DEL ran for hang, ptp\)$") as e:
        cni.add(network(tmp_path, ptp(), {"type": "hang"}), attachment(ns))
    assert time.monotonic() - started < 5
    assert e.value.code == ii.CODE_TRY_AGAIN_LATER
    assert not Path(f"/proc/{marker.read_text().strip()}").exists()
    assert_nothing_left(cni, ns, tmp_path, links_before)


def test_a_plugin_whose_child_keeps_its_output_open_is_still_ended(cni: ii.CNI, ns: str,
                                                                   tmp_path: Path) -> None:
    """A plugin that leaves a child in a session of its own, holding the plugin's stdout:
    killing the plugin's group cannot reach it, so the pipes never close; if-inject stops
    waiting for them and rolls back."""
    child = tmp_path / "child.pid"
    fake_plugin(cni, "daemon", '[ "$CNI_COMMAND" = ADD ] || exit 0\n'
                               f"setsid sh -c 'echo $$ > {child}; exec sleep 60' &\nexec sleep 60")
    cni.timeout = 1
    links_before = node_links()
    started = time.monotonic()
    try:
        with pytest.raises(ii.InjectError, match=r"^plugin daemon did not finish within 1s: killed; "
                                                 r"rolled back \(DEL ran for daemon, ptp\)$"):
            cni.add(network(tmp_path, ptp(), {"type": "daemon"}), attachment(ns))
        assert time.monotonic() - started < 15  # not the child's 60 s
        assert Path(f"/proc/{child.read_text().strip()}").exists()
    finally:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(child.read_text()), signal.SIGKILL)  # the child we had the plugin start
    assert_nothing_left(cni, ns, tmp_path, links_before)


def test_sigint_during_add_rolls_back(cni: ii.CNI, ns: str, tmp_path: Path) -> None:
    """A caller of the API interrupted with Ctrl-C: the ADD is undone before it returns."""
    fake_plugin(cni, "hang", f'[ "$CNI_COMMAND" = ADD ] || exit 0\ntouch {tmp_path}/started\nexec sleep 60')
    net = network(tmp_path, ptp(), {"type": "hang"})
    (tmp_path / "net.json").write_bytes(net.raw)
    # Ctrl-C as in a terminal: the child takes SIGINT back itself (a background job,
    # as CI may run us, inherits it ignored); no preexec_fn, which forks with gRPC's threads.
    script = f"""
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)
import if_inject as ii
cni = ii.CNI({cni.path!r}, {cni.cache_dir!r}, 30)
att = ii.Attachment({ns!r}, "/run/netns/{ns}", "net1", [("IgnoreUnknown", "1")])
try:
    cni.add(ii.read_network({str(tmp_path / 'net.json')!r}), att)
except ii.InjectError as e:
    print(e)
"""
    links_before = node_links()
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parent.parent)
    wait_for(tmp_path / "started", proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert out.strip() == "interrupted (KeyboardInterrupt); rolled back (DEL ran for hang, ptp)"
    assert_nothing_left(cni, ns, tmp_path, links_before)


# ---- the cache ----------------------------------------------------------

@pytest.mark.parametrize("content", [b"", b"{corrupt", b"[]", b'{"kind": "other"}'])
def test_corrupt_cache_never_blocks_del(cni: ii.CNI, ns: str, tmp_path: Path, content: bytes) -> None:
    net, att = network(tmp_path, ptp()), attachment(ns)
    cni.add(net, att)
    Path(ii._cache_file(cni.cache_dir, "iitnet", ns, "net1")).write_bytes(content)
    cni.delete(net, att)
    assert leases(tmp_path) == [] and os.listdir(ii._results_dir(cni.cache_dir)) == []
    assert "net1" not in ip("-o", "link", netns=ns)


def test_read_only_cache_dir_fails_before_any_plugin(cni: ii.CNI, ns: str, tmp_path: Path) -> None:
    os.makedirs(cni.cache_dir, mode=0o700)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", cni.cache_dir], check=True)
    try:
        # The network's lock (docs/cni-1.1.md, GC) is the first thing written there.
        with pytest.raises(ii.InjectError, match=r"lock .*/if-inject-locks/network:iitnet.lock: Read-only"):
            cni.add(network(tmp_path, ptp()), attachment(ns))
    finally:
        subprocess.run(["umount", cni.cache_dir], check=True)
    assert leases(tmp_path) == [] and "net1" not in ip("-o", "link", netns=ns)


def test_cache_written_by_libcni_is_read(cni: ii.CNI, ns: str, tmp_path: Path) -> None:
    """An entry without our mark (as containerd writes) still gives DEL its prevResult."""
    net, att = network(tmp_path, ptp()), attachment(ns)
    result = cni.add(net, att)
    path = Path(ii._cache_file(cni.cache_dir, "iitnet", ns, "net1"))
    entry = json.loads(path.read_text())
    del entry[ii._CACHE_MARK]
    path.write_text(json.dumps(entry))
    cached = ii._read_cache(str(path))
    assert cached is not None and cached["result"] == result
    assert ii._cached_attachments(cni.cache_dir) == []  # not ours: gc and list leave it alone
    cni.delete(net, att)
    assert leases(tmp_path) == [] and not path.exists()


# ---- disableCheck and cached results of another version -----------------

def test_disable_check_runs_no_plugin(cni: ii.CNI, ns: str, tmp_path: Path) -> None:
    """As libcni's CheckNetworkList: a conflist with disableCheck passes CHECK
    without running a plugin (here with the interface gone and no cache entry),
    but not before 0.4.0; a single conf's disableCheck is ignored, as libcni does."""
    net, att = network(tmp_path, ptp()), attachment(ns)
    conf = json.loads(net.raw)
    disabled = ii.parse_network_config(json.dumps(dict(conf, disableCheck=True)).encode())
    cni.check(disabled, att)  # nothing added, nothing cached: no plugin ran
    cni.add(net, att)
    ip("link", "del", "net1", netns=ns)
    cni.check(disabled, att)
    with pytest.raises(ii.InjectError, match="plugin ptp failed"):
        cni.check(net, att)
    with pytest.raises(ii.InjectError, match=r"CHECK needs cniVersion 0\.4\.0"):
        old = dict(conf, disableCheck=True, cniVersion="0.3.1")
        cni.check(ii.parse_network_config(json.dumps(old).encode()), att)
    single = ii.parse_network_config(json.dumps(dict(conf["plugins"][0], name="iitnet", cniVersion="1.0.0",
                                              disableCheck=True)).encode())
    with pytest.raises(ii.InjectError, match="plugin ptp failed"):
        cni.check(single, att)
    cni.delete(net, att)
    assert leases(tmp_path) == []


def test_cached_result_follows_the_networks_version(cni: ii.CNI, ns: str, tmp_path: Path) -> None:
    """ADD at 0.4.0, then CHECK and DEL at 1.0.0: the cached result is converted
    (ptp refuses a 0.4.0 prevResult in a 1.0.0 conf); one that cannot be
    converted fails CHECK clearly, and DEL still releases everything without it."""
    att = attachment(ns)
    cni.add(network(tmp_path, ptp(), version="0.4.0"), att)
    later = network(tmp_path, ptp(), version="1.0.0")
    cni.check(later, att)
    cni.delete(later, att)
    assert leases(tmp_path) == [] and "net1" not in ip("-o", "link", netns=ns)

    cni.add(later, att)
    path = Path(ii._cache_file(cni.cache_dir, "iitnet", ns, "net1"))
    entry = json.loads(path.read_text())
    path.write_text(json.dumps(dict(entry, result=dict(entry["result"], cniVersion="0.5.0"))))
    with pytest.raises(ii.InjectError, match=r"^cached result .*: cannot convert a CNI 0\.5\.0 result to "
                                             r"1\.0\.0: no such result version$") as e:
        cni.check(later, att)
    assert e.value.code == ii.CODE_INCOMPATIBLE_VERSION
    cni.delete(later, att)
    assert leases(tmp_path) == [] and "net1" not in ip("-o", "link", netns=ns) and not path.exists()
