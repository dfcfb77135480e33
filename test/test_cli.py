"""The if-inject command on the lab's real containerd, pods and CNI plugins.

Every test looks at the outcome from inside the pod (ExecSync in its busybox
container) and on the node: interfaces, leases, cache files.
"""

from __future__ import annotations

import copy
import json
import os
import pty
import re
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

import if_inject as ii
from support import CNI_BIN, REPO
from support.docs import commands, readme_section
from support.lab import CRIO, MACHINE_LOCK_FD, Lab
from support.libcni import libcni
from support.node import host_links, ip, leases, pod_addrs, settled
from support.toolrun import Run, Tool, args_for, json_lines, wait_for

# ---- the original README, unchanged -------------------------------------

@pytest.mark.runtimes
def test_readme_flow_with_test_ptp_json(tool: list[str], lab: Any, pod: Any, default_dirs: None) -> None:
    """netns, add | jq, ping, check, del, del: the original README's commands, as
    README.md shows them (examples/ptp.json, in namespace if-inject), run from the
    repository as a user runs them."""
    base = [*tool, "-r", lab.endpoint]
    netns = subprocess.run([*base, "netns", "-ns", pod.namespace, "-pod", pod.name],
                           capture_output=True, text=True)
    assert (netns.returncode, netns.stdout, netns.stderr) == (0, pod.netns + "\n", "")

    shown = {words[0]: [pod.name if w == "$pod" else w for w in words]
             for words in commands(readme_section("Inject an interface with a CNI plugin"))}
    assert sorted(shown) == ["add", "check", "del"]
    assert shown["add"] == ["add", *args_for(pod), "-spec", "examples/ptp.json"]
    add = subprocess.run([*base, *shown["add"]], capture_output=True, text=True, cwd=REPO)
    assert add.returncode == 0 and add.stderr == ""
    result = json.loads(add.stdout)
    assert add.stdout == json.dumps(result, indent=4) + "\n"
    address = result["ips"][0]["address"]
    assert re.fullmatch(r"10\.22\.22\.\d+/24", address)
    assert f"inet {address}" in pod_addrs(lab, pod)
    pod_ip = address.split("/")[0]
    assert Path(f"/var/lib/cni/networks/mynet/{pod_ip}").exists()
    ping = subprocess.run(["ping", "-c", "1", "-W", "2", pod_ip], capture_output=True, text=True)
    assert ping.returncode == 0, ping.stdout
    cache = Path("/var/lib/cni/results") / f"mynet-{os.path.basename(pod.netns)}-net1"
    assert json.loads(cache.read_text())["result"] == result

    for command in ("check", "del", "del"):
        run = subprocess.run([*base, *shown[command]], capture_output=True, text=True, cwd=REPO)
        assert (run.returncode, run.stdout, run.stderr) == (0, "", ""), command
    assert pod_addrs(lab, pod) == ""
    assert not Path(f"/var/lib/cni/networks/mynet/{pod_ip}").exists() and not cache.exists()


@pytest.mark.parametrize("runtime", [pytest.param("", id="default"), CRIO])
def test_make_demo(machine_lock: int, runtime: str) -> None:
    """`make demo` as the README shows it first (and `make demo RUNTIME=cri-o`):
    the walk-through on a lab of its own, each step as it shows it, nothing
    left behind (the session's machine check sees the rest)."""
    root = Path("/tmp/if-inject-demo")  # tools/demo.py's; it removes it when it made it
    existed = root.exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    env[MACHINE_LOCK_FD] = str(machine_lock)  # the lock this session holds, handed down
    argv = ["make", "demo", *([f"RUNTIME={runtime}"] if runtime else [])]
    demo = subprocess.run(argv, cwd=REPO, env=env, pass_fds=(machine_lock,),
                          capture_output=True, text=True, timeout=600)
    out = demo.stdout
    assert demo.returncode == 0, out[-3000:] + demo.stderr[-3000:]
    assert f"# Starting the lab ({runtime or 'containerd-2.1'} + CRI + CNI)" in out
    assert out.count(" 1 received, 0% packet loss") == 3  # link-local, ptp and veth pings
    assert "\ncheck passed\n" in out
    batch = out.split("-spec examples/ptp.json | jq -c '{pod, ips: [.result.ips[].address]}'\n")[1]
    ips = [json.loads(line)["ips"] for line in batch.splitlines()[:3]]
    assert all(re.fullmatch(r"10\.22\.22\.\d+/24", each[0]) for each in ips), ips
    gc = json.loads(out.split("$ if-inject gc\n")[1].splitlines()[0])
    assert (gc["action"], gc["sandboxState"], gc["interface"]) == ("deleted", "gone", "net1")
    last_list = out.rsplit("$ if-inject list\n", 1)[1]
    assert last_list.startswith("NAMESPACE  POD  INTERFACE  NETWORK  ADDRESSES  SANDBOX  STATE\n\n")
    assert re.search(r"\n# Done in \d+\.\d s\.\n$", out)
    assert root.exists() == existed


