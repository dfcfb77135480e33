"""Multus NetworkAttachmentDefinitions as -spec, and network-status out, on the
lab's real containerd, pods and CNI plugins: what the tool prints is compared
with the interface seen from inside the pod."""

from __future__ import annotations

import base64
import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import if_inject as ii
from support import REPO
from support.docs import code_block_with, readme_section
from support.node import host_links, pod_addrs
from support.node import leases as leases_in
from support.toolrun import Run, Tool, args_for

NAD_FILE = REPO / "examples" / "ptp-nad.yaml"
SUBNET = "10.22.23.0/24"  # examples/ptp-nad.yaml's


def definition(inject: Tool, namespace: str | None = "if-inject") -> dict[str, Any]:
    """examples/ptp-nad.yaml as `kubectl get -o json` gives it, its leases in the test's dir."""
    document: dict[str, Any] = yaml.safe_load(NAD_FILE.read_text())
    config = json.loads(document["spec"]["config"])
    config["ipam"]["dataDir"] = str(inject.ipam)
    document["spec"]["config"] = json.dumps(config)
    document["metadata"].update(uid="6c1d2b0e-93a4-4a51-8f0f-0f3b4b3f2c11", resourceVersion="4242")
    if namespace is None:
        del document["metadata"]["namespace"]
    return document


def as_text(document: dict[str, Any], form: str) -> str:
    return json.dumps(document, indent=4) if form == "json" else yaml.safe_dump(document)


def run_spec(inject: Tool, source: str, text: str, *args: str) -> Run:
    """Run the tool with the spec `text` as a file (`-spec FILE`) or on stdin (`-spec -`)."""
    if source == "file":
        path = inject.tmp / "nad-spec"
        path.write_text(text)
        return inject(*args, "-spec", str(path))
    proc = subprocess.run(inject.cmd(*args, "-spec", "-"), input=text, capture_output=True, text=True,
                          timeout=60)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def leases(inject: Tool) -> list[str]:
    return leases_in(inject.ipam, "ptp-conf")


def seen_in_pod(lab: Any, pod: Any, ifname: str) -> dict[str, Any]:
    """The interface as the pod sees it: its global addresses (no prefix) and MAC."""
    code, out, _ = lab.exec(pod, ["ip", "-o", "addr", "show", "dev", ifname, "scope", "global"])
    assert code == 0, f"no {ifname} in the pod"
    addresses = [line.split()[3].split("/")[0] for line in out.splitlines()]
    code, mac, _ = lab.exec(pod, ["cat", f"/sys/class/net/{ifname}/address"])
    return {"interface": ifname, "ips": addresses, "mac": mac.strip()}


@pytest.mark.parametrize("form, source", [("json", "file"), ("yaml", "file"), ("json", "stdin"),
                                          ("yaml", "stdin")])
def test_definition_through_add_check_del(inject: Tool, lab: Any, pod: Any, form: str, source: str) -> None:
    text = as_text(definition(inject), form)
    add = run_spec(inject, source, text, "add", *args_for(pod), "-o", "network-status")
    assert (add.code, add.err) == (0, "")
    status = json.loads(add.out)
    assert add.out == json.dumps(status, indent=4) + "\n"
    seen = seen_in_pod(lab, pod, "net1")
    assert status == {"name": "if-inject/ptp-conf", "interface": seen["interface"], "ips": seen["ips"],
                      "mac": seen["mac"], "dns": {}}
    assert leases(inject) == seen["ips"] and seen["ips"][0].startswith("10.22.23.")

    # The cache records the definition, and the config as it was in it.
    [name] = inject.cache_files()
    entry = json.loads((inject.cache / "results" / name).read_text())
    assert name == f"ptp-conf-{Path(pod.netns).name}-net1"
    assert entry["ifInject"]["netAttachDef"] == "if-inject/ptp-conf"
    assert base64.b64decode(entry["config"]).decode() == definition(inject)["spec"]["config"]
    [row] = json.loads(inject("list", "-o", "json").out)
    assert (row["network"], row["netAttachDef"], row["pod"]) == ("ptp-conf", "if-inject/ptp-conf", pod.name)
    listed = inject("list", *args_for(pod), "-o", "network-status")
    assert (listed.code, json.loads(listed.out)) == (0, [status])

    check = run_spec(inject, source, text, "check", *args_for(pod))
    assert (check.code, check.out, check.err) == (0, "", "")
    delete = run_spec(inject, source, text, "del", *args_for(pod))
    assert (delete.code, delete.out, delete.err) == (0, "", "")
    assert pod_addrs(lab, pod) == "" and leases(inject) == [] and inject.cache_files() == []
    assert host_links(SUBNET) == ""
    assert json.loads(inject("list", *args_for(pod), "-o", "network-status").out) == []


