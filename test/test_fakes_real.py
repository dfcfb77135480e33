"""The fake runtimes (test/fake_cri.py) held against the real ones they stand for.

The tool's tests meet containerd 1.7 and 2.x, cri-o and cri-dockerd through
fake_cri's personalities. Here each containerd personality answers for the
same pod as a real containerd did, and the two answers must have the same
structure: the keys of the verbose `info` and their nesting (in Go's order),
the JSON types, where the netns path appears, the state values, and the
status and Version fields. Values that differ from pod to pod (IDs, pids,
timestamps, uuids, MACs, addresses) are left out of the comparison.

Two sources of the real answers:
- test/data/info-containerd-*.json: verbose PodSandboxStatus documents real
  containerd 1.7.24 (Debian trixie) and 2.1.9 (sid) returned for a pod
  (no root needed);
- the live lab (`lab` fixture), when it runs: a pod on the real runtime and
  the fake's answer for the same pod, side by side.

The fake keeps only part of the OCI runtime spec (what every runtime fills),
so under `runtimeSpec` the fake's keys must be a subset of the real ones;
everywhere else they must be the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_cri import (
    CONTAINERD_16,
    CONTAINERD_17,
    CONTAINERD_21,
    CRIO,
    NODE,
    POD,
    FakeCRI,
    Runtime,
    Sandbox,
    containerd_info,
    containerd_stopped,
    crio_info,
    with_info,
)
from google.protobuf import json_format
from lab import Lab, Pod

import if_inject

DATA = Path(__file__).resolve().parent / "data"

# Maps whose keys are the pod's (labels, interface names), not the runtime's:
# their keys become "*".
FREE_FORM = frozenset({
    "config.labels", "config.annotations", "runtimeSpec.annotations", "runtimeSpec.linux.sysctl",
    "cniResult.Interfaces", "sandboxMetadata.Metadata.Config.labels",
    "sandboxMetadata.Metadata.Config.annotations", "sandboxMetadata.Metadata.CNIResult.Interfaces",
    "labels", "annotations"})
# What a node's configuration decides, not the runtime's version: only its
# presence is compared (runc options: null without any, {"systemd_cgroup":
# true} with SystemdCgroup).
CONFIGURED = frozenset({"runtimeOptions"})
# The fake keeps a cut of the OCI spec: its keys there are a subset.
CUT = ("runtimeSpec",)
# Fields whose values are a runtime's vocabulary, not the pod's.
VOCABULARY = ("processStatus", "netNamespaceClosed", "runtimeHandler", "runtimeType", "snapshotter",
              "sandboxMetadata.Version", "sandboxMetadata.Metadata.RuntimeHandler",
              "sandboxMetadata.Metadata.ProcessLabel")


# ---- comparing structures ------------------------------------------------------


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return {int: "int", float: "number", str: "string", list: "list", dict: "object"}[type(value)]


def child(path: str, key: str) -> str:
    return f"{path}.{'*' if path in FREE_FORM else key}" if path else key


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(normalised path, value) of every node: list items as path[], free-form keys as *."""
    yield path, value
    if path in CONFIGURED:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, child(path, key))
    elif isinstance(value, list):
        for item in value:
            yield from walk(item, path + "[]")


def shape(value: Any) -> dict[str, set[str]]:
    """{path: the JSON types found there}."""
    found: dict[str, set[str]] = {}
    for path, item in walk(value):
        found.setdefault(path, set()).add(json_type(item))
    return found


def key_orders(value: Any) -> dict[str, set[tuple[str, ...]]]:
    """{path: the key orders of the objects there}, for Go structs (not free-form maps)."""
    orders: dict[str, set[tuple[str, ...]]] = {}
    for path, item in walk(value):
        if isinstance(item, dict) and path not in FREE_FORM and path not in CONFIGURED:
            orders.setdefault(path, set()).add(tuple(item))
    return orders


def in_cut(path: str) -> bool:
    return any(path == top or path.startswith(top + ".") for top in CUT)


