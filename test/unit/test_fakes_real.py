"""The fake runtimes (test/support/fake_cri.py) held against the real ones they stand for.

The tool's tests meet containerd 1.7 and 2.x, cri-o and cri-dockerd through
fake_cri's personalities. Here each containerd personality, and cri-o's, answers
for the same pod as the real runtime did, and the two answers must have the same
structure: the keys of the verbose `info` and their nesting (in Go's order),
the JSON types, where the netns path appears, the state values, and the
status and Version fields. Values that differ from pod to pod (IDs, pids,
timestamps, uuids, MACs, addresses) are left out of the comparison.

Two sources of the real answers:
- test/data/info-*.json: verbose PodSandboxStatus documents real containerd
  1.7.24 (Debian trixie), 2.1.9 (sid) and cri-o 1.36.3 (static, on sid)
  returned for a pod (no root needed);
- the live lab: test/test_fakes_live.py, as root (a pod on the real runtime
  and the fake's answer for the same pod, side by side).

The fake keeps only part of the OCI runtime spec (what every runtime fills),
so under `runtimeSpec` the fake's keys must be a subset of the real ones;
everywhere else they must be the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

import if_inject
from support.fake_cri import (
    CONTAINERD_17,
    CONTAINERD_21,
    CRIO,
    CRIO_136,
    FakeCRI,
    M,
    Runtime,
    Sandbox,
    containerd_info,
    crio_info,
    with_info,
)
from support.shapes import (
    VERSION_FORMS,
    differences,
    message_shape,
    netns_locations,
    snake,
    spec_netns,
    vocabulary,
)

DATA = Path(__file__).resolve().parent.parent / "data"

# ---- the real documents ------------------------------------------------------------


def real_document(version: str) -> dict[str, Any]:
    """test/data/info-containerd-VERSION.json, or info-cri-o-VERSION.json for "cri-o-VERSION"."""
    name = version if version.startswith("cri-o-") else f"containerd-{version}"
    document: dict[str, Any] = json.loads((DATA / f"info-{name}.json").read_text())
    return document


def pod_like(status: dict[str, Any]) -> Sandbox:
    """A fake sandbox of the same pod: name, namespace, uid, labels and annotations."""
    metadata = status["metadata"]
    own = {k: v for k, v in status["labels"].items() if not k.startswith("io.kubernetes.pod.")}
    return Sandbox(metadata["name"], metadata["namespace"], uid=metadata["uid"], pod_labels=own,
                   annotations=dict(status.get("annotations", {})))


# Each personality, and the real release it stands for (cri-o: a pod without an
# infra container, its default).
Personality = Callable[[Sandbox, str, int], dict[str, Any]]
CONTAINERD: dict[str, tuple[Runtime, Personality]] = {
    "1.7.24": (CONTAINERD_17, lambda sb, netns, pid: containerd_info(sb, netns, pid)),
    "2.1.9": (CONTAINERD_21, lambda sb, netns, pid: containerd_info(sb, netns, pid, v2=True)),
    "cri-o-1.36.3": (CRIO_136, lambda sb, netns, pid: crio_info(sb, netns)),
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
    assert (if_inject._info_pid(fake_info) > 0) == (if_inject._info_pid(real_info) > 0)  # a pause or none


@pytest.mark.parametrize("value", [True, "4242", -1, 0, 4.2, None, [4242]])
def test_a_pid_that_is_no_positive_integer_is_none(value: object) -> None:
    assert if_inject._info_pid({"pid": value}) == 0


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
    real_status = json_format.ParseDict(snake(real["status"]), M["PodSandboxStatus"]())
    assert message_shape(response.status) == message_shape(real_status)
    assert list(response.info) == list(real["info"]) == ["info"]


@pytest.mark.parametrize("runtime", [CONTAINERD_17, CONTAINERD_21, CRIO, CRIO_136], ids=lambda r: r.label)
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