def test_flag_forms_and_global_flags_after_the_subcommand(inject: Tool, pod: Any) -> None:
    for args in (["netns", "-ns", pod.namespace, "-pod", pod.name],
                 ["netns", f"-ns={pod.namespace}", f"-pod={pod.name}"],
                 ["netns", "--ns", pod.namespace, "--pod", pod.name],
                 ["netns", f"--ns={pod.namespace}", f"--pod={pod.name}", "-loglevel=0", "-timeout", "5"]):
        run = inject(*args)
        assert (run.code, run.out, run.err) == (0, pod.netns + "\n", ""), args


def test_loglevels_show_more_detail(inject: Tool, pod: Any) -> None:
    quiet = inject("netns", *args_for(pod))
    assert quiet.err == ""
    verbose = inject("-loglevel", "4", "netns", *args_for(pod))
    logs = [json.loads(line) for line in verbose.err.splitlines()]
    assert all(set(entry) >= {"level", "time", "msg"} for entry in logs)
    messages = {entry["msg"]: entry for entry in logs}
    assert messages["Runtime connected"]["endpoint"] == inject.lab.endpoint
    assert messages["Pod"]["sandbox"] == pod.sandbox_id and messages["Pod"]["netns"] == pod.netns
    assert json.loads(messages["Sandbox info"]["info"])["pid"] > 0
    level2 = inject("-loglevel", "2", "add", *args_for(pod), "-spec", inject.spec)
    plugin_logs = [json.loads(line) for line in level2.err.splitlines() if '"Plugin"' in line]
    assert plugin_logs[0]["env"]["CNI_COMMAND"] == "ADD" and plugin_logs[0]["env"]["CNI_IFNAME"] == "net1"
    assert "K8S_POD_NAME=" + pod.name in plugin_logs[0]["env"]["CNI_ARGS"]
    assert json.loads(plugin_logs[0]["stdin"])["name"] == "mynet"
    assert inject("del", *args_for(pod), "-spec", inject.spec).code == 0


# ---- bad input: a clear error, exit code, nothing done ------------------

@pytest.mark.parametrize("content, message", [
    (None, "No such file or directory"),
    ("", "empty"),
    ("{not json", "not JSON"),
    ('["a"]', "not a JSON object"),
    ('{"name": "mynet", "cniVersion": "1.0.0"}', "neither a plugin conf"),
    ('{"name": "mynet", "cniVersion": "0.9.0", "type": "ptp"}', "unknown cniVersion '0.9.0'"),
    ('{"name": "mynet", "cniVersion": "1.0.0", "type": "../../bin/sh"}', "must be a plain file name"),
    ('{"name": "mynet", "cniVersion": "1.0.0", "type": "nosuchplugin"}', "plugin 'nosuchplugin' not found"),
])
def test_bad_spec_files(inject: Tool, pod: Any, content: str | None, message: str) -> None:
    spec = inject.tmp / "bad.json"
    if content is not None:
        spec.write_text(content)
    run = inject("add", *args_for(pod), "-spec", str(spec))
    assert (run.code, run.out) == (1, "") and message in run.error
    assert pod_addrs(inject.lab, pod) == "" and inject.cache_files() == []


def test_spec_that_is_a_directory(inject: Tool, pod: Any) -> None:
    run = inject("add", *args_for(pod), "-spec", str(inject.tmp))
    assert run.code == 1 and run.error.endswith("Is a directory")


def test_unknown_pod_and_namespace(inject: Tool, pod: Any) -> None:
    for ns, name in (("if-inject", "nosuch"), ("nosuch-ns", pod.name)):
        run = inject("add", "-ns", ns, "-pod", name, "-spec", inject.spec)
        assert (run.code, run.out, run.error) == (1, "", f"pod {ns}/{name} not found on this node")
    assert inject.leases() == []


@pytest.mark.runtimes
def test_pod_with_only_a_stopped_sandbox(inject: Tool, lab: Any, make_pod: Callable[..., Any]) -> None:
    pod = make_pod()
    lab.stop_pod(pod)
    run = inject("netns", *args_for(pod))
    assert run.code == 1 and run.out == ""
    assert run.error == (f"pod {pod.namespace}/{pod.name} not found on this node "
                         f"(only not-ready sandboxes: {pod.sandbox_id})")


@pytest.mark.runtimes
def test_stopped_sandbox_beside_a_ready_one_is_ignored(inject: Tool, lab: Any,
                                                       make_pod: Callable[..., Any]) -> None:
    old = make_pod()
    new = lab.restart_pod(old)
    run = inject("netns", *args_for(new))
    assert (run.code, run.out) == (0, new.netns + "\n")