def differences(fake: Any, real: Any) -> list[str]:
    """How the fake's structure differs from the real one's; [] when it does not."""
    fake_shape, real_shape = shape(fake), shape(real)
    found = []
    for path in sorted(fake_shape.keys() | real_shape.keys()):
        if path not in real_shape:
            found.append(f"only the fake has {path or '.'}")
        elif path not in fake_shape:
            if not in_cut(path):
                found.append(f"only the real runtime has {path}")
        elif not fake_shape[path] <= real_shape[path] and path not in CONFIGURED:
            found.append(f"{path}: the fake has {sorted(fake_shape[path])}, "
                         f"the real runtime {sorted(real_shape[path])}")
    fake_orders, real_orders = key_orders(fake), key_orders(real)
    for path, orders in sorted(fake_orders.items()):
        real_order = real_orders.get(path, set())
        same_keys = {frozenset(o) for o in orders} == {frozenset(o) for o in real_order}
        if same_keys and not in_cut(path) and orders != real_order:  # else reported above
            found.append(f"{path or '.'}: keys in the order {sorted(orders)}, "
                         f"the real runtime {sorted(real_order)}")
    return found


def netns_locations(info: Any, netns: str) -> list[str]:
    """Where the netns path appears in an info document."""
    return sorted({path for path, item in walk(info) if item == netns})


def vocabulary(info: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for name in VOCABULARY:
        value: Any = info
        for key in name.split("."):
            value = value.get(key, "<absent>") if isinstance(value, dict) else "<absent>"
        values[name] = value
    return values


def message_shape(message: Any, path: str = "") -> dict[str, str]:
    """{path: type} of the fields a protobuf message sets (as protojson prints them)."""
    found = {}
    for descriptor, value in message.ListFields():
        name = child(path, descriptor.name)
        if descriptor.message_type is not None and descriptor.message_type.GetOptions().map_entry:
            found[name] = "map"
        elif descriptor.message_type is not None:
            found[name] = "message"
            found.update(message_shape(value, name))
        elif descriptor.enum_type is not None:
            found[name] = descriptor.enum_type.values_by_number[value].name
        else:
            found[name] = type(value).__name__
    return found


def snake(value: Any, free: bool = False) -> Any:
    """protojson's camelCase keys as the .proto names (not inside maps)."""
    if not isinstance(value, dict):
        return value
    return {(key if free else re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), key)):
            snake(item, key in ("labels", "annotations")) for key, item in value.items()}


# ---- the real documents ------------------------------------------------------------


