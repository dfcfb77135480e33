"""Which CNI networks the runtime runs itself, read from its Status answer (no root, no runtime).

The lab checks the real answers (test/test_runtime_gc.py); here the tool's reading
of containerd's "cniconfig" takes whatever it is given without failing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import if_inject

# Only its Version answer is read when the Status info is given.
CONTAINERD: Any = SimpleNamespace(version=SimpleNamespace(runtime_name="containerd"))


def cniconfig(conf_dir: object, networks: object) -> dict[str, str]:
    return {"cniconfig": json.dumps({"PluginDirs": ["/opt/cni/bin"], "PluginConfDir": conf_dir,
                                     "PluginMaxConfNum": 1, "Prefix": "eth", "Networks": networks})}


def network(name: str) -> dict[str, Any]:
    return {"Config": {"Name": name, "CNIVersion": "1.0.0", "Plugins": [], "Source": "{}"}, "IFName": "eth0"}


def test_containerd_names_its_loaded_networks_but_loopback() -> None:
    info = cniconfig("/etc/cni/net.d", [network("cni-loopback"), network("k8s-pod-network")])
    assert if_inject._runtime_cni_conf(CONTAINERD, info) == ("/etc/cni/net.d", {"k8s-pod-network"})


@pytest.mark.parametrize("info", [
    {}, {"cniconfig": "not json"}, {"cniconfig": "[]"}, cniconfig(42, "all"),
    cniconfig("/etc/cni/net.d", [None, {"Config": "x"}, {"Config": {"Name": ""}}]),
    {"cniconfig": "[" * 100_000 + "]" * 100_000},
], ids=["none", "not-json", "a-list", "wrong-types", "odd-networks", "nested-too-deep"])
def test_odd_answers_name_no_network(info: dict[str, str]) -> None:
    conf_dir, names = if_inject._runtime_cni_conf(CONTAINERD, info)
    assert names == set() and conf_dir in ("", "/etc/cni/net.d")


def test_the_conf_file_is_found_by_the_networks_name(tmp_path: Path) -> None:
    (tmp_path / "05-broken.conf").write_text("{")
    (tmp_path / "06-deep.conf").write_text("[" * 100_000 + "]" * 100_000)
    os.mkfifo(tmp_path / "07-fifo.conf")  # skipped: a plain open() would wait for a writer
    (tmp_path / "10-pods.conflist").write_text(json.dumps({"name": "k8s-pod-network", "plugins": []}))
    (tmp_path / "README").write_text("not a conf")
    status = SimpleNamespace(info=cniconfig(str(tmp_path), [network("k8s-pod-network"), network("gone")]))

    class Client:
        version = CONTAINERD.version
        messages = if_inject._cri_messages()

        def call(self, method: str, request: Any) -> Any:
            assert (method, request.verbose) == ("Status", True)
            return status

    assert if_inject._runtime_networks(Client()) == {  # type: ignore[arg-type]
        "k8s-pod-network": str(tmp_path / "10-pods.conflist"), "gone": str(tmp_path)}


def test_a_node_asks_once_and_warns_once_per_network(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """A batch adds to many pods: the runtime is asked once, each network warned of once."""
    calls: list[str] = []

    class Client:
        version = CONTAINERD.version
        messages = if_inject._cri_messages()

        def call(self, method: str, request: Any) -> Any:
            calls.append(method)
            return SimpleNamespace(info=cniconfig(str(tmp_path), [network("k8s-pod-network")]))

    node = if_inject.Node()
    node._client = Client()  # type: ignore[assignment]
    ours, theirs = (if_inject.parse_network_config(json.dumps({"cniVersion": "1.0.0", "name": name,
                                                               "type": "ptp"}).encode())
                    for name in ("mynet", "k8s-pod-network"))
    for _ in range(3):
        node._warn_if_runtime_network(ours)
        node._warn_if_runtime_network(theirs)
    assert calls == ["Status"]
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        f"network k8s-pod-network is also containerd's own network ({tmp_path})"]