def test_bad_documents_change_nothing(inject: Tool, lab: Any, pod: Any) -> None:
    good = definition(inject)
    no_config = dict(good, spec={})
    bad_config = dict(good, spec={"config": '{"cniVersion": "1.0.0", "type": "ptp",'})
    pod_kind = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod.name, "namespace": pod.namespace}}
    cases = [
        (no_config, "{source}: NetworkAttachmentDefinition if-inject/ptp-conf has no spec.config "
                    "(Multus then reads the network from a file on the node: give that file as -spec)"),
        (bad_config, "{source}: NetworkAttachmentDefinition if-inject/ptp-conf: spec.config is not JSON "
                     "(Expecting property name enclosed in double quotes: line 1 column 39 (char 38))"),
        (pod_kind, "{source}: a document of kind Pod and apiVersion v1, not a NetworkAttachmentDefinition "
                   "of k8s.cni.cncf.io/v1"),
    ]
    links = host_links(SUBNET)
    for document, message in cases:
        for form in ("json", "yaml"):
            for source in ("file", "stdin"):
                run = run_spec(inject, source, as_text(document, form), "add", *args_for(pod))
                where = str(inject.tmp / "nad-spec") if source == "file" else "stdin"
                assert (run.code, run.out) == (1, "")
                assert run.error == message.format(source=where), (form, source)
    assert pod_addrs(lab, pod) == "" and lab.exec(pod, ["ip", "link", "show", "net1"])[0] != 0
    assert inject.cache_files() == [] and leases(inject) == [] and host_links(SUBNET) == links


def test_a_batch_reads_stdin_once_and_each_pod_gets_its_namespace(inject: Tool, lab: Any,
                                                                 make_pod: Callable[..., Any]) -> None:
    pods = [make_pod(labels={"app": "nad-batch"}),
            make_pod(namespace="if-inject-b", labels={"app": "nad-batch"})]
    text = as_text(definition(inject, namespace=None), "yaml")  # a manifest applied with `kubectl -n`
    add = run_spec(inject, "stdin", text, "add", "-A", "-l", "app=nad-batch", "-o", "network-status")
    assert (add.code, add.err) == (0, "")
    lines = {line["pod"]: line for line in map(json.loads, add.out.splitlines())}
    assert sorted(lines) == sorted(p.name for p in pods)
    for pod in pods:
        line = lines[pod.name]
        assert line["netAttachDef"] == f"{pod.namespace}/ptp-conf"
        assert line["result"] == {"name": f"{pod.namespace}/ptp-conf", **seen_in_pod(lab, pod, "net1"),
                                  "dns": {}}
        entry = json.loads((inject.cache / "results" / f"ptp-conf-{Path(pod.netns).name}-net1").read_text())
        assert entry["ifInject"]["netAttachDef"] == f"{pod.namespace}/ptp-conf"
    assert len(leases(inject)) == 2

    delete = run_spec(inject, "stdin", text, "del", "-A", "-l", "app=nad-batch")
    assert delete.code == 0
    deleted = [json.loads(line) for line in delete.out.splitlines()]
    assert sorted((line["netAttachDef"], line["result"]) for line in deleted) == \
        sorted((f"{p.namespace}/ptp-conf", None) for p in pods)
    assert leases(inject) == [] and inject.cache_files() == []


def test_list_and_gc_name_the_definition(inject: Tool, lab: Any, make_pod: Callable[..., Any]) -> None:
    live, gone = make_pod(), make_pod()
    text = as_text(definition(inject), "yaml")
    for pod in (live, gone):
        assert run_spec(inject, "file", text, "add", *args_for(pod)).code == 0
    plain = inject("add", *args_for(live), "-spec", inject.spec, "-interface", "net2")  # examples/ptp.json
    assert plain.code == 0
    lab.remove_pod(gone)
    rows = {(r["pod"], r["interface"]): r for r in json.loads(inject("list", "-o", "json").out)}
    assert {key: (r["netAttachDef"], r["stale"]) for key, r in rows.items()} == {
        (live.name, "net1"): ("if-inject/ptp-conf", False), (live.name, "net2"): ("", False),
        (gone.name, "net1"): ("if-inject/ptp-conf", True)}

    statuses = json.loads(inject("list", *args_for(live), "-o", "network-status").out)
    assert statuses == [{"name": "if-inject/ptp-conf", **seen_in_pod(lab, live, "net1"), "dns": {}},
                        {"name": "mynet", **seen_in_pod(lab, live, "net2"), "dns": {}}]
    assert json.loads(inject("list", *args_for(gone), "-o", "network-status").out) == []

    done = inject("gc")
    assert done.code == 0
    [record] = map(json.loads, done.out.splitlines())
    assert (record["pod"], record["netAttachDef"], record["action"]) == \
        (gone.name, "if-inject/ptp-conf", "deleted")
    assert leases(inject) == [seen_in_pod(lab, live, "net1")["ips"][0]]
    assert run_spec(inject, "file", text, "del", *args_for(live)).code == 0
    assert inject("del", *args_for(live), "-interface", "net2").code == 0  # from the cache
    assert leases(inject) == [] and inject.leases() == [] and inject.cache_files() == []


