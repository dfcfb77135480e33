"""The fake runtimes held against the lab's real ones, live: a pod on the real
runtime and the fake's answer for the same pod, side by side (as root; the
same comparison against recorded documents: test/unit/test_fakes_real.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import if_inject
from support.cri_schema import NODE, POD
from support.fake_cri import (
    CONTAINERD_16,
    CONTAINERD_17,
    CONTAINERD_21,
    CRIO_136,
    FakeCRI,
    Runtime,
    Sandbox,
    containerd_info,
    containerd_stopped,
    crio_info,
    crio_stopped,
    with_info,
)
from support.lab import Lab, Pod
from support.shapes import VERSION_FORMS, differences, message_shape, netns_locations, spec_netns, vocabulary

# lab.RUNTIMES -> the personality that stands for it (is it containerd 2.x?)
LIVE: dict[str, tuple[Runtime, bool]] = {
    "containerd-1.6": (CONTAINERD_16, False),
    "containerd-1.7": (CONTAINERD_17, False),
    "containerd-2.1": (CONTAINERD_21, True),
    "cri-o": (CRIO_136, False),
}


# The lab's pause image (support/lab.py) sets no Env; registry.k8s.io/pause's sets
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


def fake_of(pod: Pod, real_info: dict[str, Any], runtime: Runtime, v2: bool) -> Sandbox:
    """The fake's sandbox for the lab's pod: same metadata and labels, no
    annotations (the lab sets none), the real netns path and pid."""
    # cri-o labels the sandbox as its infra container: io.kubernetes.container.name=POD.
    own = {"io.kubernetes.container.name": "POD"} if runtime.name == "cri-o" else {}
    sandbox = Sandbox(pod.name, pod.namespace, uid=pod.uid, attempt=pod.attempt,
                      pod_labels={**pod.labels, **own}, annotations={},
                      network=NODE if pod.host_network else POD)
    if runtime.name == "cri-o":  # it pins a netns for hostNetwork pods too: the node's
        return with_info(sandbox, crio_info(sandbox, spec_netns(real_info), host_network=pod.host_network))
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
    sandbox = fake_of(pod, real_info, runtime, v2)
    if kind == "stopped":
        (crio_stopped if runtime.name == "cri-o" else containerd_stopped)(sandbox)
    with FakeCRI(tmp_path / "cri.sock", runtime, [sandbox]) as cri:
        fake_version, fake_item, fake_status, fake_info = answers(cri.endpoint, sandbox.id)

    assert [d for d in differences(fake_info, real_info) if d not in LAB_IMAGE] == []
    assert vocabulary(fake_info) == vocabulary(real_info)
    if kind != "hostNetwork" or runtime.name == "cri-o":
        netns = spec_netns(real_info)
        assert netns_locations(fake_info, netns) == netns_locations(real_info, netns)
        assert if_inject._netns_from_info(fake_info) == if_inject._netns_from_info(real_info)
    else:
        assert not any(ns["type"] == "network" for ns in real_info["runtimeSpec"]["linux"]["namespaces"])
    # The fields each message sets, with the state and namespace modes by name.
    assert message_shape(fake_item) == message_shape(real_item)
    assert message_shape(fake_status) == message_shape(real_status)

    api, api_version, form = VERSION_FORMS[runtime.name]
    for version in (real_version, fake_version):
        assert (version.runtime_name, version.version, version.runtime_api_version) == (
            runtime.name, api, api_version)
        assert re.fullmatch(form, version.runtime_version)
    assert major_minor(fake_version.runtime_version) == major_minor(real_version.runtime_version)
