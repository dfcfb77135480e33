"""What the result cache, the lock files and the netns checks trust (docs/trust.md), without
root or a runtime: planted symbolic links, loose modes, names that are not names, a cached
netns that is the node's, FIFOs, escapes in tables. Plugins here are a spy shell script that
records what it was asked; test/test_trust.py does the same against the lab."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import if_inject as ii
from support import REPO
from support.toolrun import fake_plugin

SPY_BODY = ('echo "$CNI_COMMAND $CNI_NETNS" >> "$(dirname "$0")/calls"\n'
            '[ "$CNI_COMMAND" = ADD ] && echo \'{"cniVersion": "1.0.0"}\'\nexit 0')


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cni"


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A CNI dir with the spy plugin; bin_dir / "calls" lists "COMMAND NETNS" per call."""
    (tmp_path / "bin").mkdir()
    fake_plugin(tmp_path / "bin", "spy", SPY_BODY)
    return tmp_path / "bin"


def calls(bin_dir: Path) -> list[str]:
    path = bin_dir / "calls"
    return path.read_text().splitlines() if path.exists() else []


def spy_network(name: str = "iitnet") -> ii.NetworkConfig:
    return ii.parse_network_config(json.dumps({"cniVersion": "1.0.0", "name": name, "type": "spy"}).encode())


def pod_attachment(netns: str = "") -> ii.Attachment:
    pod = ii.Pod("ns1", "pod1", uid="uid1", sandbox_id="sandbox1", netns=netns)
    return ii.Attachment("container1", netns, "net1", [], {}, pod)


def write_entry(cache: Path, netns: str = "", network: str = "iitnet") -> Path:
    """A cache entry of ours, as an add writes it, recording `netns` (written into the file as is)."""
    ii._write_cache(str(cache), spy_network(network), pod_attachment(), {"cniVersion": "1.0.0"})
    path = Path(ii._cache_file(str(cache), network, "container1", "net1"))
    entry = json.loads(path.read_text())
    entry["netns"] = netns
    path.write_text(json.dumps(entry))  # the same file: its mode stays 0600
    return path


def node(cache: Path, bin_dir: Path) -> ii.Node:
    """A Node that never reaches a runtime: delete_cached needs only its CNI."""
    return ii.Node("unix:///nowhere.sock", 5, [str(bin_dir)], str(cache))


def plant_theirs(path: Path, **fields: str) -> Path:
    """An entry another program's libcni wrote (no ifInject mark), 0600 as libcni writes it."""
    path.write_text(json.dumps({"kind": "cniCacheV1", **fields}))
    path.chmod(0o600)
    return path


def refusal(path: Path | str, why: str) -> str:
    return f"{path} {why}: refusing it (see docs/trust.md)"


# ---- the cache and lock files: no symbolic link followed, ours only -------------------------

def test_a_symlink_planted_at_the_temporary_name_is_refused_and_its_target_unchanged(
        cache: Path, tmp_path: Path) -> None:
    """Both spellings of the temporary name, this version's and the earlier `<entry>.tmp<pid>`."""
    target = tmp_path / "target"
    target.write_text("precious")
    results = cache / "results"
    results.mkdir(parents=True, mode=0o700)
    os.chmod(cache, 0o700)
    name = "iitnet-container1-net1"
    for planted in (f".{name}.tmp{os.getpid()}", f"{name}.tmp{os.getpid()}"):
        (results / planted).symlink_to(target)
    with pytest.raises(ii.InjectError) as e:
        ii._write_cache(str(cache), spy_network(), pod_attachment(), None)
    assert str(e.value) == refusal(results / f".{name}.tmp{os.getpid()}", "exists already")
    assert target.read_text() == "precious" and not (results / name).exists()


def test_a_symlink_as_cache_entry_is_refused_and_its_target_unchanged(cache: Path, tmp_path: Path) -> None:
    path = write_entry(cache)
    target = tmp_path / "elsewhere"
    target.write_bytes(path.read_bytes())  # a valid entry of ours, but not in the cache
    target.chmod(0o600)
    before = target.read_bytes()
    path.unlink()
    path.symlink_to(target)
    with pytest.raises(ii.InjectError) as e:
        ii._read_cache(str(path))
    assert str(e.value) == refusal(path, "is a symbolic link")
    with pytest.raises(ii.InjectError) as e:
        ii._write_cache(str(cache), spy_network(), pod_attachment(), None)
    assert str(e.value) == refusal(path, "is not a regular file")
    assert target.read_bytes() == before and path.is_symlink()


def test_a_symlink_as_lock_file_is_refused_and_nothing_made_at_its_target(cache: Path,
                                                                          tmp_path: Path) -> None:
    locks = cache / "if-inject-locks"
    locks.mkdir(parents=True, mode=0o700)
    os.chmod(cache, 0o700)
    target = tmp_path / "made-through-the-link"
    (locks / "sandbox1-net1.lock").symlink_to(target)
    with pytest.raises(ii.InjectError) as e, ii._attachment_lock(str(cache), "sandbox1", "net1", 1):
        pass
    assert str(e.value) == refusal(locks / "sandbox1-net1.lock", "is a symbolic link")
    assert not target.exists()


