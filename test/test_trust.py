"""What if-inject trusts (docs/trust.md), on the lab: a network whose name looks like a
temporary file, a cache entry of another owner, the one lock of an interface whatever
-containerid says, names from inside a pod printed escaped. The same rules without root or a
runtime: test/unit/test_cache_trust.py."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from support.node import ip, leases, pod_addrs
from support.toolrun import PTP_SPEC, Tool, args_for, wait_for


def test_a_network_named_like_a_temporary_file_is_listed_and_collected(
        inject: Tool, lab: Any, make_pod: Callable[..., Any]) -> None:
    """`corp.tmpnet`: the old `.tmp` filter hid it from list and gc, and its lease leaked."""
    spec = inject.write_spec("corp.json", dict(json.loads(PTP_SPEC.read_text()), name="corp.tmpnet"))
    pod = make_pod()
    assert inject("add", *args_for(pod), "-spec", spec).code == 0
    [row] = json.loads(inject("list", "-o", "json").out)
    assert (row["pod"], row["network"], row["stale"]) == (pod.name, "corp.tmpnet", False)
    assert len(leases(inject.ipam, "corp.tmpnet")) == 1
    lab.remove_pod(pod)
    done = inject("gc")
    assert done.code == 0, done.err
    assert [(r["pod"], r["network"], r["action"]) for r in map(json.loads, done.out.splitlines())] == [
        (pod.name, "corp.tmpnet", "deleted")]
    assert leases(inject.ipam, "corp.tmpnet") == [] and inject.cache_files() == []


def test_a_cache_entry_of_another_owner_is_refused(inject: Tool, lab: Any, pod: Any) -> None:
    assert inject("add", *args_for(pod), "-spec", inject.spec).code == 0
    [name] = inject.cache_files()
    entry = inject.cache / "results" / name
    os.chown(entry, 65534, 65534)
    why = f"{entry} is owned by uid 65534, not by root: refusing it (see docs/trust.md)"
    listed = inject("list", "-o", "json")
    assert (listed.code, json.loads(listed.out), listed.error) == (0, [], why)
    # Neither used for a DEL (its result, its netns) nor removed: the interface stays.
    deleted = inject("del", *args_for(pod), "-spec", inject.spec)
    assert (deleted.code, deleted.error) == (1, why)
    assert pod_addrs(lab, pod) != "" and inject.cache_files() == [name]
    os.chown(entry, 0, 0)
    assert inject("del", *args_for(pod), "-spec", inject.spec).code == 0
    assert pod_addrs(lab, pod) == "" and inject.leases() == [] and inject.cache_files() == []


def test_add_with_a_container_id_and_veth_on_one_interface_exclude_each_other(
        inject: Tool, lab: Any, pod: Any) -> None:
    """One lock per sandbox and interface: `veth` waits for the `add -containerid` under way,
    then finds net1 taken; the add's interface is left whole (the old separate keys let the
    veth in first, and the add's rollback then deleted the veth's end)."""
    marker = inject.tmp / "add-running"
    inject.fake_plugin("slow", f'[ "$CNI_COMMAND" = ADD ] || exit 0\ntouch {marker}\nsleep 2\n'
                               'echo \'{"cniVersion": "1.0.0"}\'')
    ptp = {k: v for k, v in json.loads(PTP_SPEC.read_text()).items() if k not in ("name", "cniVersion")}
    spec = inject.write_spec("slow.json", {"cniVersion": "1.0.0", "name": "mynet",
                                           "plugins": [{"type": "slow"}, ptp]})
    add = inject.start("add", *args_for(pod), "-spec", spec, "-containerid", "raceid")
    wait_for(marker, add)
    veth = inject("veth", *args_for(pod), "-timeout", "30")
    out, err = add.communicate(timeout=60)
    assert add.returncode == 0, err
    address = json.loads(out)["ips"][0]["address"]
    assert (veth.code, veth.error) == (1, f"pod {pod.namespace}/{pod.name}: interface net1 already exists "
                                          f"in network namespace {pod.netns}")
    assert address in pod_addrs(lab, pod)
    assert inject("del", *args_for(pod), "-spec", spec, "-containerid", "raceid").code == 0
    assert pod_addrs(lab, pod) == "" and inject.leases() == [] and inject.cache_files() == []


def test_links_prints_escapes_in_a_pod_interface_name_escaped(inject: Tool, pod: Any) -> None:
    """A pod with NET_ADMIN can name its interfaces with terminal escapes (the kernel refuses
    only '/', ':' and whitespace): the table shows them escaped, JSON as they are."""
    name = "e\x1b[31mx\x07"

    def in_pod(*argv: str) -> None:
        ip(*argv, netns=pod.netns)

    in_pod("link", "add", "name", name, "type", "veth", "peer", "name", "esc-peer")
    try:
        text, js = inject("links", *args_for(pod)), inject("links", *args_for(pod), "-o", "json")
    finally:
        in_pod("link", "del", "esc-peer")
    assert (text.code, text.err, js.code, js.err) == (0, "", 0, "")
    rows = [row.split()[0] for row in text.out.splitlines()[1:]]
    assert "e\\x1b[31mx\\x07@esc-peer" in rows and "esc-peer@e\\x1b[31mx\\x07" in rows
    assert not any(c in text.out for c in "\x1b\x07")
    assert name in [link["name"] for link in json.loads(js.out)]


def test_a_cache_dir_of_another_owner_is_refused(inject: Tool, pod: Any, tmp_path: Path) -> None:
    inject.cache.mkdir(mode=0o700)
    os.chown(inject.cache, 65534, 65534)
    run = inject("add", *args_for(pod), "-spec", inject.spec)
    assert (run.code, run.error) == (1, f"{inject.cache} is owned by uid 65534, not by root: refusing it "
                                        "(see docs/trust.md)")
    assert inject.leases() == [] and list(inject.cache.iterdir()) == []


def test_a_cache_dir_reached_through_what_another_user_can_change_is_refused(
        inject: Tool, pod: Any, tmp_path: Path) -> None:
    """A symbolic link on the way that another user owns, or their directory: they could
    point the cache dir anywhere (at the runtime's own cache) between two of if-inject's steps."""
    (tmp_path / "real").mkdir()
    link, theirs = tmp_path / "link", tmp_path / "theirs"
    link.symlink_to("real")
    os.lchown(link, 65534, 65534)
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    for cache, why in ((link / "cni", f"goes through {link}, which is a symbolic link owned by uid 65534"),
                       (theirs / "cni", f"goes through {theirs}, which is owned by uid 65534")):
        inject.cache = cache
        run = inject("add", *args_for(pod), "-spec", inject.spec)
        assert (run.code, run.error) == (1, f"{cache} {why}: refusing it (see docs/trust.md)")
        assert inject.leases() == [] and os.listdir(tmp_path / "real") == [] and os.listdir(theirs) == []