def test_two_ready_sandboxes_are_refused(inject: Tool, lab: Any, make_pod: Callable[..., Any]) -> None:
    first = make_pod()
    second = lab.run_pod(first.namespace, first.name, uid=first.uid, attempt=1, container=False)
    try:
        run = inject("add", *args_for(first), "-spec", inject.spec)
        assert run.code == 1 and run.error.startswith(f"pod {first.namespace}/{first.name} has 2 ready "
                                                      "sandboxes: ")
        assert first.sandbox_id in run.error and second.sandbox_id in run.error
        assert inject.leases() == []
    finally:
        lab.remove_pod(second)


@pytest.mark.runtimes
def test_host_network_pod_is_refused(inject: Tool, make_pod: Callable[..., Any]) -> None:
    pod = make_pod(host_network=True, container=False)
    links = host_links()
    run = inject("add", *args_for(pod), "-spec", inject.spec)
    assert run.code == 1
    assert run.error == (f"pod {pod.namespace}/{pod.name} uses the node's network (hostNetwork): "
                         "refusing to change the node")
    assert host_links() == links and inject.leases() == []


def test_existing_interface_is_never_touched(inject: Tool, lab: Any, pod: Any) -> None:
    eth0 = settled(partial(pod_addrs, lab, pod, "eth0"))  # new with the pod: its IPv6 DAD may run
    assert "inet " in eth0
    run = inject("add", *args_for(pod), "-spec", inject.spec, "-interface", "eth0")
    assert run.code == 1
    assert run.error == f"interface eth0 already exists in pod {pod.namespace}/{pod.name}"
    assert pod_addrs(lab, pod, "eth0") == eth0
    assert inject.leases() == [] and inject.cache_files() == []


@pytest.mark.parametrize("endpoint, message", [
    ("/nonexistent.sock", "/nonexistent.sock: No such file or directory"),
    ("{spec}", "not a unix socket"),
    ("tcp://127.0.0.1:1", "unsupported runtime endpoint tcp://127.0.0.1:1"),
])
def test_bad_runtime_endpoints(inject: Tool, pod: Any, endpoint: str, message: str) -> None:
    endpoint = endpoint.format(spec=inject.spec)
    run = inject("netns", *args_for(pod), "-r", endpoint)
    assert run.code == 1 and run.out == "" and message in run.error


# ---- faults and interruptions -------------------------------------------

# Every signal that would end it, SIGQUIT and the real-time ones too, is a stop asked for.
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1,
                                    signal.SIGSTKFLT, signal.SIGRTMIN + 2], ids=ii._SignalGuard.name)
def test_signal_during_add_rolls_back(inject: Tool, lab: Any, pod: Any, signum: int) -> None:
    started = inject.tmp / "started"
    inject.fake_plugin("hang", f'[ "$CNI_COMMAND" = ADD ] || exit 0\ntouch {started}\nexec sleep 60')
    spec = inject.chain("hang")
    links = host_links()
    proc = inject.start("add", *args_for(pod), "-spec", spec)
    wait_for(started, proc)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    run = Run(proc.returncode, out, err)
    assert (run.code, run.out) == (1, "")
    assert run.error == f"interrupted by {ii._SignalGuard.name(signum)}; rolled back (DEL ran for hang, ptp)"
    assert pod_addrs(lab, pod) == "" and inject.leases() == [] and inject.cache_files() == []
    assert host_links() == links


def test_second_plugin_fails_nothing_left(inject: Tool, lab: Any, pod: Any) -> None:
    inject.fake_plugin("fail", '[ "$CNI_COMMAND" = ADD ] || exit 0\n'
                               'echo \'{"cniVersion":"1.0.0","code":7,"msg":"bad","details":"d"}\'; exit 1')
    links = host_links()
    run = inject("add", *args_for(pod), "-spec", inject.chain("fail"))
    assert run.code == 1
    assert run.error == "plugin fail failed (code 7): bad: d; rolled back (DEL ran for fail, ptp)"
    assert pod_addrs(lab, pod) == "" and inject.leases() == [] and inject.cache_files() == []
    assert host_links() == links


def test_hanging_plugin_killed_at_the_timeout(inject: Tool, lab: Any, pod: Any) -> None:
    inject.fake_plugin("hang", '[ "$CNI_COMMAND" = ADD ] || exit 0\nexec sleep 60')
    started = time.monotonic()
    run = inject("-timeout", "1", "add", *args_for(pod), "-spec", inject.chain("hang"))
    assert time.monotonic() - started < 10
    assert run.error == "plugin hang did not finish within 1s: killed; rolled back (DEL ran for hang, ptp)"
    assert pod_addrs(lab, pod) == "" and inject.leases() == []