def test_the_lock_dir_is_removed_only_when_it_is_the_one_locked_in(cache: Path, tmp_path: Path) -> None:
    """The last holder removes the lock dir it locked in, by name: never one that
    took that name meanwhile (another's empty dir in a sticky cache dir)."""
    locks = cache / "if-inject-locks"
    with ii._attachment_lock(str(cache), "sandbox1", "net1", 1):
        locks.rename(tmp_path / "ours")
        locks.mkdir(mode=0o700)  # empty, of the same name: not ours
    assert locks.is_dir() and sorted(os.listdir(tmp_path / "ours")) == []
    with ii._attachment_lock(str(cache), "sandbox1", "net1", 1):
        assert os.listdir(locks) == ["sandbox1-net1.lock"]
    assert not locks.exists()  # the one it locked in


@pytest.mark.parametrize("sub", ["results", "if-inject-locks"])
def test_a_symlink_as_results_or_lock_dir_is_refused(cache: Path, tmp_path: Path, sub: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    cache.mkdir(mode=0o700)
    (cache / sub).symlink_to(elsewhere)
    with pytest.raises(ii.InjectError) as e:
        if sub == "results":
            ii._write_cache(str(cache), spy_network(), pod_attachment(), None)
        else:
            with ii._attachment_lock(str(cache), "sandbox1", "net1", 1):
                pass
    assert str(e.value) == refusal(cache / sub, "is a symbolic link")
    assert list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o660, 0o622], ids=oct)
def test_an_entry_others_can_read_or_write_is_refused(cache: Path, bin_dir: Path, mode: int,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    path = write_entry(cache)
    path.chmod(mode)
    with pytest.raises(ii.InjectError) as e:
        ii._read_cache(str(path))
    assert str(e.value) == refusal(path, f"has mode {mode:04o}: others can read or write it")
    # Listed (list, gc): left out, with an error line naming it.
    assert ii._cached_attachments(str(cache)) == []
    [record] = caplog.records
    assert (record.levelname, record.getMessage(), record.__dict__["fields"]["error"],
            record.__dict__["fields"]["path"]) == (
        "ERROR", "Refusing cache entry", str(e.value), str(path))
    # A DEL with the network given reads it too: refused, nothing runs, the file stays.
    with pytest.raises(ii.InjectError, match="others can read or write it"):
        ii.CNI([str(bin_dir)], str(cache)).delete(spy_network(), pod_attachment())
    assert calls(bin_dir) == [] and path.exists()


def test_a_results_dir_others_can_write_in_is_refused(cache: Path) -> None:
    path = write_entry(cache)
    (cache / "results").chmod(0o777)
    with pytest.raises(ii.InjectError) as e:
        ii._read_cache(str(path))
    assert str(e.value) == refusal(cache / "results", "has mode 0777: others can write in it")


def stat_of(mode: int, uid: int) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, uid, 0, 0, 0, 0, 0))


def test_what_another_user_owns_is_refused() -> None:
    """An owner other than the euid (root, as the tool runs); test/test_trust.py chowns real files."""
    other = os.geteuid() + 1
    me = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
    for directory, mode in ((False, stat.S_IFREG | 0o600), (True, stat.S_IFDIR | 0o700)):
        with pytest.raises(ii.InjectError) as e:
            ii._check_ours(stat_of(mode, other), "/x", directory, 0o077)
        assert str(e.value) == refusal("/x", f"is owned by uid {other}, not by {me}")
    ii._check_ours(stat_of(stat.S_IFREG | 0o600, os.geteuid()), "/x", False, 0o077)
    with pytest.raises(ii.InjectError, match="is not a regular file"):
        ii._check_ours(stat_of(stat.S_IFIFO | 0o600, os.geteuid()), "/x", False, 0o077)


# ---- the way to the cache dir: nothing another user can change -------------------------------

def test_a_cache_dir_below_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    """Another user could rename what is in it: the cache dir below, or a part of its way."""
    (tmp_path / "open").mkdir(mode=0o777)
    (tmp_path / "open").chmod(0o777)
    for cache in (tmp_path / "open" / "cni", tmp_path / "open" / "made" / "cni"):
        with pytest.raises(ii.InjectError) as e:
            ii._write_cache(str(cache), spy_network(), pod_attachment(), None)
        assert str(e.value) == refusal(cache, f"goes through {tmp_path}/open, which is writable by "
                                              "group or others")
    assert os.listdir(tmp_path / "open") == []


