"""A CRI server for the tests that answers as cri-o, containerd 1.6/1.7/2.x and cri-dockerd do.

cri-dockerd cannot run on these machines, older cri-o and containerd releases
are not at hand, and real runtimes do not fail on demand, so the tests also
meet the runtimes through this grpcio server on a unix socket (the lab runs
real containerd 1.6, 1.7 and 2.1 and cri-o 1.36.3):

    sandbox = crio_sandbox("web-0", "/var/run/netns/ifi-1234")
    with FakeCRI(socket_path, CRIO, [sandbox]) as cri:
        ...  # if-inject -runtime-endpoint cri.endpoint netns -pod web-0

A sandbox is built by one of the personality functions below; each copies what
that runtime's own source puts in PodSandboxStatus (the `info` map and the
status), as read in:
- cri-o server/sandbox_status.go (createSandboxInfo), the same from 1.23 to
  1.36: info["info"] is {"runtimeSpec"} for a pod without an infra container
  (drop_infra_ctr, the default since 1.22, for every pod whose PID namespace
  is not shared) and {"image", "pid", "runtimeSpec"} with one, in that order
  (Go struct order). 1.19 to 1.22 sent "{}" instead of the runtimeSpec-only
  form; before 1.19, no info at all. internal/config/nsmgr pins the pod's
  ipc, net and uts namespaces under one fresh uuid: /var/run/netns/<uuid>,
  /var/run/ipcns/<uuid>, /var/run/utsns/<uuid> (namespaces_dir "/var/run"),
  and the node's own netns for hostNetwork pods (pinns --net=host); the spec
  lists them in runtime-tools' order (pid, network, ipc, uts, mount). cri-o's
  integration tests read the path the same way (test/network.bats:
  .info.runtimeSpec.linux.namespaces[] | select(.type == "network").path),
  and a real node's `crictl inspectp --output table`, pasted into a user's
  2024 cri-o bug report about `crictl create` (not about this; the report is
  https://github.com/cri-o/cri-o/issues/8409), shows the runtimeSpec-only
  form: `Info: map[info:{"runtimeSpec":{"ociVersion":...`.
  The status echoes the namespace options as the kubelet asked (network
  NODE), has no IP for hostNetwork pods, and the labels and annotations of
  the config. Version: version "0.1.0", runtimeName "cri-o", runtimeVersion
  without a "v" ("1.29.2"), runtimeApiVersion "v1" (server/version.go).
  Unknown IDs: NOT_FOUND 'could not find pod "<id>": ...'.
- containerd 1.6/1.7 pkg/cri/server/sandbox_status.go: info["info"] is the
  SandboxInfo JSON (pid, processStatus, netNamespaceClosed, image, snapshotKey,
  snapshotter, runtimeHandler, runtimeType, runtimeOptions, config,
  runtimeSpec, cniResult); hostNetwork pods have no network entry in the spec.
- containerd 2.x internal/cri/server/podsandbox/sandbox_status.go and
  types/sandbox_info.go: the same without runtimeHandler, plus
  sandboxMetadata = {"Version": "v1", "Metadata": {..., "NetNSPath"}}; go-cni
  adds "PciID" and "SocketPath" to every cniResult interface. When the shim is
  gone the controller answers NotFound and the info is rebuilt from the store:
  processStatus "deleted", runtimeSpec null, NetNSPath still set.
  2.3 always fills info["info"], also without verbose.
- containerd's config, cniResult and spec are Go's encoding/json: struct
  fields in declaration order, map keys sorted, zero values of the CRI
  config left out. Version: "0.1.0", "containerd", the build's version
  ("v1.7.24" for upstream releases), "v1".
- cri-dockerd core/sandbox_status.go: no info at all; ContainerStatus on the
  sandbox's ID (a docker container) gives {"sandboxID", "pid"}.
test/unit/test_fakes_real.py holds the containerd and cri-o shapes against the
documents real containerd 1.7.24 and 2.1.9 and cri-o 1.36.3 returned (test/data/),
and test/test_fakes_live.py against the live lab. What only the fake covers of
cri-o: the releases before 1.36 (CRIO says 1.29.2; createSandboxInfo is the same
from 1.23 on), the {image, pid, runtimeSpec} form of a pod with an infra
container (a shared PID namespace, or drop_infra_ctr off), the "{}" of 1.19-1.22,
and faults.

The messages are the tool's own schema (`if_inject._CRI_SCHEMA`), as protobuf's
classes; the real runtimes' labs check that schema against a real runtime.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

# The tool lives in the repository root.
import if_inject
from support.cri_schema import CONTAINER, NODE, POD, SANDBOX_NOTREADY, SANDBOX_READY, proto_messages

M: dict[str, Any] = proto_messages(if_inject._CRI_SCHEMA)

NAME_LABEL, NAMESPACE_LABEL, UID_LABEL = (
    if_inject._POD_NAME_LABEL, if_inject._POD_NAMESPACE_LABEL, if_inject._POD_UID_LABEL)
PAUSE_IMAGE = "registry.k8s.io/pause:3.9"
NS, NAME = "if-inject", "web-0"  # the pod the tests' fake runtimes run
# What the kubelet puts on every pod sandbox it asks for.
KUBELET_ANNOTATIONS = {"kubernetes.io/config.seen": "2026-11-30T12:00:00.000000000Z",
                       "kubernetes.io/config.source": "api"}


# ---- runtimes and sandboxes ---------------------------------------------


@dataclass(frozen=True)
class Runtime:
    """What a runtime says in Version, and how it answers PodSandboxStatus."""

    name: str
    version: str
    info_without_verbose: bool = False  # containerd 2.3
    not_found: str = "sandbox {id} not found"  # the NOT_FOUND text

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"


CRIO = Runtime("cri-o", "1.29.2", not_found='could not find pod "{id}": not found')
CRIO_136 = Runtime("cri-o", "1.36.3", not_found=CRIO.not_found)
CONTAINERD_16 = Runtime("containerd", "v1.6.20", not_found=(
    'an error occurred when try to find sandbox: not found'))
CONTAINERD_17 = Runtime("containerd", "v1.7.24", not_found=CONTAINERD_16.not_found)
CONTAINERD_20 = Runtime("containerd", "v2.0.0", not_found=CONTAINERD_16.not_found)
CONTAINERD_21 = Runtime("containerd", "v2.1.9", not_found=CONTAINERD_16.not_found)
CONTAINERD_23 = Runtime("containerd", "v2.3.0", info_without_verbose=True,
                        not_found=CONTAINERD_16.not_found)
CRI_DOCKERD = Runtime("docker", "24.0.7", not_found="Error: No such container: {id}")


def new_id() -> str:
    """A 64-hex sandbox ID, as every runtime makes them."""
    return uuid.uuid4().hex + uuid.uuid4().hex


@dataclass
class Sandbox:
    """One pod sandbox as the fake runtime keeps it."""

    name: str
    namespace: str = "default"
    id: str = field(default_factory=new_id)
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    attempt: int = 0
    state: int = SANDBOX_READY  # in ListPodSandbox
    status_state: int | None = None  # in PodSandboxStatus, when it differs from the list
    network: int = POD  # status.linux.namespaces.options.network
    info: dict[str, str] = field(default_factory=dict)  # PodSandboxStatus info (verbose)
    container_info: str | None = None  # ContainerStatus info["info"] (cri-dockerd)
    vanishes: bool = False  # removed right after it is listed: its status is NOT_FOUND
    ip: str = "10.88.0.7"  # status.network.ip (none for hostNetwork pods)
    pod_labels: dict[str, str] = field(default_factory=dict)  # the pod's own, beside the kubelet's
    annotations: dict[str, str] = field(default_factory=lambda: dict(KUBELET_ANNOTATIONS))

    @property
    def labels(self) -> dict[str, str]:
        return {**self.pod_labels, NAME_LABEL: self.name, NAMESPACE_LABEL: self.namespace,
                UID_LABEL: self.uid}


def pod_config(sb: Sandbox, host_network: bool = False) -> dict[str, Any]:
    """The PodSandboxConfig as Go's encoding/json writes it (snake_case, zero
    values left out, map keys sorted)."""
    namespaces = {"network": NODE, "pid": CONTAINER} if host_network else {"pid": CONTAINER}
    metadata: dict[str, Any] = {"name": sb.name, "uid": sb.uid, "namespace": sb.namespace}
    if sb.attempt:
        metadata["attempt"] = sb.attempt
    config: dict[str, Any] = {"metadata": metadata}
    if not host_network:  # the kubelet names only pods of their own network
        config["hostname"] = sb.name
    config["log_directory"] = f"/var/log/pods/{sb.namespace}_{sb.name}_{sb.uid}"
    config["labels"] = dict(sorted(sb.labels.items()))
    if sb.annotations:
        config["annotations"] = dict(sorted(sb.annotations.items()))
    config["linux"] = {"cgroup_parent": f"/kubepods/besteffort/pod{sb.uid}",
                       "security_context": {"namespace_options": namespaces}}
    return config


def oci_spec(sb: Sandbox, namespaces: list[dict[str, str]], annotations: dict[str, str],
             hostname: bool = True, masked: bool = True) -> dict[str, Any]:
    """The sandbox's OCI runtime spec, cut to the parts the runtimes always fill
    (containerd sets no hostname for a hostNetwork pod; cri-o masks no paths of
    a sandbox without an infra container)."""
    spec: dict[str, Any] = {
        "ociVersion": "1.1.0",
        "process": {"user": {"uid": 65535, "gid": 65535}, "args": ["/pause"], "cwd": "/",
                    "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "root": {"path": "rootfs", "readonly": True}}
    if hostname:
        spec["hostname"] = sb.name
    spec["annotations"] = annotations
    spec["linux"] = {"cgroupsPath": f"/kubepods/besteffort/pod{sb.uid}/{sb.id}", "namespaces": namespaces}
    if masked:
        spec["linux"]["maskedPaths"] = ["/proc/kcore", "/proc/keys"]
    return spec


def cni_result(netns: str, v2: bool = False) -> dict[str, Any]:
    """containerd's cniResult (go-cni's Result, Go field names; the node end of
    the veth is listed too, without a sandbox). go-cni in containerd 2.x adds
    PciID and SocketPath to every interface."""
    def interface(ips: list[dict[str, str]] | None, mac: str, sandbox: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"IPConfigs": ips, "Mac": mac, "Sandbox": sandbox}
        return {**entry, "PciID": "", "SocketPath": ""} if v2 else entry
    return {"Interfaces": {
                "eth0": interface([{"IP": "10.88.0.7", "Gateway": "10.88.0.1"}], "0a:58:0a:58:00:07", netns),
                "lo": interface([{"IP": "127.0.0.1", "Gateway": ""}, {"IP": "::1", "Gateway": ""}],
                                "00:00:00:00:00:00", netns),
                "veth5a3c1f07": interface(None, "e2:6b:53:7e:2f:4b", "")},
            "DNS": [{}], "Routes": None}


def with_info(sb: Sandbox, info: dict[str, Any] | str) -> Sandbox:
    """The sandbox, answering `info` (an object, or raw text) as info["info"]."""
    sb.info = {"info": info if isinstance(info, str) else json.dumps(info)}
    return sb


# ---- personalities ------------------------------------------------------


def crio_sandbox(name: str, netns: str, namespace: str = "default", infra_pid: int = 0,
                 host_network: bool = False) -> Sandbox:
    """cri-o: {"runtimeSpec"} alone without an infra container (drop_infra_ctr),
    {"image", "pid", "runtimeSpec"} with one (infra_pid > 0)."""
    sb = Sandbox(name, namespace, network=NODE if host_network else POD)
    return with_info(sb, crio_info(sb, netns, infra_pid, host_network))


def crio_info(sb: Sandbox, netns: str, infra_pid: int = 0, host_network: bool = False) -> dict[str, Any]:
    """cri-o's info["info"] for `sb`; ipc and uts are pinned under the netns file's name."""
    pin = netns.rsplit("/", 1)[-1]
    namespaces = [{"type": "pid"}, {"type": "network", "path": netns},
                  {"type": "ipc", "path": f"/var/run/ipcns/{pin}"},
                  {"type": "uts", "path": f"/var/run/utsns/{pin}"}, {"type": "mount"}]
    spec = oci_spec(sb, namespaces, {**sb.annotations, **sb.labels,
                                     "io.kubernetes.cri-o.ContainerType": "sandbox",
                                     "io.kubernetes.cri-o.HostNetwork": str(host_network).lower(),
                                     "io.kubernetes.cri-o.KubeName": sb.name,
                                     "io.kubernetes.cri-o.SandboxID": sb.id},
                    masked=bool(infra_pid))
    if infra_pid:
        return {"image": PAUSE_IMAGE, "pid": infra_pid, "runtimeSpec": spec}
    return {"runtimeSpec": spec}


def crio_stopped(sb: Sandbox) -> Sandbox:
    """A cri-o sandbox after StopPodSandbox, as 1.36.3 answers (measured in the lab):
    listed and reported NOTREADY; its IP, the info and its netns path (the file gone) stay."""
    sb.state = SANDBOX_NOTREADY
    return sb


def crio_old_spoofed_sandbox(name: str, namespace: str = "default") -> Sandbox:
    """cri-o releases before the runtimeSpec-only form: "{}" for a pod without infra container."""
    return with_info(Sandbox(name, namespace), "{}")


def containerd_info(sb: Sandbox, netns: str | None, pid: int, host_network: bool = False,
                    v2: bool = False) -> dict[str, Any]:
    """containerd's SandboxInfo; `netns` None leaves the network entry out (hostNetwork)."""
    namespaces = [{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
    if netns is not None:
        namespaces.append({"type": "network", "path": netns})
    info: dict[str, Any] = {
        "pid": pid, "processStatus": "running", "netNamespaceClosed": False,
        "image": PAUSE_IMAGE, "snapshotKey": sb.id, "snapshotter": "overlayfs",
        "runtimeHandler": "", "runtimeType": "io.containerd.runc.v2",
        "runtimeOptions": {"systemd_cgroup": True}, "config": pod_config(sb, host_network),
        "runtimeSpec": oci_spec(sb, namespaces, containerd_spec_annotations(sb, v2),
                                hostname=not host_network),
        "cniResult": None if host_network or netns is None else cni_result(netns, v2)}
    if v2:
        del info["runtimeHandler"]
        info["sandboxMetadata"] = {"Version": "v1", "Metadata": {
            "ID": sb.id, "Name": f"{sb.name}_{sb.namespace}_{sb.uid}_{sb.attempt}",
            "Config": info["config"], "NetNSPath": "" if host_network else netns or "",
            "IP": "" if host_network else "10.88.0.7", "AdditionalIPs": None,
            "RuntimeHandler": "", "CNIResult": info["cniResult"], "ProcessLabel": ""}}
    return info


def containerd_spec_annotations(sb: Sandbox, v2: bool = False) -> dict[str, str]:
    """What containerd's CRI writes on the sandbox spec (the pod's own annotations
    only when configured to pass them through)."""
    annotations = {"io.kubernetes.cri.container-type": "sandbox",
                   "io.kubernetes.cri.sandbox-id": sb.id,
                   "io.kubernetes.cri.sandbox-log-directory": pod_config(sb)["log_directory"],
                   "io.kubernetes.cri.sandbox-name": sb.name,
                   "io.kubernetes.cri.sandbox-namespace": sb.namespace,
                   "io.kubernetes.cri.sandbox-uid": sb.uid}
    if v2:
        annotations["io.kubernetes.cri.podsandbox.image-name"] = PAUSE_IMAGE
    return dict(sorted(annotations.items()))


def containerd16_sandbox(name: str, netns: str, pid: int, namespace: str = "default") -> Sandbox:
    """containerd 1.6/1.7 with a pinned netns (the path in the runtime spec)."""
    sb = Sandbox(name, namespace)
    return with_info(sb, containerd_info(sb, netns, pid))


# A runtime answering the netns by the infra process' pid. No containerd release
# does (cri-containerd pinned it from 1.0.0-alpha.0, 2017, before it had a
# verbose status; 1.6 to 2.1 pin it, as the lab shows), but the tool meets the
# path form through cri-dockerd's pid, and must take it from a spec as well.
PROC_PATH = Runtime("proc-path", "0", not_found=CONTAINERD_16.not_found)


def proc_path_sandbox(name: str, pid: int, namespace: str = "default") -> Sandbox:
    """containerd's info shape with /proc/<pid>/ns/net as the spec's netns (see PROC_PATH)."""
    sb = Sandbox(name, namespace)
    return with_info(sb, containerd_info(sb, f"/proc/{pid}/ns/net", pid))


def containerd_host_network_sandbox(name: str, pid: int, namespace: str = "default",
                                    mode: int = NODE) -> Sandbox:
    """containerd, hostNetwork pod: no network entry in the spec; `mode` as reported."""
    sb = Sandbox(name, namespace, network=mode)
    return with_info(sb, containerd_info(sb, None, pid, host_network=True))


def containerd2_sandbox(name: str, netns: str, pid: int, namespace: str = "default",
                        shim_gone: bool = False) -> Sandbox:
    """containerd 2.x: sandboxMetadata.Metadata.NetNSPath beside runtimeSpec; with
    the shim gone, runtimeSpec null and NetNSPath still set (status NOTREADY)."""
    sb = Sandbox(name, namespace)
    info = containerd_info(sb, netns, pid, v2=True)
    if shim_gone:
        sb.status_state = SANDBOX_NOTREADY
        info.update(pid=0, processStatus="deleted", image="", snapshotKey="", snapshotter="",
                    runtimeType="", runtimeOptions=None, runtimeSpec=None)
    return with_info(sb, info)


def containerd_stopped(sb: Sandbox) -> Sandbox:
    """A containerd sandbox after StopPodSandbox, as 1.6.20, 1.7.24 and 2.1.9 answer
    (measured in the lab): listed and reported NOTREADY, no IP, pid 0,
    processStatus "deleted", netNamespaceClosed true; the spec, and the netns
    path in it (the file gone), stay."""
    sb.state, sb.ip = SANDBOX_NOTREADY, ""
    info = json.loads(sb.info["info"])
    info.update(pid=0, processStatus="deleted", netNamespaceClosed=True)
    return with_info(sb, info)


def containerd23_quiet_info() -> dict[str, str]:
    """What containerd 2.3 puts in info without verbose: an all-zero SandboxInfo."""
    return {"info": json.dumps({
        "pid": 0, "processStatus": "", "netNamespaceClosed": False, "image": "", "snapshotKey": "",
        "snapshotter": "", "runtimeType": "", "runtimeOptions": None, "config": None,
        "runtimeSpec": None, "cniResult": None, "sandboxMetadata": None})}


def cri_dockerd_sandbox(name: str, pid: int, namespace: str = "default",
                        host_network: bool = False) -> Sandbox:
    """cri-dockerd: no info in PodSandboxStatus; the pause container's pid via ContainerStatus."""
    sb = Sandbox(name, namespace, network=NODE if host_network else POD)
    sb.container_info = json.dumps({"sandboxID": "", "pid": pid})
    return sb


# ---- the server -----------------------------------------------------------


Handler = Callable[[Any, grpc.ServicerContext], Any]


class FakeCRI:
    """A CRI RuntimeService on a unix socket, answering as `runtime` does.

    Faults: `abort` {method: status code} fails every call of a method;
    `delay` {method: seconds} answers late (stop() cuts the wait short);
    `raw` {method: bytes} answers these bytes, whatever they are;
    `v1alpha2_only` serves the old runtime.v1alpha2 service only, so every
    runtime.v1 method is UNIMPLEMENTED. Requests are kept in `calls`.
    """

    def __init__(self, socket_path: str | Path, runtime: Runtime, sandboxes: Iterable[Sandbox] = (),
                 abort: dict[str, grpc.StatusCode] | None = None,
                 delay: dict[str, float] | None = None, v1alpha2_only: bool = False,
                 raw: dict[str, bytes] | None = None) -> None:
        self.socket_path = str(socket_path)
        self.runtime = runtime
        self.sandboxes = list(sandboxes)
        self.abort = dict(abort or {})
        self.delay = dict(delay or {})
        self.raw = dict(raw or {})
        self.v1alpha2_only = v1alpha2_only
        self.calls: list[tuple[str, Any]] = []
        self._stopping = threading.Event()
        self._server: grpc.Server | None = None

    @property
    def endpoint(self) -> str:
        return "unix://" + self.socket_path

    def start(self) -> FakeCRI:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        service = "runtime.v1alpha2.RuntimeService" if self.v1alpha2_only else if_inject._CRI_SERVICE
        server.add_generic_rpc_handlers((self._handlers(service),))
        if not server.add_insecure_port("unix:" + self.socket_path):
            raise RuntimeError(f"cannot listen on {self.socket_path}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None
        Path(self.socket_path).unlink(missing_ok=True)

    def __enter__(self) -> FakeCRI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handlers(self, service: str) -> grpc.GenericRpcHandler:
        methods: dict[str, tuple[Handler, Any, Any]] = {
            "Version": (self.version, M["VersionRequest"], M["VersionResponse"]),
            "ListPodSandbox": (self.list_pod_sandbox, M["ListPodSandboxRequest"],
                               M["ListPodSandboxResponse"]),
            "PodSandboxStatus": (self.pod_sandbox_status, M["PodSandboxStatusRequest"],
                                 M["PodSandboxStatusResponse"]),
            "ContainerStatus": (self.container_status, M["ContainerStatusRequest"],
                                M["ContainerStatusResponse"]),
        }
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                self._faulty(name, fn), request_deserializer=request.FromString,
                response_serializer=self._serializer(response))
            for name, (fn, request, response) in methods.items()}
        return grpc.method_handlers_generic_handler(service, handlers)

    @staticmethod
    def _serializer(response: Any) -> Callable[[Any], bytes]:
        """The response class's, passing raw bytes (a `raw` fault) through."""
        return lambda r: r if isinstance(r, bytes) else bytes(response.SerializeToString(r))

    def _faulty(self, name: str, fn: Handler) -> Handler:
        """`fn` with this method's configured faults in front."""
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            self.calls.append((name, request))
            if name in self.delay:
                self._stopping.wait(self.delay[name])
            if name in self.abort:
                context.abort(self.abort[name], f"fake {self.runtime.name}: {name} failed")
            if name in self.raw:
                return self.raw[name]
            return fn(request, context)
        return handle

    # ---- RuntimeService methods ----

    def version(self, request: Any, context: grpc.ServicerContext) -> Any:
        return M["VersionResponse"](version="0.1.0", runtime_name=self.runtime.name,
                                    runtime_version=self.runtime.version, runtime_api_version="v1")

    def list_pod_sandbox(self, request: Any, context: grpc.ServicerContext) -> Any:
        flt = request.filter
        items = [sb for sb in self.sandboxes
                 if (not flt.id or sb.id.startswith(flt.id))
                 and (not flt.HasField("state") or sb.state == flt.state.state)
                 and all(sb.labels.get(k) == v for k, v in flt.label_selector.items())]
        # Removed by the kubelet right after this answer left.
        self.sandboxes = [sb for sb in self.sandboxes if not (sb.vanishes and sb in items)]
        return M["ListPodSandboxResponse"](items=[
            M["PodSandbox"](id=sb.id, metadata=self._metadata(sb), state=sb.state,
                            created_at=1_700_000_000_000_000_000, labels=sb.labels,
                            annotations=sb.annotations)
            for sb in items])

    def pod_sandbox_status(self, request: Any, context: grpc.ServicerContext) -> Any:
        sb = self._sandbox(request.pod_sandbox_id, context)
        status = M["PodSandboxStatus"](
            id=sb.id, metadata=self._metadata(sb), created_at=1_700_000_000_000_000_000,
            state=sb.state if sb.status_state is None else sb.status_state, labels=sb.labels,
            annotations=sb.annotations,
            network=M["PodSandboxNetworkStatus"](ip="" if sb.network == NODE else sb.ip))
        status.linux.namespaces.options.network = sb.network
        status.linux.namespaces.options.pid = CONTAINER
        if request.verbose:
            info = sb.info
        else:
            info = containerd23_quiet_info() if self.runtime.info_without_verbose else {}
        return M["PodSandboxStatusResponse"](status=status, info=info)

    def container_status(self, request: Any, context: grpc.ServicerContext) -> Any:
        # Only cri-dockerd answers for a sandbox ID: the sandbox is a docker container.
        sb = self._sandbox(request.container_id, context)
        if sb.container_info is None:
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f'an error occurred when try to find container "{request.container_id}"')
        info = {"info": sb.container_info} if request.verbose else {}
        return M["ContainerStatusResponse"](
            status=M["ContainerStatus"](id=sb.id), info=info)

    def _sandbox(self, sandbox_id: str, context: grpc.ServicerContext) -> Sandbox:
        for sb in self.sandboxes:
            if sb.id == sandbox_id:
                return sb
        context.abort(grpc.StatusCode.NOT_FOUND, self.runtime.not_found.format(id=sandbox_id))
        raise AssertionError("abort() raises")

    @staticmethod
    def _metadata(sb: Sandbox) -> Any:
        return M["PodSandboxMetadata"](name=sb.name, uid=sb.uid, namespace=sb.namespace,
                                       attempt=sb.attempt)


# ---- sockets that are not runtimes ----------------------------------------


# serve(runtime, sandboxes, name="", **faults): conftest's fixture, a FakeCRI started for the test.
Serve = Callable[..., FakeCRI]


def dead_socket(path: str | Path) -> str:
    """A unix socket file with nobody listening (a runtime that crashed)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()
    return str(path)


class SilentSocket:
    """A unix socket that accepts connections and never reads or answers."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.endpoint = "unix://" + self.path
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> SilentSocket:
        self._listener.bind(self.path)
        self._listener.listen(16)
        self._thread.start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed by __exit__
                return
            self._accepted.append(conn)

    def __exit__(self, *exc: object) -> None:
        # shutdown() wakes the accept() in the thread; close() alone does not.
        for sock in [self._listener, *self._accepted]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._thread.join(timeout=5)
        Path(self.path).unlink(missing_ok=True)