def test_two_adds_at_once_exactly_one_wins(inject: Tool, lab: Any, pod: Any) -> None:
    # A slow ptp makes the two runs overlap.
    inject.fake_plugin("slowptp", f"sleep 0.5\nexec {CNI_BIN}/ptp")
    conf = json.loads((REPO / "examples" / "ptp.json").read_text())
    spec = inject.write_spec("slow.json", dict(conf, type="slowptp"))
    procs = [subprocess.Popen(inject.cmd("add", *args_for(pod), "-spec", spec),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    runs = [Run(p.returncode, out, err) for p, (out, err) in zip(procs, outputs, strict=True)]
    assert sorted(r.code for r in runs) == [0, 1]
    loser = next(r for r in runs if r.code == 1)
    assert loser.error == f"interface net1 already exists in pod {pod.namespace}/{pod.name}"
    assert len(inject.leases()) == 1 and len(inject.cache_files()) == 1
    assert inject("del", *args_for(pod), "-spec", spec).code == 0
    assert inject.leases() == [] and inject.cache_files() == []


@pytest.mark.runtimes
def test_del_after_the_pod_is_gone(inject: Tool, lab: Any, make_pod: Callable[..., Any]) -> None:
    pod = make_pod()
    assert inject("add", *args_for(pod), "-spec", inject.spec).code == 0
    assert len(inject.leases()) == 1
    lab.remove_pod(pod)
    for _ in range(2):
        run = inject("del", *args_for(pod), "-spec", inject.spec)
        assert (run.code, run.out) == (0, "")
    assert inject.leases() == [] and inject.cache_files() == []


def test_del_from_the_cache_without_spec(inject: Tool, lab: Any, pod: Any) -> None:
    assert inject("add", *args_for(pod), "-spec", inject.spec).code == 0
    run = inject("del", *args_for(pod), "-interface", "net1")
    assert (run.code, run.out, run.err) == (0, "", "")
    assert pod_addrs(lab, pod) == "" and inject.leases() == [] and inject.cache_files() == []
    again = inject("del", *args_for(pod))
    assert again.code == 1
    assert again.error == f"no cached attachment net1 for pod {pod.namespace}/{pod.name}: give -spec"


def test_corrupt_cache_and_read_only_cache_dir(inject: Tool, lab: Any, pod: Any) -> None:
    """An entry at the name of the interface's that cannot be read (libcni writes in
    place; if-inject renames whole files into place) may be another program's: del
    leaves it and the interface, and -force runs the DEL without a prevResult."""
    assert inject("add", *args_for(pod), "-spec", inject.spec).code == 0
    entry = inject.cache / "results" / inject.cache_files()[0]
    entry.write_text("{garbage")
    refused = inject("del", *args_for(pod), "-spec", inject.spec)
    assert (refused.code, refused.out, refused.error) == (
        1, "", f"the cache entry {entry} of net1 of network mynet cannot be read: not deleting it "
               "(-force deletes it)")
    assert "inet " in pod_addrs(lab, pod) and entry.read_text() == "{garbage"
    assert inject("del", *args_for(pod), "-spec", inject.spec, "-force").code == 0
    assert pod_addrs(lab, pod) == "" and inject.leases() == [] and inject.cache_files() == []
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(inject.cache)], check=True)
    try:
        run = inject("add", *args_for(pod), "-spec", inject.spec)
    finally:
        subprocess.run(["umount", str(inject.cache)], check=True)
    assert run.code == 1 and run.error.endswith(": Read-only file system")
    assert pod_addrs(lab, pod) == "" and inject.leases() == []


# ---- many pods at once --------------------------------------------------

@pytest.mark.runtimes
def test_batch_by_label_selector(inject: Tool, lab: Any, make_pod: Callable[..., Any]) -> None:
    pods = [make_pod(labels={"app": "batch"}) for _ in range(3)]
    other = make_pod(labels={"app": "other"})
    run = inject("add", "-ns", "if-inject", "-l", "app=batch", "-spec", inject.spec, "-parallel", "2")
    assert (run.code, run.err) == (0, "")  # no progress line: stderr is no terminal
    lines = json_lines(run)
    assert sorted(lines) == sorted(p.name for p in pods)
    for pod in pods:
        address = lines[pod.name]["result"]["ips"][0]["address"]
        assert lines[pod.name]["namespace"] == "if-inject"
        assert f"inet {address}" in pod_addrs(lab, pod)
    assert pod_addrs(lab, other) == "" and len(inject.leases()) == 3

    netns = json_lines(inject("netns", "-A", "-l", "app=batch"))
    assert {name: line["result"] for name, line in netns.items()} == {p.name: p.netns for p in pods}

    by_name = [arg for p in pods for arg in ("-pod", p.name)]
    deleted = inject("del", "-ns", "if-inject", *by_name, "-spec", inject.spec)
    assert deleted.code == 0
    assert {name: line["result"] for name, line in json_lines(deleted).items()} == dict.fromkeys(
        [p.name for p in pods])
    assert inject.leases() == [] and inject.cache_files() == []