def test_a_symbolic_link_on_the_way_is_followed_when_only_root_can_change_it(tmp_path: Path) -> None:
    """/var/run -> /run: a link that root (the euid) made, in a directory nobody else can write."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to("real")
    for cache in (tmp_path / "link" / "cni", tmp_path / "link" / ".." / "link" / "cni2"):
        ii._write_cache(str(cache), spy_network(), pod_attachment(), None)
    assert sorted(os.listdir(tmp_path / "real")) == ["cni", "cni2"]
    assert os.listdir(tmp_path / "real" / "cni" / "results") == ["iitnet-container1-net1"]


def test_a_cache_dir_others_can_write_must_be_sticky(tmp_path: Path) -> None:
    """As /tmp: what is in it is checked in turn, and nobody else can rename it away."""
    cache = tmp_path / "cni"
    cache.mkdir()
    cache.chmod(0o777)
    with pytest.raises(ii.InjectError) as e:
        ii._write_cache(str(cache), spy_network(), pod_attachment(), None)
    assert str(e.value) == refusal(cache, "has mode 0777: others can write in it, and it is not sticky")
    cache.chmod(0o1777)
    ii._write_cache(str(cache), spy_network(), pod_attachment(), None)
    assert os.listdir(cache) == ["results"]


def test_what_is_opened_is_the_path_that_was_checked(tmp_path: Path) -> None:
    """`link/..` is the link's target's parent, as the kernel resolves it, not `link`'s
    own: a lexical reading would open what was never checked (here: a directory others
    can write)."""
    (tmp_path / "d1" / "d2").mkdir(parents=True)
    (tmp_path / "link").symlink_to("d1/d2")
    (tmp_path / "evil").mkdir(mode=0o777)
    (tmp_path / "evil").chmod(0o777)
    ii._write_cache(str(tmp_path / "link" / ".." / "evil" / "cni"), spy_network(), pod_attachment(), None)
    assert os.listdir(tmp_path / "d1" / "evil" / "cni" / "results") == ["iitnet-container1-net1"]
    assert os.listdir(tmp_path / "evil") == []


def test_missing_directories_are_made_that_no_one_else_can_change(tmp_path: Path) -> None:
    """0755 on the way and 0700 at the end, whatever the umask adds: a second run passes."""
    before = os.umask(0o002)
    try:
        cache = tmp_path / "a" / "b" / "cni"
        for _ in range(2):
            ii._CACHE_PATHS.clear()
            ii._write_cache(str(cache), spy_network(), pod_attachment(), None)
    finally:
        os.umask(before)
    modes = [stat.S_IMODE(os.stat(p).st_mode) for p in (tmp_path / "a", tmp_path / "a" / "b", cache)]
    assert modes == [0o755, 0o755, 0o700]


@pytest.mark.parametrize("planted", ["symlink", "directory others can write"])
def test_a_missing_directory_planted_after_the_way_was_checked_is_refused(tmp_path: Path,
                                                                          planted: str) -> None:
    """The way to a cache dir is checked, then its missing part made: what another user
    puts at a missing name meanwhile (in /tmp, anyone can) is refused, and nothing is
    made below it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    missing = tmp_path / "x"
    if planted == "symlink":
        missing.symlink_to(elsewhere)
    else:
        missing.mkdir()
        missing.chmod(0o777)  # as another user's would be to us
    why = "is a symbolic link" if planted == "symlink" else "is writable by group or others"
    with pytest.raises(ii.InjectError) as e:
        ii._make_dirs(str(missing / "cni"))
    assert str(e.value) == refusal(missing, why)
    assert os.listdir(elsewhere) == [] and (planted == "symlink" or os.listdir(missing) == [])


def test_a_relative_cache_dir_and_a_working_directory_that_is_gone(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    ii._write_cache("cni", spy_network(), pod_attachment(), None)
    assert os.listdir(tmp_path / "work" / "cni") == ["results"]
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")  # "cni" is another dir now
    ii._write_cache("cni", spy_network(), pod_attachment(), None)
    assert os.listdir(tmp_path / "other" / "cni") == ["results"]
    (tmp_path / "gone").mkdir()
    monkeypatch.chdir(tmp_path / "gone")
    (tmp_path / "gone").rmdir()  # an absolute cache dir needs no working directory
    ii._write_cache(str(tmp_path / "abs"), spy_network(), pod_attachment(), None)
    assert os.listdir(tmp_path / "abs") == ["results"]


def test_what_another_user_can_change_on_the_way_is_refused() -> None:
    """The rules, on stat results (test/test_trust.py has them on real files, chowned)."""
    me, other = os.geteuid(), os.geteuid() + 1
    safe_dir = stat_of(stat.S_IFDIR | 0o755, 0)
    assert ii._unsafe_on_the_way(safe_dir, me) == ""
    assert ii._unsafe_on_the_way(stat_of(stat.S_IFDIR | 0o700, me), me) == ""
    assert ii._unsafe_on_the_way(stat_of(stat.S_IFDIR | 0o1777, 0), me) == ""  # /tmp
    assert ii._unsafe_on_the_way(stat_of(stat.S_IFDIR | 0o1777, other), me) == f"is owned by uid {other}"
    assert ii._unsafe_on_the_way(stat_of(stat.S_IFDIR | 0o775, 0), me) == "is writable by group or others"
    link = stat_of(stat.S_IFLNK | 0o777, 0)
    assert ii._unsafe_link(link, safe_dir, me) == ""
    assert ii._unsafe_link(stat_of(stat.S_IFLNK | 0o777, other), safe_dir, me) == \
        f"is a symbolic link owned by uid {other}"
    assert ii._unsafe_link(link, stat_of(stat.S_IFDIR | 0o1777, 0), me) == \
        "is a symbolic link in a directory others can write"


# ---- names: a network whose name has ".tmp" in it; temporary files -----------------------------

def test_a_network_named_like_a_temporary_file_is_listed(cache: Path) -> None:
    write_entry(cache, network="corp.tmpnet")
    (cache / "results" / f".corp.tmpnet-x-net1.tmp{os.getpid()}").write_text("{}")  # ours: never listed
    [cached] = ii._cached_attachments(str(cache))
    assert (cached.network, cached.path) == ("corp.tmpnet",
                                             str(cache / "results" / "corp.tmpnet-container1-net1"))


def nad(metadata: dict[str, str]) -> bytes:
    return json.dumps({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                       "metadata": metadata, "spec": {"config": "{}"}}).encode()


@pytest.mark.parametrize("check", [
    lambda: ii.parse_network_config(b'{"name": "net1\\n", "cniVersion": "1.0.0", "type": "ptp"}'),
    lambda: ii._validate_container_id("abc\n"),
    lambda: ii._validate_ifname("net1\n"),
    lambda: ii._attachment_lock("/nowhere", "sandbox1\n", "net1", 1),
    lambda: ii.parse_spec(nad({"name": "ptp\n"})),
    lambda: ii.parse_spec(nad({"name": "ptp", "namespace": "default\n"})),
], ids=["network", "container-id", "interface", "sandbox-id", "nad-name", "nad-namespace"])
def test_a_name_with_a_trailing_newline_is_refused(check: Any) -> None:
    with pytest.raises(ii.InjectError, match=r"invalid .*\\n"):
        check()


@pytest.mark.parametrize("pattern, text", [
    (ii._LABEL_KEY, "app\n"), (ii._LABEL_VALUE, "alpine\n"), (ii._OBJECT_NAME, "ptp\n"),
    (ii._NAMESPACE, "ns\n"), (ii._NAME_PATTERN, "net1\n"),
])
def test_every_name_pattern_refuses_a_trailing_newline(pattern: str, text: str) -> None:
    assert re.fullmatch(pattern, text.strip()) and not re.fullmatch(pattern, text)


def test_the_cli_refuses_a_container_id_with_a_newline(capsys: pytest.CaptureFixture[str]) -> None:
    code = ii.main(["-r", "unix:///nowhere.sock", "add", "-pod", "p", "-spec", "x.json",
                    "-containerid", "c1\n"])
    assert code == 2 and "invalid container ID 'c1\\\\n'" in capsys.readouterr().err


# ---- a netns read from the cache --------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["//proc/{pid}/ns/net", "/proc/./{pid}/ns/net",
                                      "/proc/{pid}/../{pid}/ns/net", "link"])
