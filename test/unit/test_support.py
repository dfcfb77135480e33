"""The tests' own machinery, without root: the CRI schema helpers a fake
server uses, and the machine check's report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support import cri_schema
from support.machine import machine_differences


def test_cri_schema_serves_what_it_calls(tmp_path: Path) -> None:
    """The helpers a fake CRI server uses, against the client helper (no root needed)."""
    from concurrent import futures

    import grpc

    def version(request: Any, context: Any) -> Any:
        return cri_schema.M["VersionResponse"](version=request.version, runtime_name="fake")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers(
        [cri_schema.rpc_handler(cri_schema.RUNTIME_SERVICE, {"Version": version})])
    server.add_insecure_port(f"unix://{tmp_path}/cri.sock")
    server.start()
    try:
        with grpc.insecure_channel(f"unix://{tmp_path}/cri.sock") as channel:
            response = cri_schema.call(channel, "Version", {"version": "v1"}, timeout=5)
    finally:
        server.stop(None)
    assert (response.version, response.runtime_name) == ("v1", "fake")


def test_machine_check_names_what_changed() -> None:
    before = {"links": ["eth0", "lo"], "net.ipv4.ip_forward": "0", "/var/lib/cni": None}
    after = {"links": ["eth0", "lo", "pod0"], "net.ipv4.ip_forward": "1",
             "/var/lib/cni": ["/var/lib/cni/results"]}
    assert machine_differences(before, after) == [
        "links: + pod0", "net.ipv4.ip_forward: '0' -> '1'",
        "/var/lib/cni: None -> ['/var/lib/cni/results']"]
    assert machine_differences(before, before) == []