@pytest.mark.runtimes
def test_a_batch_lists_once_and_looks_again_at_a_pod_replaced_since(lab: Any,
                                                                    make_pod: Callable[..., Any]) -> None:
    """A batch takes each pod's sandbox from its one listing; a pod whose
    sandbox was replaced since (kubelet restarted it) is looked up again."""
    kept, replaced = make_pod(labels={"app": "listed"}), make_pod(labels={"app": "listed"})
    with ii.Node(lab.endpoint) as node:
        selected = node._select_pods("if-inject", None, {"app": "listed"})
        assert sorted(selected) == sorted(("if-inject", p.name) for p in (kept, replaced))
        assert set(node._listed) == set(selected)
        restarted = lab.restart_pod(replaced)
        assert node.pod("if-inject", kept.name).sandbox_id == kept.sandbox_id
        assert node.pod("if-inject", replaced.name).sandbox_id == restarted.sandbox_id != replaced.sandbox_id
        assert node._listed == {}  # each taken once: a later lookup lists again


def test_batch_progress_on_a_terminal(inject: Tool, make_pod: Callable[..., Any]) -> None:
    for _ in range(2):
        make_pod(labels={"app": "progress"})
    terminal, stderr = pty.openpty()
    try:
        proc = subprocess.run(inject.cmd("netns", "-ns", "if-inject", "-l", "app=progress"),
                              stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=60)
        progress = os.read(terminal, 4096).decode()
    finally:
        os.close(stderr)
        os.close(terminal)
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 2
    assert progress == "\r1/2 pods, 0 failed\r2/2 pods, 0 failed\r\n"  # the tty turns \n into \r\n


def test_batch_with_a_failing_pod(inject: Tool, lab: Any, make_pod: Callable[..., Any]) -> None:
    good, taken = make_pod(labels={"app": "mixed"}), make_pod(labels={"app": "mixed"})
    ip("link", "add", "net1", "type", "veth", "peer", "name", "net1peer", netns=taken.netns)
    run = inject("add", "-ns", "if-inject", "-l", "app=mixed", "-spec", inject.spec)
    assert run.code == 1
    lines = json_lines(run)
    assert lines[taken.name]["error"] == f"interface net1 already exists in pod if-inject/{taken.name}"
    assert "ips" in lines[good.name]["result"]
    assert len(inject.leases()) == 1
    assert inject("del", *args_for(good), "-spec", inject.spec).code == 0
    assert inject.leases() == []


# ---- lifecycle: list and gc ---------------------------------------------

@pytest.mark.runtimes
def test_list_and_gc_release_exactly_the_stale(inject: Tool, lab: Any, make_pod: Callable[..., Any]) -> None:
    # The default cache dir, where containerd keeps its own entries (eth0, lo): gc must leave them.
    # (A runtime in a Debian root keeps them in its root: the node's dir has none of them.)
    inject.cache = Path(ii._DEFAULT_CACHE_DIR)
    live, gone, stopped = make_pod(), make_pod(), make_pod()
    for pod in (live, gone, stopped):
        assert inject("add", *args_for(pod), "-spec", inject.spec).code == 0
    lab.remove_pod(gone)
    lab.stop_pod(stopped)
    lab_entries = [name for name in inject.cache_files() if not name.startswith("mynet-")]
    assert (f"{lab.network}-{live.sandbox_id}-eth0" in lab_entries) == (lab.suite is None)

    rows = {r["pod"]: r for r in json.loads(inject("list", "-o", "json").out)}
    assert {name: (r["sandboxState"], r["stale"]) for name, r in rows.items()} == {
        live.name: ("ready", False), gone.name: ("gone", True), stopped.name: ("notready", True)}
    assert rows[live.name]["interface"] == "net1" and rows[live.name]["network"] == "mynet"
    assert rows[live.name]["addresses"][0] in pod_addrs(lab, live)
    text = inject("list").out.splitlines()
    assert text[0].split() == ["NAMESPACE", "POD", "INTERFACE", "NETWORK", "ADDRESSES", "SANDBOX", "STATE"]
    assert len(text) == 4

    leases, caches = inject.leases(), inject.cache_files()
    blind = inject("gc", "-r", str(inject.tmp / "no.sock"))  # without the runtime, nothing is stale
    assert (blind.code, blind.out) == (1, "")
    assert blind.error.startswith("no container runtime answers: ")
    assert (inject.leases(), inject.cache_files()) == (leases, caches)
    dry = inject("gc", "-dry-run")
    assert dry.code == 0
    stale = sorted([gone.name, stopped.name])
    assert sorted(json.loads(line)["pod"] for line in dry.out.splitlines()) == stale
    assert {json.loads(line)["action"] for line in dry.out.splitlines()} == {"would delete"}
    assert (inject.leases(), inject.cache_files()) == (leases, caches)

    done = inject("gc")
    assert done.code == 0
    assert sorted(json.loads(line)["pod"] for line in done.out.splitlines()) == stale
    assert inject.leases() == [rows[live.name]["addresses"][0].split("/")[0]]
    assert [name for name in inject.cache_files() if name.startswith("mynet-")] == [
        f"mynet-{os.path.basename(live.netns)}-net1"]
    assert rows[live.name]["addresses"][0] in pod_addrs(lab, live)
    assert [name for name in inject.cache_files() if not name.startswith("mynet-")] == lab_entries
    assert inject("gc").out == ""  # a second run finds nothing to do
    assert inject("del", *args_for(live), "-spec", inject.spec).code == 0


