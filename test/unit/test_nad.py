"""Specs as clusters keep them: Multus NetworkAttachmentDefinitions in JSON or
YAML, specs on stdin, and the network-status entries Multus would write.
No root and no runtime needed: parsing, and the CLI up to where it would ask
the runtime (a socket that does not exist)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import if_inject as ii
from support import REPO
from support.toolrun import Run, run_clean

CONFIG = {"cniVersion": "1.0.0", "name": "ptp-conf", "type": "ptp",
          "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.22.23.0/24"}]]}}

# `kubectl get net-attach-def macvlan-conf -o yaml`, for Multus' quickstart
# definition: a config without "name", server fields, the applied manifest.
KUBECTL_YAML = """\
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata:
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: |
      {"apiVersion":"k8s.cni.cncf.io/v1","kind":"NetworkAttachmentDefinition",\
"metadata":{"annotations":{},"name":"macvlan-conf","namespace":"default"},\
"spec":{"config":"{ \\"cniVersion\\": \\"0.3.1\\", \\"type\\": \\"macvlan\\" }"}}
  creationTimestamp: "2026-11-30T09:12:31Z"
  generation: 1
  name: macvlan-conf
  namespace: default
  resourceVersion: "4212"
  uid: 0b5c7b6e-6d0e-4f43-9d1e-54d3c1a1f0aa
spec:
  config: '{ "cniVersion": "0.3.1", "type": "macvlan", "master": "eth0", "mode": "bridge",
    "ipam": { "type": "host-local", "subnet": "192.168.1.0/24", "rangeStart": "192.168.1.200",
    "rangeEnd": "192.168.1.216", "routes": [ { "dst": "0.0.0.0/0" } ], "gateway": "192.168.1.1" } }'