# ---- docs/multus.md, and the README's lines on Multus --------------------------------

def anonymous(text: str) -> str:
    """Addresses and MACs, which differ from run to run, as placeholders."""
    text = re.sub(r"\b([0-9a-f]{2}:){5}[0-9a-f]{2}\b", "MAC", text)
    return re.sub(r"\b\d+\.\d+\.\d+\.\d+\b", "IP", text)


@pytest.fixture
def ptp_conf_leases() -> Iterator[None]:
    """examples/ptp-nad.yaml as users run it keeps its leases in /var/lib/cni/networks/ptp-conf."""
    leases = Path("/var/lib/cni/networks/ptp-conf")
    existed = leases.parent.exists()
    yield
    if leases.exists():
        shutil.rmtree(leases)
    if not existed and leases.parent.exists() and not any(leases.parent.iterdir()):
        leases.parent.rmdir()


def test_readme_with_multus(tool: list[str], lab: Any, pod: Any, tmp_path: Path,
                            ptp_conf_leases: None) -> None:
    """docs/multus.md's commands with examples/ptp-nad.yaml unchanged, its annotation recipe
    with `kubectl` played by a file, and the output it shows; the README shows the same add."""
    section = (REPO / "docs" / "multus.md").read_text()
    # What Multus wrote at pod start: its entry for the cluster's network, the lab's eth0.
    [cached] = Path(ii._results_dir(ii._DEFAULT_CACHE_DIR)).glob(f"*-{pod.sandbox_id}-eth0")
    eth0 = ii.network_status(json.loads(cached.read_text())["result"], "cbr0", "eth0")
    eth0 = {**{k: v for k, v in eth0.items() if k != "dns"}, "default": True, "dns": eth0["dns"]}
    annotation = tmp_path / "network-status"
    annotation.write_text(json.dumps([eth0], indent=4))
    prelude = f"""
        if-inject() {{ {' '.join(map(shlex.quote, tool))} -r {lab.endpoint} "$@"; }}
        kubectl() {{  # get pod ... -o jsonpath=..., annotate pod ... network-status=VALUE --overwrite
            case $1 in
            get) cat {annotation} ;;
            annotate) for arg; do case $arg in k8s.v1.cni.cncf.io/network-status=*)
                printf %s "${{arg#*=}}" > {annotation} ;; esac; done ;;
            esac
        }}
        pod={pod.name}
        """

    def sh(script: str) -> str:
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", prelude + script], capture_output=True,
                              text=True, cwd=REPO, timeout=60)
        assert (proc.returncode, proc.stderr) == (0, ""), script
        return proc.stdout

    add = "if-inject add -ns if-inject -pod $pod -spec examples/ptp-nad.yaml -o network-status"
    assert add in code_block_with(readme_section("With Multus"), add)
    recipe = code_block_with(section, "network_status() {")
    check, delete, _ = code_block_with(section, "if-inject check").strip().splitlines()
    annotate, get = recipe.strip().splitlines()[-2:]
    try:
        shown = f"$ {add}\n{sh(add)}$ {annotate}\n$ {get}\n{sh(recipe)}"
        assert anonymous(shown) in anonymous(section), shown
        status = json.loads(annotation.read_text())
        assert status == [eth0, {"name": "if-inject/ptp-conf", **seen_in_pod(lab, pod, "net1"), "dns": {}}]
        assert sh(check) == ""
    finally:
        sh(delete)
    # After a del, the same recipe drops the entry: net1 is gone from the pod.
    sh(recipe)
    assert json.loads(annotation.read_text()) == [eth0] and pod_addrs(lab, pod) == ""