def test_gc_through_another_runtime_leaves_live_pods_alone(inject: Tool, lab: Any, lab_base: Path,
                                                            pod: Any) -> None:
    """Two runtimes on a node, or a mistyped -r: each attachment is judged by
    the runtime that made it, which says its pod lives."""
    add = inject("add", *args_for(pod), "-spec", inject.spec)
    assert add.code == 0
    address = json.loads(add.out)["ips"][0]["address"]
    leases, caches = inject.leases(), inject.cache_files()
    second = Lab(str(lab_base / f"gc-second-{lab.runtime}"), lab.runtime)
    try:
        second.up()
        for flags in (["-dry-run"], []):
            run = inject("gc", "-r", second.endpoint, *flags)
            assert (run.code, run.out, run.err) == (0, "", ""), flags
        [row] = json.loads(inject("list", "-r", second.endpoint, "-o", "json").out)
        assert (row["sandboxState"], row["stale"], row["undecided"]) == ("ready", False, "")
        assert (row["runtimeName"], row["runtimeEndpoint"]) == ("containerd", lab.endpoint)
    finally:
        second.down()
    assert f"inet {address}" in pod_addrs(lab, pod)
    assert (inject.leases(), inject.cache_files()) == (leases, caches)
    assert inject("del", *args_for(pod), "-spec", inject.spec).code == 0
    assert inject.leases() == [] and inject.cache_files() == []


def gc_in_a_mount_namespace(inject: Tool, hidden: str) -> Run:
    """`gc` in a mount namespace of its own with a tmpfs over `hidden`, as in a
    pod without the node's netns directory."""
    script = 'mount -t tmpfs if-inject-test "$0" && exec "$@"'
    return Run.of(subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                                  hidden, *inject.cmd("gc")], capture_output=True, text=True, timeout=60))


@pytest.mark.runtimes
def test_gc_where_the_netns_dir_is_not_visible_touches_nothing(inject: Tool, lab: Any,
                                                               make_pod: Callable[..., Any]) -> None:
    live, gone = make_pod(), make_pod()
    for pod in (live, gone):
        assert inject("add", *args_for(pod), "-spec", inject.spec).code == 0
    lab.remove_pod(gone)
    leases, caches = inject.leases(), inject.cache_files()
    netns_dir = os.path.realpath(os.path.dirname(live.netns))
    for hidden, why in ((netns_dir, f"the netns of live pods in {netns_dir} are not visible here either"),
                        (os.path.dirname(netns_dir), f"the netns directory {netns_dir} is not visible here")):
        run = gc_in_a_mount_namespace(inject, hidden)
        assert (run.code, run.out) == (1, ""), run.err
        [line] = [json.loads(text) for text in run.err.splitlines()]
        assert (line["level"], line["msg"], line["pod"], line["interface"]) == (
            "error", "Left alone: cannot tell whether it is stale", gone.name, "net1")
        assert line["error"].startswith(why), line["error"]
        assert (inject.leases(), inject.cache_files()) == (leases, caches)
        assert "inet 10.22.22." in pod_addrs(lab, live)
    done = inject("gc")  # where the directory is seen: the gone pod's attachment goes
    assert done.code == 0 and [json.loads(line)["pod"] for line in done.out.splitlines()] == [gone.name]
    assert len(inject.leases()) == 1
    assert inject("del", *args_for(live), "-spec", inject.spec).code == 0
    assert inject.leases() == [] and inject.cache_files() == []


# ---- del: only what if-inject added -------------------------------------

MULTUS_SUBNET = "10.23.23"


def libcni_on(driver: str, inject: Tool, command: str, pod: Any, conf: str, container_id: str) -> None:
    """`command` of a net1 in `pod` through libcni itself, in if-inject's cache dir,
    with kubelet's CNI_ARGS: what another program sharing that cache dir leaves."""
    answer = libcni(driver, {
        "command": command, "conf": conf, "cacheDir": str(inject.cache), "cniPath": [str(CNI_BIN)],
        "containerId": container_id, "netns": pod.netns, "ifName": "net1", "capabilityArgs": {},
        "args": [["IgnoreUnknown", "1"], ["K8S_POD_NAMESPACE", pod.namespace], ["K8S_POD_NAME", pod.name],
                 ["K8S_POD_INFRA_CONTAINER_ID", pod.sandbox_id], ["K8S_POD_UID", pod.uid]]})
    assert "error" not in answer, answer