def test_a_cached_netns_that_is_the_nodes_is_refused_in_any_spelling(
        cache: Path, bin_dir: Path, tmp_path: Path, spelling: str) -> None:
    """The node's netns here is this test's own process's; through a symbolic link too."""
    node_netns = f"/proc/{os.getpid()}/ns/net"
    netns = spelling.format(pid=os.getpid())
    if spelling == "link":
        netns = str(tmp_path / "innocent")
        os.symlink(node_netns, netns)
    path = write_entry(cache, netns)
    [cached] = ii._cached_attachments(str(cache))
    with pytest.raises(ii.InjectError) as e:
        node(cache, bin_dir).delete_cached(cached)
    assert str(e.value) == (f"cache entry {path}: {ii._normal_path(netns)} is the node's own "
                            "network namespace: refusing to change the node")
    assert calls(bin_dir) == [] and path.exists()


@pytest.mark.parametrize("kind", ["fifo", "missing", "plain file", "relative"])
def test_a_cached_netns_that_is_no_netns_reaches_no_plugin(
        cache: Path, bin_dir: Path, tmp_path: Path, kind: str) -> None:
    """A FIFO is never opened (a plugin would hang on it); DEL runs without a netns, as for one
    that is gone. A relative path (it would depend on the plugin's cwd) is refused."""
    netns = str(tmp_path / "ns")
    if kind == "fifo":
        os.mkfifo(netns)
    elif kind == "plain file":
        Path(netns).write_text("")
    elif kind == "relative":
        netns = "run/netns/x"
    path = write_entry(cache, netns)
    [cached] = ii._cached_attachments(str(cache))
    assert_deleted_without_a_netns(cache, bin_dir, cached, path, refused=kind == "relative")


def assert_deleted_without_a_netns(cache: Path, bin_dir: Path, cached: ii.CachedAttachment, path: Path,
                                   refused: bool) -> None:
    """delete_cached of the entry at `path`: DEL runs without a netns and the entry goes;
    or, `refused`, its netns is no absolute path: no plugin runs, the entry stays."""
    if refused:
        with pytest.raises(ii.InjectError, match="is not an absolute path: refusing it"):
            node(cache, bin_dir).delete_cached(cached)
        assert calls(bin_dir) == [] and path.exists()
        return
    assert node(cache, bin_dir).delete_cached(cached)
    assert calls(bin_dir) == ["DEL "] and not path.exists()


@pytest.mark.parametrize("field, value", [
    ("cniArgs", [5]), ("cniArgs", 5), ("cniArgs", [["a", "b", "c"]]),
    ("result", "x"), ("result", [1]), ("result", {"cniVersion": [1]}), ("result", {"interfaces": 5}),
    ("result", {"ips": [], "routes": 5}), ("netns", "/var/run/netns/a\u0000b"),
])
def test_an_entry_of_ours_with_fields_of_the_wrong_shape_is_read_and_deleted_without_a_traceback(
        cache: Path, bin_dir: Path, field: str, value: object) -> None:
    """Root's own 0600 file, so trusted as ours, yet its fields are checked where they are
    used: list and network-status read it, a DEL runs (without what it cannot use), or a
    netns that is no path is refused, in one error."""
    path = write_entry(cache)
    entry = json.loads(path.read_text())
    path.write_text(json.dumps({**entry, field: value}))
    [cached] = ii._cached_attachments(str(cache))
    assert cached.json()["addresses"] == [] and cached.cni_args == []
    ii.network_status(cached.result, "n", "net1")
    assert_deleted_without_a_netns(cache, bin_dir, cached, path, refused=field == "netns")