def real_document(version: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((DATA / f"info-containerd-{version}.json").read_text())
    return document


def pod_like(status: dict[str, Any]) -> Sandbox:
    """A fake sandbox of the same pod: name, namespace, uid, labels and annotations."""
    metadata = status["metadata"]
    own = {k: v for k, v in status["labels"].items() if not k.startswith("io.kubernetes.pod.")}
    return Sandbox(metadata["name"], metadata["namespace"], uid=metadata["uid"], pod_labels=own,
                   annotations=dict(status.get("annotations", {})))


def spec_netns(info: dict[str, Any]) -> str:
    (path,) = [ns["path"] for ns in info["runtimeSpec"]["linux"]["namespaces"] if ns["type"] == "network"]
    return str(path)


# Each containerd personality, and the real release it stands for.
Personality = Callable[[Sandbox, str, int], dict[str, Any]]
CONTAINERD: dict[str, tuple[Runtime, Personality]] = {
    "1.7.24": (CONTAINERD_17, lambda sb, netns, pid: containerd_info(sb, netns, pid)),
    "2.1.9": (CONTAINERD_21, lambda sb, netns, pid: containerd_info(sb, netns, pid, v2=True)),
}


@pytest.mark.parametrize("version", CONTAINERD)
def test_the_fake_info_has_the_real_structure(version: str) -> None:
    real = real_document(version)
    real_info = real["info"]["info"]
    netns = spec_netns(real_info)
    _, personality = CONTAINERD[version]
    fake_info = personality(pod_like(real["status"]), netns, 4242)

    assert differences(fake_info, real_info) == []
    assert netns_locations(fake_info, netns) == netns_locations(real_info, netns)
    assert vocabulary(fake_info) == vocabulary(real_info)
    # What the tool reads: the same path from both.
    assert if_inject._netns_from_info(fake_info) == if_inject._netns_from_info(real_info) == netns


def test_the_netns_is_where_the_notes_say() -> None:
    """A check of the comparison itself, on the documents: the path's places."""
    spec_path, cni = "runtimeSpec.linux.namespaces[].path", "cniResult.Interfaces.*.Sandbox"
    old, new = real_document("1.7.24")["info"]["info"], real_document("2.1.9")["info"]["info"]
    assert netns_locations(old, spec_netns(old)) == [cni, spec_path]
    assert netns_locations(new, spec_netns(new)) == [
        cni, spec_path, "sandboxMetadata.Metadata.CNIResult.Interfaces.*.Sandbox",
        "sandboxMetadata.Metadata.NetNSPath"]
    assert re.fullmatch(r"/var/run/netns/cni-[0-9a-f-]{36}", spec_netns(new))


def test_the_comparison_sees_drift() -> None:
    """Each kind of drift the comparison is there to catch is reported."""
    real = real_document("2.1.9")["info"]["info"]
    fake = containerd_info(pod_like(real_document("2.1.9")["status"]), spec_netns(real), 1, v2=True)
    renamed = {("netNamespace" if k == "netNamespaceClosed" else k): v for k, v in fake.items()}
    assert differences(renamed, real) == ["only the fake has netNamespace",
                                          "only the real runtime has netNamespaceClosed"]
    reordered = dict(reversed(fake.items()))
    assert differences(reordered, real) == [
        f".: keys in the order {[tuple(reordered)]}, the real runtime {[tuple(real)]}"]
    typed = {**fake, "pid": str(fake["pid"])}
    assert differences(typed, real) == ["pid: the fake has ['string'], the real runtime ['int']"]
    no_pci = json.loads(json.dumps(fake).replace('"PciID": "", ', ""))
    assert "only the real runtime has cniResult.Interfaces.*.PciID" in differences(no_pci, real)
    assert differences({**fake, "runtimeOptions": {"systemd_cgroup": True}}, real) == []


@pytest.mark.parametrize("version", CONTAINERD)
def test_the_fake_status_has_the_real_fields(version: str, tmp_path: Path) -> None:
    """PodSandboxStatus' status, as the tool's own schema reads it, through the fake's gRPC."""
    real = real_document(version)
    runtime, personality = CONTAINERD[version]
    sandbox = pod_like(real["status"])
    with_info(sandbox, personality(sandbox, spec_netns(real["info"]["info"]), 4242))
    with FakeCRI(tmp_path / "cri.sock", runtime, [sandbox]) as cri, \
            if_inject._RuntimeClient(cri.endpoint, timeout=5) as client:
        request = client.messages["PodSandboxStatusRequest"](pod_sandbox_id=sandbox.id, verbose=True)
        response = client.call("PodSandboxStatus", request)
    status_cls = if_inject._cri_classes()["PodSandboxStatus"]
    real_status = json_format.ParseDict(snake(real["status"]), status_cls())
    assert message_shape(response.status) == message_shape(real_status)
    assert list(response.info) == list(real["info"]) == ["info"]


VERSION_FORMS = {
    # runtimeName: (version, runtimeApiVersion, runtimeVersion as the sources build it)
    "containerd": ("0.1.0", "v1", r"v?\d+\.\d+\.\d+([~+-].*)?"),
    "cri-o": ("0.1.0", "v1", r"\d+\.\d+\.\d+"),
}


@pytest.mark.parametrize("runtime", [CONTAINERD_17, CONTAINERD_21, CRIO], ids=lambda r: r.label)
def test_the_fake_version_answer(runtime: Runtime, tmp_path: Path) -> None:
    """containerd's pkg/cri/server/version.go and cri-o's server/version.go."""
    with FakeCRI(tmp_path / "cri.sock", runtime) as cri, \
            if_inject._RuntimeClient(cri.endpoint, timeout=5) as client:
        version = client.version
    api, api_version, form = VERSION_FORMS[version.runtime_name]
    assert (version.version, version.runtime_api_version) == (api, api_version)
    assert re.fullmatch(form, version.runtime_version)


def test_cri_o_info_shapes() -> None:
    """cri-o's createSandboxInfo (1.23-1.36): {runtimeSpec} without an infra
    container, {image, pid, runtimeSpec} with one; the pod's namespaces pinned
    under one name (nsmgr), in runtime-tools' order."""
    sandbox = Sandbox("web-0", "if-inject")
    pin = "0b7c3a5e-8d0f-4f6e-9a51-2f4c8e9d1b77"
    dropped = crio_info(sandbox, f"/var/run/netns/{pin}")
    kept = crio_info(sandbox, f"/var/run/netns/{pin}", infra_pid=4242)
    assert list(dropped) == ["runtimeSpec"]
    assert list(kept) == ["image", "pid", "runtimeSpec"]
    namespaces = dropped["runtimeSpec"]["linux"]["namespaces"]
    assert namespaces == [{"type": "pid"}, {"type": "network", "path": f"/var/run/netns/{pin}"},
                          {"type": "ipc", "path": f"/var/run/ipcns/{pin}"},
                          {"type": "uts", "path": f"/var/run/utsns/{pin}"}, {"type": "mount"}]
    annotations = dropped["runtimeSpec"]["annotations"]
    assert (annotations["io.kubernetes.cri-o.SandboxID"], annotations["io.kubernetes.cri-o.HostNetwork"],
            annotations["io.kubernetes.pod.name"]) == (sandbox.id, "false", "web-0")
    assert if_inject._netns_from_info(dropped) == if_inject._netns_from_info(kept) == f"/var/run/netns/{pin}"


# ---- the live lab: a real pod and the fake's answer for the same pod ----------------

# lab.RUNTIMES -> the personality that stands for it (is it 2.x?)
LIVE: dict[str, tuple[Runtime, bool]] = {
    "containerd-1.6": (CONTAINERD_16, False),
    "containerd-1.7": (CONTAINERD_17, False),
    "containerd-2.1": (CONTAINERD_21, True),
}


# The lab's pause image (test/lab.py) sets no Env; registry.k8s.io/pause's sets
# PATH, which the runtime copies into the spec (as the documents in test/data show).
LAB_IMAGE = ("only the fake has runtimeSpec.process.env", "only the fake has runtimeSpec.process.env[]")


def answers(endpoint: str, sandbox_id: str) -> tuple[Any, Any, Any, dict[str, Any]]:
    """(Version, ListPodSandbox item, PodSandboxStatus status, verbose info) as the tool reads them."""
    with if_inject._RuntimeClient(endpoint, timeout=10) as client:
        m = client.messages
        request = m["ListPodSandboxRequest"](filter=m["PodSandboxFilter"](id=sandbox_id))
        (item,) = client.call("ListPodSandbox", request).items
        status, info = if_inject._sandbox_info(client, sandbox_id)
        return client.version, item, status, info


def fake_of(pod: Pod, real_info: dict[str, Any], v2: bool) -> Sandbox:
    """The fake's sandbox for the lab's pod: same metadata and labels, no
    annotations (the lab sets none), the real netns path and pid."""
    sandbox = Sandbox(pod.name, pod.namespace, uid=pod.uid, attempt=pod.attempt,
                      pod_labels=dict(pod.labels), annotations={},
                      network=NODE if pod.host_network else POD)
    netns = None if pod.host_network else spec_netns(real_info)
    return with_info(sandbox, containerd_info(sandbox, netns, real_info["pid"],
                                              host_network=pod.host_network, v2=v2))


def major_minor(version: str) -> tuple[str, ...]:
    match = re.match(r"v?(\d+)\.(\d+)\.", version)
    assert match, version
    return match.groups()


@pytest.mark.runtimes
@pytest.mark.parametrize("kind", ["ready", "stopped", "hostNetwork"])
def test_the_fake_answers_as_the_real_runtime(kind: str, lab: Lab, make_pod: Callable[..., Pod],
                                              tmp_path: Path) -> None:
    pod = make_pod(container=False, host_network=kind == "hostNetwork")
    if kind == "stopped":
        lab.stop_pod(pod)
    real_version, real_item, real_status, real_info = answers(lab.endpoint, pod.sandbox_id)
    runtime, v2 = LIVE[lab.runtime]
    sandbox = fake_of(pod, real_info, v2)
    if kind == "stopped":
        containerd_stopped(sandbox)
    with FakeCRI(tmp_path / "cri.sock", runtime, [sandbox]) as cri:
        fake_version, fake_item, fake_status, fake_info = answers(cri.endpoint, sandbox.id)

    assert [d for d in differences(fake_info, real_info) if d not in LAB_IMAGE] == []
    assert vocabulary(fake_info) == vocabulary(real_info)
    if kind != "hostNetwork":
        netns = spec_netns(real_info)
        assert netns_locations(fake_info, netns) == netns_locations(real_info, netns)
        assert if_inject._netns_from_info(fake_info) == if_inject._netns_from_info(real_info)
    else:
        assert not any(ns["type"] == "network" for ns in real_info["runtimeSpec"]["linux"]["namespaces"])
    # The fields each message sets, with the state and namespace modes by name.
    assert message_shape(fake_item) == message_shape(real_item)
    assert message_shape(fake_status) == message_shape(real_status)

    api, api_version, form = VERSION_FORMS["containerd"]
    for version in (real_version, fake_version):
        assert (version.runtime_name, version.version, version.runtime_api_version) == (
            "containerd", api, api_version)
        assert re.fullmatch(form, version.runtime_version)
    assert major_minor(fake_version.runtime_version) == major_minor(real_version.runtime_version)