def multus_like(driver: str, inject: Tool, command: str, pod: Any) -> None:
    """`command` of a net1 in `pod` as Multus makes it: through libcni, container
    ID the sandbox's, in if-inject's cache dir but with no entry of if-inject's."""
    conf = inject.tmp / "multus-net.json"
    conf.write_text(json.dumps({"cniVersion": "1.0.0", "name": "multus-net", "type": "ptp", "ipam": {
        "type": "host-local", "dataDir": str(inject.tmp / "multus-ipam"),
        "ranges": [[{"subnet": f"{MULTUS_SUBNET}.0/24"}]]}}))
    libcni_on(driver, inject, command, pod, str(conf), pod.sandbox_id)


def test_del_leaves_an_interface_that_anothers_libcni_entry_records(inject: Tool, lab: Any,
                                                                   libcni_driver: str,
                                                                   pod: Any) -> None:
    """libcni's own ADD of the same network, its entry where if-inject's would be
    (network, if-inject's container ID, interface), as a runtime or Multus sharing
    the cache dir leaves it: a del of that one pod refuses, the interface and its
    lease stay; -force runs the DEL, as libcni's does, and the entry goes with it."""
    container_id = os.path.basename(pod.netns)  # if-inject's for this pod
    libcni_on(libcni_driver, inject, "ADD", pod, inject.spec, container_id)
    entry = inject.cache / "results" / f"mynet-{container_id}-net1"
    try:
        refused = inject("del", *args_for(pod), "-spec", inject.spec)
        assert (refused.code, refused.out, refused.error) == (
            1, "", f"net1 of network mynet was added by another program (its cache entry {entry} is not "
                   "if-inject's): not deleting it (-force deletes it)")
        assert "inet " in pod_addrs(lab, pod) and entry.exists() and len(inject.leases()) == 1
        forced = inject("del", *args_for(pod), "-spec", inject.spec, "-force")
        assert (forced.code, forced.out) == (0, "")
        assert pod_addrs(lab, pod) == "" and not entry.exists() and inject.leases() == []
    finally:
        if entry.exists():
            libcni_on(libcni_driver, inject, "DEL", pod, inject.spec, container_id)


@pytest.mark.parametrize("wrong", ["-spec", "-cache-dir"])
def test_del_with_another_network_or_cache_dir_leaves_what_if_inject_added(inject: Tool, lab: Any, pod: Any,
                                                                         wrong: str) -> None:
    """A del given the wrong -spec (another network than the add's), or the wrong
    -cache-dir (the add's entry is in the node's /var/lib/cni): its DEL would take net1
    down and leave the add's lease behind. It refuses, naming the del that deletes net1
    as it was added, and that del releases what the add took. -force runs the other
    network's DEL: net1 gone, the lease not; an add of net1 then refuses to go over
    the add's record, naming the same del."""
    conf = json.loads(Path(inject.spec).read_text())
    other = inject.write_spec("othernet.json", dict(conf, name="othernet"))
    node_cache = copy.copy(inject)  # the same tool, with the node's cache dir
    node_cache.cache = Path("/var/lib/cni")
    adding = node_cache if wrong == "-cache-dir" else inject
    assert adding("add", *args_for(pod), "-spec", inject.spec).code == 0
    container_id = os.path.basename(pod.netns)
    entry = adding.cache / "results" / f"mynet-{container_id}-net1"
    how = "del without -spec" if wrong == "-spec" else "del -cache-dir /var/lib/cni without -spec"
    refused = inject("del", *args_for(pod), "-spec", other if wrong == "-spec" else inject.spec)
    assert (refused.code, refused.out, refused.error) == (
        1, "", f"net1 was added by if-inject as network mynet, container ID {container_id} (its cache entry "
               f"{entry}; {how} deletes it): not deleting it (-force deletes it)")
    assert "inet " in pod_addrs(lab, pod) and entry.exists() and len(inject.leases()) == 1
    if wrong == "-spec":
        forced = inject("del", *args_for(pod), "-spec", other, "-force")
        assert (forced.code, forced.out) == (0, "")
        assert pod_addrs(lab, pod) == "" and entry.exists() and len(inject.leases()) == 1
        over = inject("add", *args_for(pod), "-spec", other)
        assert (over.code, over.out, over.error) == (
            1, "", f"net1 was added by if-inject as network mynet, container ID {container_id} (its cache "
                   f"entry {entry}; {how} deletes it): not adding over it")
        assert pod_addrs(lab, pod) == "" and leases(inject.ipam, "othernet") == []
    deleted = adding("del", *args_for(pod))  # the del the error names
    assert (deleted.code, deleted.out) == (0, "")
    assert pod_addrs(lab, pod) == "" and not entry.exists() and inject.leases() == []