"""


def nad(config: Any = None, name: str = "ptp-conf", namespace: str | None = "if-inject",
        **fields: Any) -> dict[str, Any]:
    """A NetworkAttachmentDefinition as `kubectl get -o json` prints it."""
    metadata: dict[str, Any] = {"name": name, "uid": "5f1c", "resourceVersion": "1"}
    if namespace is not None:
        metadata["namespace"] = namespace
    document: dict[str, Any] = {"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                                "metadata": metadata,
                                "spec": {"config": json.dumps(CONFIG) if config is None else config}}
    document.update(fields)
    return document


def test_test_ptp_nad_yaml_is_test_config() -> None:
    network = ii.read_network(str(REPO / "examples" / "ptp-nad.yaml"))
    assert json.loads(network.raw) == CONFIG
    assert (network.name, network.cni_version, [p["type"] for p in network.plugins]) == \
        ("ptp-conf", "1.0.0", ["ptp"])
    assert (network.nad_namespace, network.nad_name) == ("if-inject", "ptp-conf")
    assert network.status_name("elsewhere") == "if-inject/ptp-conf"


def test_kubectl_json_and_yaml_give_the_same_network() -> None:
    from_json = ii.parse_spec(json.dumps(nad(), indent=4).encode(), "nad.json")
    yaml_text = ("apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\n"
                 "metadata:\n  name: ptp-conf\n  namespace: if-inject\n"
                 f"spec:\n  config: |\n    {json.dumps(CONFIG)}\n")
    from_yaml = ii.parse_spec(yaml_text.encode(), "nad.yaml")
    for network in (from_json, from_yaml):
        assert json.loads(network.raw) == CONFIG and network.plugins == [CONFIG]
        assert (network.name, network.nad_namespace, network.nad_name) == \
            ("ptp-conf", "if-inject", "ptp-conf")
    # The config's own bytes are what the result cache keeps, as libcni keeps a file's.
    assert from_json.raw == json.dumps(CONFIG).encode()


def test_a_config_without_name_takes_the_definitions_as_multus_does() -> None:
    network = ii.parse_spec(KUBECTL_YAML.encode(), "macvlan.yaml")
    assert (network.name, network.cni_version, network.plugins[0]["master"]) == \
        ("macvlan-conf", "0.3.1", "eth0")
    assert json.loads(network.raw)["name"] == "macvlan-conf"
    assert network.status_name("default") == "default/macvlan-conf"
    unnamed = dict(CONFIG, name="")
    assert ii.parse_spec(json.dumps(nad(json.dumps(unnamed), name="other")).encode()).name == "other"


def test_a_definition_in_yaml_flow_style_is_no_json_error() -> None:
    flow = ("{apiVersion: k8s.cni.cncf.io/v1, kind: NetworkAttachmentDefinition, metadata: {name: ptp-conf},"
            f" spec: {{config: '{json.dumps(CONFIG)}'}}}}")
    network = ii.parse_spec(flow.encode())
    assert (network.name, network.nad_namespace, network.nad_name) == ("ptp-conf", "", "ptp-conf")


def test_a_definition_without_namespace_is_the_pods() -> None:
    network = ii.parse_spec(json.dumps(nad(namespace=None)).encode())
    assert (network.nad_namespace, network.nad_name) == ("", "ptp-conf")
    assert [network.status_name(ns) for ns in ("a", "b")] == ["a/ptp-conf", "b/ptp-conf"]
    plain = ii.parse_spec(json.dumps(CONFIG).encode())
    assert (plain.nad_name, plain.status_name("a")) == ("", "ptp-conf")


def test_a_conflist_in_a_definition() -> None:
    conflist = {"cniVersion": "1.0.0", "name": "chain", "plugins": [CONFIG, {"type": "tuning"}]}
    network = ii.parse_spec(json.dumps(nad(json.dumps(conflist))).encode())
    assert (network.name, [p["type"] for p in network.plugins]) == ("chain", ["ptp", "tuning"])


@pytest.mark.parametrize("document, message, code", [
    (nad(""), "nad.json: NetworkAttachmentDefinition if-inject/ptp-conf has no spec.config (Multus then "
              "reads the network from a file on the node: give that file as -spec)", ii.CODE_INVALID_CONFIG),
    ({k: v for k, v in nad().items() if k != "spec"}, "NetworkAttachmentDefinition if-inject/ptp-conf has "
                                                      "no spec.config", ii.CODE_INVALID_CONFIG),
    (nad("{bad json"), "nad.json: NetworkAttachmentDefinition if-inject/ptp-conf: spec.config is not JSON "
                       "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))",
     ii.CODE_DECODING),
    (nad({"type": "ptp"}), "nad.json: NetworkAttachmentDefinition if-inject/ptp-conf: spec.config is a dict, "
                           "not a string of JSON", ii.CODE_INVALID_CONFIG),
    (nad(json.dumps(dict(CONFIG, type="../sh"))),
     "nad.json: NetworkAttachmentDefinition if-inject/ptp-conf: spec.config: plugin type '../sh' must be "
     "a plain file name", ii.CODE_INVALID_CONFIG),
    (nad(json.dumps(dict(CONFIG, cniVersion="9"))), "spec.config: unknown cniVersion '9'",
     ii.CODE_INCOMPATIBLE_VERSION),
    (nad(name="Bad_Name"), "nad.json: NetworkAttachmentDefinition with an invalid metadata.name 'Bad_Name'",
     ii.CODE_INVALID_CONFIG),
    (nad(namespace="a.b"), "NetworkAttachmentDefinition ptp-conf with an invalid metadata.namespace 'a.b'",
     ii.CODE_INVALID_CONFIG),
    (nad(kind="ConfigMap", apiVersion="v1"), "nad.json: a document of kind ConfigMap and apiVersion v1, not "
                                             "a NetworkAttachmentDefinition of k8s.cni.cncf.io/v1",
     ii.CODE_INVALID_CONFIG),
    (nad(apiVersion="k8s.cni.cncf.io/v2"), "nad.json: a document of kind NetworkAttachmentDefinition and "
                                           "apiVersion k8s.cni.cncf.io/v2, not a NetworkAttachmentDefinition "
                                           "of k8s.cni.cncf.io/v1", ii.CODE_INVALID_CONFIG),
    ({"apiVersion": "v1", "kind": "List", "items": [nad()]}, "a document of kind List and apiVersion v1",
     ii.CODE_INVALID_CONFIG),
    ({"kind": "NetworkAttachmentDefinition"}, "a document of kind NetworkAttachmentDefinition and no "
                                              "apiVersion", ii.CODE_INVALID_CONFIG),
])
def test_bad_definitions_name_what_was_found(document: dict[str, Any], message: str, code: int) -> None:
    for form, raw in (("json", json.dumps(document)), ("yaml", yaml_dump(document))):
        with pytest.raises(ii.InjectError) as e:
            ii.parse_spec(raw.encode(), "nad.json")
        assert message in str(e.value) and str(e.value).startswith("nad.json: "), form
        assert e.value.code == code and "\n" not in str(e.value)


def yaml_dump(document: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(document)


@pytest.mark.parametrize("text, message, code", [
    ("{not json", "x: not JSON (Expecting property name enclosed in double quotes", ii.CODE_DECODING),
    ('{"a": 1,}', "x: not JSON (Expecting property name enclosed in double quotes: line 1 column 9",
     ii.CODE_DECODING),
    ("a: [\n", "x: neither JSON nor YAML (did not find expected node content at line 2, column 1)",
     ii.CODE_DECODING),
    ("plain words", "x: not JSON, and as YAML a string, not a NetworkAttachmentDefinition",
     ii.CODE_INVALID_CONFIG),
    ("- a\n- b\n", "x: not JSON, and as YAML a list, not a NetworkAttachmentDefinition",
     ii.CODE_INVALID_CONFIG),
    ("cniVersion: 1.0.0\ntype: ptp\n",
     "x: not JSON, and as YAML a mapping without apiVersion and kind, not a NetworkAttachmentDefinition",
     ii.CODE_INVALID_CONFIG),
    ("kind: A\n---\nkind: B\n", "x: 2 YAML documents: give one NetworkAttachmentDefinition",
     ii.CODE_INVALID_CONFIG),
    ("kind: Pod\napiVersion: v1\n",
     "x: a document of kind Pod and apiVersion v1, not a NetworkAttachmentDefinition of k8s.cni.cncf.io/v1",
     ii.CODE_INVALID_CONFIG),
    ("\n# only a comment\n", "x: 0 YAML documents: give one NetworkAttachmentDefinition",
     ii.CODE_INVALID_CONFIG),
    ("a: \x80 not UTF-8", "x: neither JSON nor YAML (", ii.CODE_DECODING),
    ("[" * 100_000, "x: not JSON (nested too deep)", ii.CODE_DECODING),
    ("x: " + "[" * 100_000, "x: neither JSON nor YAML (exceeded maximum nesting depth", ii.CODE_DECODING),
])
def test_what_is_neither_json_nor_a_definition(text: str, message: str, code: int) -> None:
    with pytest.raises(ii.InjectError) as e:
        ii.parse_spec(text.encode("latin-1"), "x")
    assert str(e.value).startswith(message) and "\n" not in str(e.value)
    assert e.value.code == code


def test_yaml_is_imported_only_for_what_is_not_json(tmp_path: Path) -> None:
    spec = tmp_path / "nad.json"
    spec.write_text(json.dumps(nad()))
    probe = ("import sys, if_inject as ii; n = ii.read_network(sys.argv[1]); "
             "print(n.nad_name, 'yaml' in sys.modules)")
    for path, seen in ((spec, "ptp-conf False"), (REPO / "examples" / "ptp-nad.yaml", "ptp-conf True")):
        out = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True,
                             check=True, cwd=REPO).stdout
        assert out == seen + "\n"


# ---- the CLI, up to the runtime ------------------------------------------------------

def run(tool: list[str], *args: str, stdin: str | None = None) -> Run:
    return Run.of(run_clean(tool, "-r", "/nonexistent.sock", *args, input=stdin, timeout=60))


def test_spec_from_stdin_is_parsed_before_the_runtime_is_asked(tool: list[str]) -> None:
    for command in ("add", "check", "del"):
        good = run(tool, command, "-pod", "p", "-spec", "-",
                   stdin=(REPO / "examples" / "ptp-nad.yaml").read_text())
        assert (good.code, good.out) == (1, "")
        assert good.error.startswith("no container runtime answers: /nonexistent.sock: "), command
    bad = run(tool, "add", "-pod", "p", "-spec", "-", stdin="kind: Pod\napiVersion: v1\n")
    assert (bad.code, bad.out) == (1, "")
    assert bad.error == ("stdin: a document of kind Pod and apiVersion v1, not a NetworkAttachmentDefinition "
                         "of k8s.cni.cncf.io/v1")
    assert json.loads(bad.err)["code"] == ii.CODE_INVALID_CONFIG
    empty = run(tool, "add", "-pod", "p", "-spec", "-", stdin="")
    assert (empty.code, empty.error) == (1, "stdin: empty")


def test_spec_from_a_terminal_is_refused(tool: list[str]) -> None:
    terminal, other_end = pty.openpty()
    try:
        proc = run_clean(tool, "-r", "/nonexistent.sock", "add", "-pod", "p", "-spec", "-",
                         stdin=other_end, timeout=60)
    finally:
        os.close(other_end)
        os.close(terminal)
    refused = Run(proc.returncode, proc.stdout, proc.stderr)
    assert (refused.code, refused.out) == (1, "")
    assert refused.error == "spec -: standard input is a terminal: pipe the spec in"


def test_output_choices(tool: list[str]) -> None:
    status = run(tool, "list", "-pod", "p", "-o", "network-status")
    assert (status.code, status.out) == (2, "")
    assert status.error == "-o network-status lists one pod's attachments: give -ns and -pod"
    for args in (["check", "-pod", "p", "-spec", "s", "-o", "network-status"],
                 ["add", "-pod", "p", "-spec", "s", "-o", "text"]):
        usage = run(tool, *args)
        assert usage.code == 2 and "-o" in usage.error, args


# ---- network-status entries from CNI results ----------------------------------------

PTP_RESULT = {  # what ptp 1.x returns for an ADD of examples/ptp.json
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "veth5e9b2b1c", "mac": "72:8d:8a:2d:5f:3e"},
                   {"name": "net1", "mac": "ae:5c:4b:29:44:6f", "sandbox": "/var/run/netns/cni-1"}],
    "ips": [{"interface": 1, "address": "10.22.22.2/24", "gateway": "10.22.22.1"}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.22.22.1"}],
    "dns": {},
}


def test_network_status_of_a_ptp_result() -> None:
    assert ii.network_status(PTP_RESULT, "if-inject/ptp-conf", "net1") == {
        "name": "if-inject/ptp-conf", "interface": "net1", "ips": ["10.22.22.2"],
        "mac": "ae:5c:4b:29:44:6f", "dns": {}, "gateway": ["10.22.22.1"]}
    # The key order of Multus' NetworkStatus, and no "default" (false is left out).
    assert list(ii.network_status(PTP_RESULT, "n", "net1")) == ["name", "interface", "ips", "mac", "dns",
                                                                "gateway"]


def test_network_status_of_a_single_interface_result_takes_every_address() -> None:
    result = {"cniVersion": "0.3.1",
              "interfaces": [{"name": "net1", "mac": "0a:58:c0:a8:01:c8", "mtu": 9000, "sandbox": "/x"}],
              "ips": [{"version": "4", "address": "192.168.1.200/24", "gateway": "192.168.1.1"},
                      {"version": "6", "address": "fd00:0:0::0c8/64", "interface": 0}],
              "routes": [{"dst": "10.0.0.0/8", "gw": "192.168.1.1"}, {"dst": "::/0", "gw": "fd00::1"}],
              "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"], "domain": ""}}
    assert ii.network_status(result, "default/macvlan-conf", "net1") == {
        "name": "default/macvlan-conf", "interface": "net1", "ips": ["192.168.1.200", "fd00::c8"],
        "mac": "0a:58:c0:a8:01:c8", "mtu": 9000,
        "dns": {"nameservers": ["10.96.0.10"], "search": ["svc.cluster.local"]}, "gateway": ["fd00::1"]}


def test_network_status_with_several_pod_interfaces() -> None:
    result = {"cniVersion": "1.0.0",
              "interfaces": [{"name": "net1", "mac": "aa:00:00:00:00:01", "sandbox": "/x"},
                             {"name": "host0"},
                             {"name": "net2", "mac": "aa:00:00:00:00:02", "sandbox": "/x"}],
              "ips": [{"address": "10.0.0.1/24", "interface": 0}, {"address": "10.0.1.1/24", "interface": 2},
                      {"address": "10.0.2.1/24"}]}
    # Each interface its own addresses; those of no interface go to the last one, as in Multus.
    assert ii.network_status(result, "n", "net1")["ips"] == ["10.0.0.1"]
    net2 = ii.network_status(result, "n", "net2")
    assert (net2["ips"], net2["mac"]) == (["10.0.1.1", "10.0.2.1"], "aa:00:00:00:00:02")


def test_network_status_of_results_without_interfaces() -> None:
    old = {"cniVersion": "0.2.0", "ip4": {"ip": "10.1.2.3/16", "gateway": "10.1.0.1",
                                          "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]}}
    assert ii.network_status(old, "old", "net3") == {"name": "old", "interface": "net3", "ips": ["10.1.2.3"],
                                                     "dns": {}, "gateway": ["10.1.0.1"]}
    assert ii.network_status({"cniVersion": "1.0.0"}, "bare", "net1") == {"name": "bare", "interface": "net1",
                                                                        "dns": {}}
