"""The stale policy of list and gc (if_inject._staleness), and which runtime
judges an attachment (_RuntimeViews), without root or a runtime: the runtime's
answers are stubbed, the netns are this process' own under /proc."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import if_inject as ii
from support.cri_schema import SANDBOX_NOTREADY, SANDBOX_READY

OWN_NETNS = f"/proc/{os.getpid()}/ns/net"  # a network namespace any user can open
NO_NETNS = "/proc/999999999/ns/net"  # no such process (above pid_max)


def cached(netns: str, sandbox_id: str = "s1", **mark: str) -> ii.CachedAttachment:
    entry = {"kind": ii._CACHE_KIND, "containerId": "c1", "ifName": "net1", "networkName": "mynet",
             "netns": netns, ii._CACHE_MARK: {"namespace": "ns", "pod": "p", "sandboxId": sandbox_id, **mark}}
    return ii.CachedAttachment.from_entry("/cache/results/mynet-c1-net1", entry)


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the stubbed runtimes answer: {"sandboxes": {id: state}, "live": {id: netns}};
    a client of the endpoint "dead" cannot connect."""
    answers: dict[str, Any] = {"sandboxes": {}, "live": {}}

    class Client:
        def __init__(self, endpoint: str | None, timeout: float = 10.0) -> None:
            if endpoint and "dead" in endpoint:
                raise ii.InjectError("no container runtime answers: dead")
            self.endpoint = endpoint or "unix:///run/containerd/containerd.sock"
            self.version = SimpleNamespace(runtime_name="containerd")

        def close(self) -> None:
            pass

    def list_sandboxes(client: Any, labels: Any = None, ready_only: bool = False) -> list[Any]:
        return [SimpleNamespace(id=i, state=s) for i, s in answers["sandboxes"].items()]

    def sandbox_pod(client: Any, sandbox: Any, netns_required: bool = True) -> ii.Pod:
        return ii.Pod("ns", "p", sandbox_id=sandbox.id, netns=answers["live"].get(sandbox.id, ""))

    monkeypatch.setattr(ii, "_RuntimeClient", Client)
    monkeypatch.setattr(ii, "_list_sandboxes", list_sandboxes)
    monkeypatch.setattr(ii, "_sandbox_pod", sandbox_pod)
    return answers


def view() -> ii._RuntimeView:
    return ii._RuntimeView(ii._RuntimeClient("unix:///run/containerd/containerd.sock"))


# ---- the policy ---------------------------------------------------------------------------

def test_a_ready_sandbox_is_never_stale_even_without_its_netns(runtime: dict[str, Any]) -> None:
    runtime["sandboxes"] = {"s1": SANDBOX_READY}
    assert ii._staleness(cached(NO_NETNS), view()) == ("ready", False, "")


@pytest.mark.parametrize("state, name", [(None, "gone"), (SANDBOX_NOTREADY, "notready")])
def test_stale_only_when_the_sandbox_and_its_netns_are_gone(runtime: dict[str, Any], state: int | None,
                                                            name: str) -> None:
    runtime["sandboxes"] = {"live": SANDBOX_READY} | ({"s1": state} if state is not None else {})
    runtime["live"] = {"live": OWN_NETNS}  # seen here: /proc is the runtime's
    assert ii._staleness(cached(OWN_NETNS), view()) == (name, False, "")  # its netns is still there
    assert ii._staleness(cached(NO_NETNS), view()) == (name, True, "")


def test_something_that_is_not_a_netns_is_a_netns_gone(runtime: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "cni-1").write_text("")
    assert ii._staleness(cached(str(tmp_path / "cni-1")), view()) == ("gone", True, "")


def test_a_netns_directory_that_is_not_here_decides_nothing(runtime: dict[str, Any], tmp_path: Path) -> None:
    netns = str(tmp_path / "netns" / "cni-1")
    assert ii._staleness(cached(netns), view()) == (
        "gone", False, f"the netns directory {tmp_path / 'netns'} is not visible here")


def test_a_directory_without_the_live_pods_netns_is_not_the_runtimes(runtime: dict[str, Any],
                                                                     tmp_path: Path) -> None:
    """A tmpfs over the directory, or another PID namespace: the live pods' netns are not there either."""
    runtime["sandboxes"] = {"live": SANDBOX_READY, "other": SANDBOX_READY}
    for live, gone in ((str(tmp_path / "cni-live"), str(tmp_path / "cni-1")),
                       ("/proc/999999998/ns/net", NO_NETNS)):
        runtime["live"] = {"live": live}
        state, stale, why = ii._staleness(cached(gone), view())
        assert (state, stale) == ("gone", False)
        place = ii._netns_place(gone)
        assert why.startswith(f"the netns of live pods in {place} are not visible here either")


def test_a_runtime_that_cannot_be_asked_decides_nothing() -> None:
    assert ii._staleness(cached(NO_NETNS), "cannot reach it") == ("unknown", False, "cannot reach it")


# ---- which runtime judges -----------------------------------------------------------------

def test_the_cache_entry_records_the_runtime(runtime: dict[str, Any]) -> None:
    network = ii.parse_network_config(b'{"cniVersion": "1.0.0", "name": "mynet", "type": "ptp"}')
    pod = ii.Pod("ns", "p", sandbox_id="s1", netns=OWN_NETNS, runtime_endpoint=ii._endpoint_uri("x.sock"),
                 runtime_name="cri-o")
    entry = ii._cache_entry(network, ii.Attachment("c1", OWN_NETNS, pod=pod), None)
    assert entry[ii._CACHE_MARK]["runtimeEndpoint"] == f"unix://{os.getcwd()}/x.sock"
    back = ii.CachedAttachment.from_entry("/x", entry)
    assert (back.runtime_endpoint, back.runtime_name) == (f"unix://{os.getcwd()}/x.sock", "cri-o")


def test_each_attachment_is_judged_by_the_runtime_that_made_it(runtime: dict[str, Any]) -> None:
    runtime["sandboxes"] = {"old-known": SANDBOX_NOTREADY}
    node = ii.Node("unix:///run/containerd/containerd.sock")
    with ii._RuntimeViews(node.client, node.timeout) as views:
        assert views.of(cached(NO_NETNS, "old-known")) is views.own
        old = views.of(cached(NO_NETNS, "old-unknown"))
        assert isinstance(old, str) and "does not say which runtime made it" in old
        same = cached(NO_NETNS, runtimeEndpoint="unix:///var/../run/containerd/containerd.sock",
                      runtimeName="containerd")
        assert views.of(same) is views.own
        other = views.of(cached(NO_NETNS, runtimeEndpoint="unix:///run/crio/crio.sock", runtimeName="cri-o"))
        assert other == ("the runtime that made it (cri-o on unix:///run/crio/crio.sock) is gone: "
                         "containerd answers there now")
        dead = views.of(cached(NO_NETNS, runtimeEndpoint="unix:///dead.sock", runtimeName="containerd"))
        assert dead == ("cannot reach the runtime that made it (unix:///dead.sock): "
                        "no container runtime answers: dead")