def test_batch_del_leaves_interfaces_if_inject_did_not_add(inject: Tool, lab: Any, libcni_driver: str,
                                                           make_pod: Callable[..., Any]) -> None:
    app = f"multus-{uuid.uuid4().hex[:6]}"
    ours = make_pod(labels={"app": app})
    theirs = [make_pod(labels={"app": app}) for _ in range(2)]
    batch = ["-ns", "if-inject", "-l", f"app={app}", "-spec", inject.spec]
    assert inject("add", *args_for(ours), "-spec", inject.spec).code == 0
    try:
        for pod in theirs:
            multus_like(libcni_driver, inject, "ADD", pod)
        before = {pod.name: settled(partial(pod_addrs, lab, pod)) for pod in theirs}
        assert all(f"inet {MULTUS_SUBNET}." in addresses for addresses in before.values())

        run = inject("del", *batch)
        assert (run.code, run.err) == (0, "")
        lines = json_lines(run)
        assert lines[ours.name] == {"namespace": "if-inject", "pod": ours.name, "result": None}
        for pod in theirs:
            entry = inject.cache / "results" / f"multus-net-{pod.sandbox_id}-net1"  # libcni's, as Multus'
            assert lines[pod.name] == {"namespace": "if-inject", "pod": pod.name, "skipped": (
                f"net1 was added by another program (its cache entry {entry} is not if-inject's): "
                "left alone (-force deletes it)")}
            assert pod_addrs(lab, pod) == before[pod.name]
        assert pod_addrs(lab, ours) == "" and inject.leases() == []

        single = inject("del", *args_for(theirs[0]), "-spec", inject.spec)  # another's record: refused
        entry = inject.cache / "results" / f"multus-net-{theirs[0].sandbox_id}-net1"
        assert (single.code, single.out, single.error) == (
            1, "", f"net1 was added by another program (its cache entry {entry} is not if-inject's): "
                   "not deleting it (-force deletes it)")
        assert pod_addrs(lab, theirs[0]) == before[theirs[0].name]

        forced = inject("del", *batch, "-force")
        assert forced.code == 0 and all("result" in line for line in json_lines(forced).values())
        warnings = [json.loads(line) for line in forced.err.splitlines()]  # one per net1 DEL'd anyway
        assert sorted((w["level"], w["pod"]) for w in warnings) == sorted(
            ("warn", f"if-inject/{pod.name}") for pod in theirs)
        assert all(pod_addrs(lab, pod) == "" for pod in theirs)
    finally:
        for pod in theirs:
            multus_like(libcni_driver, inject, "DEL", pod)
    assert not list((inject.tmp / "multus-ipam" / "multus-net").glob(f"{MULTUS_SUBNET}.*"))
    assert inject.leases() == [] and inject.cache_files() == []


# ---- the runtime restarted ----------------------------------------------

@pytest.mark.runtimes
def test_runtime_restarted_while_pods_run(inject: Tool, lab: Any, make_pod: Callable[..., Any]) -> None:
    """containerd stopped and started again (an upgrade): its pods run on, lookups and DEL work."""
    pod, restarted = make_pod(), lab.restart_pod(make_pod())
    add = inject("add", *args_for(pod), "-spec", inject.spec)
    assert add.code == 0
    address = json.loads(add.out)["ips"][0]["address"]
    lab.restart_runtime()
    assert inject("netns", *args_for(pod)).out == pod.netns + "\n"
    assert inject("netns", *args_for(restarted)).out == restarted.netns + "\n"
    assert f"inet {address}" in pod_addrs(lab, pod)
    assert inject("check", *args_for(pod), "-spec", inject.spec).code == 0
    listed = {r["pod"]: r["sandboxState"] for r in json.loads(inject("list", "-o", "json").out)}
    assert listed == {pod.name: "ready"}
    run = inject("del", *args_for(pod), "-spec", inject.spec)
    assert (run.code, run.out, run.err) == (0, "", "")
    assert pod_addrs(lab, pod) == "" and inject.leases() == [] and inject.cache_files() == []


# ---- soak ---------------------------------------------------------------

def test_soak_200_add_del_cycles_in_one_process(inject: Tool, lab: Any, pod: Any) -> None:
    network = ii.read_network(inject.spec)
    links = host_links()
    with ii.Node(lab.endpoint, cni_path=[CNI_BIN], cache_dir=str(inject.cache)) as node:
        def cycle() -> None:
            node.add(pod.namespace, pod.name, network)
            node.delete(pod.namespace, pod.name, network)

        for _ in range(20):  # warm up: imports, grpc channel, caches
            cycle()
        fds, rss = len(os.listdir("/proc/self/fd")), [rss_kib()]
        for _ in range(2):
            for _ in range(90):
                cycle()
            rss.append(rss_kib())
        assert len(os.listdir("/proc/self/fd")) <= fds
        # A leak grows the same in each half; a settled process grows in the second at most
        # half what it did in the first (the allocator still settling: this run's baseline),
        # give or take a malloc arena's trim (512 KiB), whatever this machine's sizes.
        early, late = rss[1] - rss[0], rss[2] - rss[1]
        assert late <= max(early, 0) // 2 + 512, f"RSS grew {early} KiB, then {late} KiB more"
    assert inject.leases() == [] and inject.cache_files() == [] and host_links() == links
    assert pod_addrs(lab, pod) == ""


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")