def test_an_entry_of_ours_at_another_name_or_of_another_network_is_refused(
        cache: Path, bin_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A DEL reads and removes the entry at the name its network, container ID and
    interface give: an entry copied or renamed elsewhere, or whose config is another
    network's, would have it remove another file, so it is refused and left as it is."""
    path = write_entry(cache)
    copy = path.with_name("iitnet-container2-net1")
    copy.write_bytes(path.read_bytes())
    copy.chmod(0o600)
    with ii._cli_logging(0):
        assert [c.path for c in ii._cached_attachments(str(cache))] == [str(path)]
    refused = capsys.readouterr().err
    assert "its file name is not the one its network, container ID and interface give" in refused
    entry = json.loads(path.read_text())
    path.write_text(json.dumps({**entry, "networkName": "other"}))
    other = path.with_name("other-container1-net1")
    path.rename(other)
    [cached] = ii._cached_attachments(str(cache))
    with pytest.raises(ii.InjectError, match="its config is network 'iitnet', not 'other': refusing it"):
        node(cache, bin_dir).delete_cached(cached)
    assert calls(bin_dir) == [] and other.exists() and copy.exists()


def test_an_entry_replaced_by_another_sandboxs_is_not_the_one_deleted(cache: Path, bin_dir: Path) -> None:
    """A pod's next sandbox given the same -containerid writes its entry at the same
    name: a del or gc that judged the first sandbox's entry leaves it alone (no DEL
    with its result, the entry kept), and a DEL in the first sandbox is refused."""
    path = write_entry(cache)
    [judged] = ii._cached_attachments(str(cache))
    entry = json.loads(path.read_text())
    entry["ifInject"]["sandboxId"] = "sandbox2"
    path.write_text(json.dumps(entry))
    assert node(cache, bin_dir).delete_cached(judged) is False
    with pytest.raises(ii.InjectError) as e:
        ii.CNI([str(bin_dir)], str(cache)).delete(spy_network(), pod_attachment())
    assert str(e.value) == f"cache entry {path} is sandbox sandbox2's, not sandbox1's: not deleting it"
    assert calls(bin_dir) == [] and json.loads(path.read_text()) == entry
    gc = node(cache, bin_dir)
    gc.attachments = lambda *a: [judged._replace(stale=True)]  # type: ignore[method-assign]
    assert [r.action for r in gc.gc()] == ["gone meanwhile"]
    assert calls(bin_dir) == [] and json.loads(path.read_text()) == entry


def test_an_add_never_writes_over_another_pods_entry_or_anothers(cache: Path, bin_dir: Path) -> None:
    """Two adds given one -containerid in two pods take two locks: the first
    entry an add writes goes where there is none, or over its own sandbox's
    only. Another pod's, or another program's, stays as it is and the add fails
    before any plugin runs."""
    other = ii.Attachment("container1", "", "net1", [], {}, ii.Pod("ns2", "pod2", sandbox_id="sandbox2"))
    ii._write_cache(str(cache), spy_network(), other, None)  # pod2's add, under way
    path = Path(ii._cache_file(str(cache), "iitnet", "container1", "net1"))
    for whose, text in (("pod ns2/pod2's", path.read_text()), ("not if-inject's", '{"kind": "cniCacheV1"}')):
        path.write_text(text)
        with pytest.raises(ii.InjectError) as e:
            ii.CNI([str(bin_dir)], str(cache)).add(spy_network(), pod_attachment())
        assert str(e.value) == (f"cache entry {path} is {whose}: refusing to add over it "
                                "(another -containerid?)")
        assert path.read_text() == text and os.listdir(path.parent) == [path.name] and calls(bin_dir) == []
    path.unlink()
    ii._write_cache(str(cache), spy_network(), pod_attachment(), None)  # none there: written
    ii._write_cache(str(cache), spy_network(), pod_attachment(), None)  # its own sandbox's: written over
    ii.CNI([str(bin_dir)], str(cache)).add(spy_network(), pod_attachment())
    assert json.loads(path.read_text())["result"] == {"cniVersion": "1.0.0"}


@pytest.mark.parametrize("text, why", [
    ('{"kind": "cniCacheV1"}', "net1 of network iitnet was added by another program (its cache entry {} "
                               "is not if-inject's)"),
    ('{"kind": "cniCa', "the cache entry {} of net1 of network iitnet cannot be read")])
def test_a_del_in_a_pod_leaves_an_entry_another_program_wrote(cache: Path, bin_dir: Path, text: str,
                                                             why: str) -> None:
    """A single pod's del with -spec DELs without a cache entry, as libcni does, but
    not over an entry another program wrote (Multus', a runtime's) or one that cannot
    be read: no DEL, the entry kept, unless -force (test_runtimes.py runs that)."""
    write_entry(cache)
    path = Path(ii._cache_file(str(cache), "iitnet", "container1", "net1"))
    path.write_text(text)
    att = pod_attachment()
    assert att.pod is not None
    with pytest.raises(ii.InjectError) as e:
        node(cache, bin_dir)._delete_from_pod(att.pod, spy_network(), att, only_ours=False)
    assert str(e.value) == why.format(path) + ": not deleting it (-force deletes it)"
    assert path.read_text() == text and calls(bin_dir) == []


@pytest.mark.parametrize("where", ["", "multus"])
def test_a_del_in_a_pod_leaves_an_interface_anothers_entry_records_by_its_own_name(
        cache: Path, bin_dir: Path, where: str) -> None:
    """No entry at if-inject's name, but the runtime's or Multus' own for the pod's
    interface (their container ID is the sandbox's): refused, as at if-inject's name."""
    results = cache / where / "results"
    results.mkdir(parents=True, mode=0o700)
    theirs = plant_theirs(results / "macvlan-sandbox1-net1", containerId="sandbox1", ifName="net1",
                          networkName="macvlan")
    att = pod_attachment()
    assert att.pod is not None
    with pytest.raises(ii.InjectError) as e:
        node(cache, bin_dir)._delete_from_pod(att.pod, spy_network(), att, only_ours=False)
    assert str(e.value) == (f"net1 was added by another program (its cache entry {theirs} is not "
                            "if-inject's): not deleting it (-force deletes it)")
    assert calls(bin_dir) == [] and theirs.exists()


def test_a_del_in_a_pod_reads_only_the_entries_named_for_its_interface(
        cache: Path, bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node's cache holds an entry per pod and network (the runtime's eth0 of
    every pod): looking for another record of net1 reads those named for net1
    only, as libcni names its entries, and finds none of this pod's."""
    monkeypatch.setattr(ii, "_DEFAULT_CACHE_DIR", str(cache.parent / "none"))
    results = cache / "results"
    results.mkdir(parents=True, mode=0o700)
    for sandbox in ("sandbox0", "sandbox1", "sandbox2"):
        plant_theirs(results / f"lab-{sandbox}-eth0", containerId=sandbox, ifName="eth0", networkName="lab")
    plant_theirs(results / "macvlan-other-net1", containerId="other", ifName="net1", networkName="macvlan")
    read: list[str] = []
    real_read = ii._read_entry

    def spy(dir_fd: int, name: str, path: str, quiet: bool = False) -> dict[str, Any] | None:
        read.append(name)
        return real_read(dir_fd, name, path, quiet)

    monkeypatch.setattr(ii, "_read_entry", spy)
    att = pod_attachment()
    assert att.pod is not None
    assert node(cache, bin_dir)._other_record(att) == ""
    assert read == ["macvlan-other-net1"]


def test_an_add_goes_over_no_other_record_of_the_interface(cache: Path, bin_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The interface gone, but Multus' record of its ADD left (by the sandbox's
    container ID): an add is refused, as its owner's DEL would take down what the
    add makes. This network's own entry (an add killed half-way) is not in the
    way: the add DELs it first (_release_interrupted_add)."""
    monkeypatch.setattr(ii, "_DEFAULT_CACHE_DIR", str(cache.parent / "none"))
    att = pod_attachment()
    ii._write_cache(str(cache), spy_network(), att, None)
    adding = node(cache, bin_dir)
    adding._refuse_other_record(spy_network(), att)
    results = cache / "multus" / "results"
    results.mkdir(parents=True, mode=0o700)
    theirs = plant_theirs(results / "macvlan-sandbox1-net1", containerId="sandbox1", ifName="net1",
                          networkName="macvlan")
    with pytest.raises(ii.InjectError) as e:
        adding._refuse_other_record(spy_network(), att)
    assert str(e.value) == (f"net1 was added by another program (its cache entry {theirs} is not "
                            "if-inject's): not adding over it")
    assert calls(bin_dir) == [] and theirs.exists()


@pytest.mark.parametrize("network, container_id, where", [
    ("other", "container1", ""), ("iitnet", "sandbox1", ""), ("iitnet", "container1", "elsewhere")])
def test_a_del_in_a_pod_leaves_an_interface_if_inject_added_otherwise(
        cache: Path, bin_dir: Path, monkeypatch: pytest.MonkeyPatch, network: str, container_id: str,
        where: str) -> None:
    """if-inject's own entry of the interface, but of another network, container ID or
    cache dir (the node's, from a del given the wrong -spec or -cache-dir): a DEL with
    this network would take the interface down and leave what that ADD took (its
    lease). Refused, naming the del that deletes it as it was added (test_cli.py
    runs that del, and -force)."""
    added_in = cache.parent / where if where else cache
    monkeypatch.setattr(ii, "_DEFAULT_CACHE_DIR", str(added_in))  # the node's cache dir, read too
    att = pod_attachment()
    assert att.pod is not None
    other = ii.Attachment(container_id, att.netns, att.ifname, pod=att.pod)
    ii._write_cache(str(added_in), spy_network(network), other, {"cniVersion": "1.0.0"})
    entry = Path(ii._cache_file(str(added_in), network, container_id, "net1"))
    how = "del without -spec" if not where else f"del -cache-dir {added_in} without -spec"
    with pytest.raises(ii.InjectError) as e:
        node(cache, bin_dir)._delete_from_pod(att.pod, spy_network(), att, only_ours=False)
    assert str(e.value) == (f"net1 was added by if-inject as network {network}, container ID {container_id} "
                            f"(its cache entry {entry}; {how} deletes it): "
                            "not deleting it (-force deletes it)")
    assert calls(bin_dir) == [] and entry.exists()


def test_a_del_in_a_pod_names_anothers_record_before_its_own_and_no_del_it_cannot_name(
        cache: Path, bin_dir: Path) -> None:
    """An entry the API's CNI class wrote for the pod's sandbox (of no pod: no del
    of the pod finds it) is refused without a del to run; with Multus' entry of
    the interface too, Multus' is the one named, whichever is found first."""
    ii._write_cache(str(cache), spy_network("other"), ii.Attachment("sandbox1", "", "net1"),
                    {"cniVersion": "1.0.0"})
    entry = Path(ii._cache_file(str(cache), "other", "sandbox1", "net1"))
    att = pod_attachment()
    assert att.pod is not None
    with pytest.raises(ii.InjectError) as e:
        node(cache, bin_dir)._delete_from_pod(att.pod, spy_network(), att, only_ours=False)
    assert str(e.value) == (f"net1 is recorded by an entry of if-inject's that no del of this pod finds "
                            f"(its cache entry {entry}): not deleting it (-force deletes it)")
    results = cache / "multus" / "results"
    results.mkdir(parents=True, mode=0o700)
    theirs = plant_theirs(results / "macvlan-sandbox1-net1", containerId="sandbox1", ifName="net1",
                          networkName="macvlan")
    with pytest.raises(ii.InjectError) as e:
        node(cache, bin_dir)._delete_from_pod(att.pod, spy_network(), att, only_ours=False)
    assert str(e.value) == (f"net1 was added by another program (its cache entry {theirs} is not "
                            "if-inject's): not deleting it (-force deletes it)")
    assert calls(bin_dir) == [] and entry.exists() and theirs.exists()


def test_a_del_in_a_pod_refuses_when_a_cache_dir_cannot_be_looked_at(cache: Path, bin_dir: Path) -> None:
    """Multus' results/ that others could have written in: another program's record of
    the interface cannot be looked for there, so the del cannot tell, and refuses."""
    results = cache / "multus" / "results"
    results.mkdir(parents=True, mode=0o700)
    results.chmod(0o770)
    att = pod_attachment()
    assert att.pod is not None
    with pytest.raises(ii.InjectError) as e:
        node(cache, bin_dir)._delete_from_pod(att.pod, spy_network(), att, only_ours=False)
    why = refusal(results, "has mode 0770: others can write in it")
    assert str(e.value) == (f"another program's record of net1 cannot be looked for ({why}): "
                            "not deleting it (-force deletes it)")
    assert calls(bin_dir) == []


@pytest.mark.parametrize("where", ["", "multus"])
def test_veth_delete_leaves_an_interface_whose_cache_entry_cannot_be_read(cache: Path, bin_dir: Path,
                                                                          where: str) -> None:
    """libcni writes its entries in place: one cut short (a crash, a full disk) may
    be of the interface a veth -delete names. It cannot tell: it deletes nothing.
    Another pod's unreadable entry does not stop it."""
    results = cache / where / "results"
    results.mkdir(parents=True, mode=0o700)
    pod = ii.Pod("ns1", "pod1", sandbox_id="sandbox1", netns="/run/netns/cni-1234")
    other = results / "macvlan-sandbox2-net1"
    other.write_text('{"kind": "cniCa')
    node(cache, bin_dir)._refuse_cni_interface(pod, "net1")
    cut_short = results / "macvlan-sandbox1-net1"
    cut_short.write_text('{"kind": "cniCa')
    with pytest.raises(ii.InjectError) as e:
        node(cache, bin_dir)._refuse_cni_interface(pod, "net1")
    assert str(e.value) == (f"net1 may have been made by a CNI ADD (cache entry {cut_short} cannot be read): "
                            "not deleting it")


def test_gc_takes_no_network_from_an_entry_whose_config_is_anothers(cache: Path, bin_dir: Path) -> None:
    """An entry of network A carrying B's config: GC to B would list A's attachments
    as B's. gc's CNI 1.1 step leaves it out (a DEL of it is refused alike)."""
    path = write_entry(cache)
    entry = json.loads(path.read_text())
    entry["config"] = base64.b64encode(b'{"cniVersion": "1.1.0", "name": "other", "type": "spy"}').decode()
    path.write_text(json.dumps(entry))
    assert ii._gc_networks(ii.CNI([str(bin_dir)], str(cache))) == {}
    path.unlink()
    write_entry(cache)
    assert list(ii._gc_networks(ii.CNI([str(bin_dir)], str(cache)))) == ["iitnet"]


def test_gc_sees_the_nodes_own_cache_dir_beside_a_private_one(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """With -cache-dir elsewhere, the runtime's and Multus' entries are still in the
    node's default cache dir: a network that they use too gets no GC from if-inject."""
    default = tmp_path / "var-lib-cni"
    monkeypatch.setattr(ii, "_DEFAULT_CACHE_DIR", str(default))
    assert ii._shared_networks(str(tmp_path / "cni"), ["iitnet"]) == {}
    (default / "multus" / "results").mkdir(parents=True, mode=0o700)
    (default / "results").mkdir(mode=0o700)
    runtimes = plant_theirs(default / "multus" / "results" / "iitnet-c0ffee-net1", containerId="c0ffee",
                            ifName="net1", networkName="iitnet")
    assert ii._shared_networks(str(tmp_path / "cni"), ["iitnet"]) == {
        "iitnet": f"another program attaches pods to it too ({runtimes})"}
    runtimes.unlink()
    write_entry(default)  # if-inject's own, made with the node's cache dir: not among the GC's valid ones
    assert ii._shared_networks(str(tmp_path / "cni"), ["iitnet"]) == {"iitnet": (
        "if-inject attaches pods to it with another cache dir too "
        f"({ii._cache_file(str(default), 'iitnet', 'container1', 'net1')})")}
    assert ii._shared_networks(str(default), ["iitnet"]) == {}  # its own cache dir
    (tmp_path / "link").symlink_to(default)
    for name in (default, tmp_path / "link"):  # each directory once, by whatever name
        assert ii._libcni_cache_dirs(str(name)) == [str(name), str(name / "multus")]


def test_an_add_on_a_file_system_without_hard_links(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """vfat, some FUSE: the first entry goes in by a rename when none is there, and is
    refused over another pod's as where links are to be had."""
    def no_links(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    ii._write_cache(str(cache), spy_network(), pod_attachment(), None)
    path = Path(ii._cache_file(str(cache), "iitnet", "container1", "net1"))
    assert json.loads(path.read_text())["ifInject"]["sandboxId"] == "sandbox1"
    other = ii.Attachment("container1", "", "net1", [], {}, ii.Pod("ns2", "pod2", sandbox_id="sandbox2"))
    with pytest.raises(ii.InjectError, match="is pod ns1/pod1's: refusing to add over it"):
        ii._write_cache(str(cache), spy_network(), other, None)
    assert os.listdir(path.parent) == [path.name]


def test_an_empty_namespace_and_pod_match_no_attachment_made_outside_a_pod(cache: Path,
                                                                          bin_dir: Path) -> None:
    """`del -ns "" -pod ""` (two unset shell variables) finds nothing of the API's
    CNI class, whose entries record no pod: they are their caller's."""
    ii.CNI([str(bin_dir)], str(cache)).add(spy_network(), ii.Attachment("container1", "", "net1"))
    added = len(calls(bin_dir))
    with pytest.raises(ii.InjectError, match=r"^no cached attachment net1 for pod /: give -spec$"):
        node(cache, bin_dir)._delete_from_cache("", "", None, "net1")
    assert len(calls(bin_dir)) == added and len(ii._cached_attachments(str(cache))) == 1


# ---- the netns path: checked before it is opened, and before each plugin ----------------------

def test_a_device_or_fifo_is_never_opened_as_a_netns(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    opened: list[str] = []
    real_open = os.open

    def spy_open(path: Any, *args: Any, **kw: Any) -> int:
        opened.append(str(path))
        return real_open(path, *args, **kw)

    monkeypatch.setattr(os, "open", spy_open)
    for path in ("/dev/null", str(fifo)):
        with pytest.raises(ii.InjectError) as e:
            ii._check_netns(path)
        assert str(e.value) == f"{path} is not a network namespace"
    assert opened == []


def test_reading_the_links_of_a_fifo_is_refused_and_never_hangs(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    script = (f"import if_inject as ii\ntry:\n    ii.pod_links({str(fifo)!r})\n"
              "except ii.InjectError as e:\n    print(e)")
    # The timeout only stops a hang (a blocking open of the FIFO), it measures nothing.
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"{fifo} is not a network namespace")


def test_a_proc_netns_is_checked_to_be_the_same_before_each_plugin(bin_dir: Path, cache: Path) -> None:
    """cri-dockerd's /proc/<pid>/ns/net: once its PID is another process's, no plugin runs there."""
    netns = f"/proc/{os.getpid()}/ns/net"
    att = pod_attachment(netns)
    assert att.pod is not None
    st = os.stat(netns)
    # As if the PID now were another process's:
    att.pod = att.pod._replace(netns_id=(st.st_dev, st.st_ino + 1))
    cni = ii.CNI([str(bin_dir)], str(cache))
    with pytest.raises(ii.InjectError) as e:
        cni._invoke("DEL", spy_network(), {"type": "spy"}, att, None)
    assert str(e.value) == (f"network namespace {netns} is no longer pod ns1/pod1's (its process ended, "
                            "or its PID was reused): no plugin runs in it")
    assert calls(bin_dir) == []
    att.pod = att.pod._replace(netns_id=(st.st_dev, st.st_ino))
    cni._invoke("DEL", spy_network(), {"type": "spy"}, att, None)
    assert calls(bin_dir) == [f"DEL {netns}"]


def test_a_proc_netns_given_for_a_cached_attachment_is_checked_and_pinned(cache: Path) -> None:
    """The runtime's /proc/<pid>/ns/net for a live pod (a del from the cache, cri-dockerd):
    checked when the attachment is made, before any lock is waited for, and pinned, so
    that a PID reused meanwhile by a process of the node is refused, not DELed in."""
    write_entry(cache)
    [cached] = ii._cached_attachments(str(cache))
    netns = f"/proc/{os.getpid()}/ns/net"  # this process is in the node's netns
    with pytest.raises(ii.InjectError, match="is the node's own network namespace: refusing"):
        cached.attachment(netns)
    gone = cached.attachment("").pod
    assert gone is not None and gone.netns_id is None


# ---- tables: what pods and runtimes name is printed escaped -----------------------------------

def test_tables_escape_control_characters(capsys: pytest.CaptureFixture[str]) -> None:
    ii._print_table(("NAME", "STATE"),
                    [("e\x1b[31mvil\x07", "UP"), ("r\u202eab", "\nDOWN"), ("lo", "UNKNOWN")])
    assert capsys.readouterr().out.splitlines() == [
        "NAME              STATE",
        "e\\x1b[31mvil\\x07  UP",
        "r\\u202eab         \\nDOWN",
        "lo                UNKNOWN",
    ]


def test_a_proc_netns_is_checked_to_be_the_same_before_a_veth_is_made_or_deleted(
        bin_dir: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As before each plugin: cri-dockerd's /proc/<pid>/ns/net, once its PID is another
    process's, gets no veth made or deleted in it."""
    netns = f"/proc/{os.getpid()}/ns/net"
    st = os.stat(netns)
    pod = ii.Pod("ns1", "pod1", sandbox_id="sandbox1", netns=netns, netns_id=(st.st_dev, st.st_ino + 1))
    veths = node(cache, bin_dir)
    monkeypatch.setattr(veths, "pod", lambda namespace, name: pod)
    gone = (f"pod ns1/pod1: network namespace {netns} is no longer pod ns1/pod1's (its process ended, "
            "or its PID was reused): ")
    with pytest.raises(ii.InjectError) as e:
        veths.add_veth("ns1", "pod1", "net1", "iitveth0")
    assert str(e.value) == gone + "no veth is made in it"
    with pytest.raises(ii.InjectError) as e:
        veths.delete_veth("ns1", "pod1", "net1")
    assert str(e.value) == gone + "nothing is deleted in it"
