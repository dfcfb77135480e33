"""Inject network interfaces into, and remove them from, running Kubernetes pods.

if-inject asks the node's container runtime (containerd, cri-o) over its CRI
socket for a pod's network namespace, then runs CNI plugins into that namespace
the way a container runtime does, with libcni's semantics: conflists, chained
prevResult, capability args, disableCheck, the result cache in
/var/lib/cni/results with cached results converted to the config's version.

The module is a small library with a command line on top:

    netns = resolve_netns("if-inject", "alpine-0")
    result = add("if-inject", "alpine-0", "ptp.json", ifname="net1")
    delete("if-inject", "alpine-0", "ptp.json", ifname="net1")

Heavy modules (grpc, protobuf, pyroute2) are imported where they are first
needed, so `if-inject -version` and `--help` stay fast.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing itself is imported below the early -version answer
if TYPE_CHECKING:
    from typing import NoReturn

__version__ = "unknown"

# The public API, as the README's "Python API" documents it; every other name is private.
__all__ = [
    "CNI", "CODE_DECODING", "CODE_INCOMPATIBLE_VERSION", "CODE_INTERNAL", "CODE_INVALID_CONFIG",
    "CODE_INVALID_ENV", "CODE_IO", "CODE_NOT_AVAILABLE", "CODE_TRY_AGAIN_LATER", "CODE_UNKNOWN_CONTAINER",
    "CODE_UNSUPPORTED_FIELD", "Attachment", "CachedAttachment", "InjectError", "Link", "NetworkConfig",
    "Node", "Pod", "Veth", "VethEnd", "__version__", "add", "add_veth", "attachments", "check", "cli",
    "delete", "delete_veth", "for_each_pod", "gc", "load_network", "main", "network_status",
    "parse_network", "parse_spec", "pod_links", "pod_network_status", "resolve_netns",
]

# ---- speed tricks: a command is a short-lived process -------------------
# Scripts call if-inject once per pod: the interpreter's start and end are a
# large part of a call. Three tricks, all here: `-version` is answered before
# anything else is imported; the cyclic GC runs rarely; the process ends
# without the interpreter's teardown once its output is flushed.


def _only_version(argv: list[str]) -> bool:
    """Whether the command line asks for the version alone."""
    return argv in (["-version"], ["--version"])


def _print_version() -> int:
    print(__version__)
    return 0


def _tune_gc() -> None:
    """Importing grpc and protobuf allocates much and frees little: at its
    default pace (every 700 allocations) the cyclic GC rescans it all, 2-4 ms
    of a call; every 100k will do."""
    import gc as cyclic_gc  # not the module's gc(), which it would shadow

    cyclic_gc.set_threshold(100_000)


def _exit_now(code: int) -> NoReturn:
    """End the command without the interpreter's teardown, which takes ~13 ms
    once grpc and protobuf are loaded (a tenth of a netns call). By now the
    work is done: plugins reaped, locks released, the channel closed; only
    the output buffers are left. Anything else still running (a thread that
    is not a daemon) gets the normal exit, which waits for it."""
    import os
    import threading

    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:  # a closed pipe (`| head`): the normal exit reports it
        others.append(threading.current_thread())
    if others:
        sys.exit(code)
    os._exit(code)


# Run as a script, `-version` is answered here, before the imports and
# definitions below: they are two thirds of its run time (argparse,
# dataclasses, re, typing). main() answers it before building its parser.
if __name__ == "__main__" and _only_version(sys.argv[1:]):
    sys.exit(_print_version())

import argparse
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn, TypeVar

_T = TypeVar("_T")


# ---- errors and logging -------------------------------------------------

# CNI error codes (CNI spec, "Error" section); 100+ are plugin specific.
CODE_INCOMPATIBLE_VERSION = 1
CODE_UNSUPPORTED_FIELD = 2
CODE_UNKNOWN_CONTAINER = 3
CODE_INVALID_ENV = 4
CODE_IO = 5
CODE_DECODING = 6
CODE_INVALID_CONFIG = 7
CODE_TRY_AGAIN_LATER = 11
CODE_NOT_AVAILABLE = 50
CODE_INTERNAL = 999


class InjectError(Exception):
    """Anything that went wrong, with a CNI error code and optional details."""

    def __init__(self, msg: str, code: int = CODE_INTERNAL, details: str = "") -> None:
        super().__init__(msg)
        self.msg = msg
        self.code = code
        self.details = details

    def __str__(self) -> str:
        return f"{self.msg}: {self.details}" if self.details else self.msg


# Verbosity of the JSON log on stderr, set by -loglevel: 0 shows info and
# errors, every step up shows more (as logr's V(n) in the original).
_log_verbosity = 0


def _log(msg: str, v: int = 0, level: str = "", **fields: Any) -> None:
    """Write one JSON log line to stderr if verbosity `v` is enabled."""
    if v > _log_verbosity:
        return
    stamp = datetime.now().astimezone().isoformat(timespec="milliseconds")
    line = {"level": level or ("info" if v == 0 else "debug"), "time": stamp, "msg": msg}
    line.update(fields)
    with suppress(OSError):  # stderr gone (a closed pipe, a hung-up terminal): go on without it
        sys.stderr.write(json.dumps(line, default=str) + "\n")


def _log_error(msg: str, error: object, **fields: Any) -> None:
    _log(msg, level="error", error=str(error), **fields)


def _undone(cause: BaseException, note: str) -> InjectError:
    """The error after a failed or interrupted change was undone: what went
    wrong, then what the undo did (e.g. "rolled back (DEL ran for ptp)")."""
    if isinstance(cause, InjectError):
        return InjectError(f"{cause}; {note}", cause.code)
    if isinstance(cause, KeyboardInterrupt) and cause.args:  # the CLI's: named after its signal
        return InjectError(f"interrupted by {cause.args[0]}; {note}", CODE_INTERNAL)
    return InjectError(f"interrupted ({type(cause).__name__}); {note}", CODE_INTERNAL)


# ---- errors and logging: signals held while a clean-up runs -------------


class _SignalGuard:
    """SIGINT, SIGTERM and SIGHUP, held in Python rather than by pthread_sigmask.

    A mask holds a signal only in the thread that set it: the kernel hands a
    process-directed signal to another thread (grpc's, the batch pool's, a
    netns thread), and CPython runs the handler in the main thread anyway.
    So the handler decides. Once the CLI has installed it, the main thread
    keeps a stack of modes: the command runs *held* (a signal is recorded)
    except in *interruptible* steps (a runtime call, waiting for a lock, the
    plugins of an ADD, a veth being set up), where the handler raises
    KeyboardInterrupt; what follows (a rollback, a clean-up, the output of
    work that is done) runs held to its end, whatever threads exist and
    however often the signal comes. A signal recorded while held
    is acted on at the next interruptible step, or by the batch loop, which
    then starts no more pods.

    Without the CLI (the library in someone's program), a held step in the
    main thread takes the signals over for its duration and delivers them to
    the program's own handlers after it; elsewhere nothing is changed.
    """

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self) -> None:
        self.installed = False
        self.received: list[int] = []  # every signal, for the batch loop and the error
        self.pending: list[int] = []  # not yet acted on by raising
        self.modes: list[bool] = []  # the main thread's: True = interruptible

    def install(self) -> None:
        """Take the signals over for the CLI (a signal ignored by our parent, as
        SIGHUP under nohup, stays ignored)."""
        import signal

        for name in self.SIGNALS:
            signum = getattr(signal, name)
            if signal.getsignal(signum) is not signal.SIG_IGN:
                signal.signal(signum, self.handle)
        self.installed, self.modes, self.received, self.pending = True, [False], [], []

    def handle(self, signum: int, frame: Any) -> None:
        self.received.append(signum)
        self.pending.append(signum)
        if self.modes and self.modes[-1]:
            self.act()

    def act(self) -> None:
        """Raise for the signals not acted on yet, named after the first of them."""
        if self.pending:
            signum = self.pending[0]
            self.pending.clear()
            raise KeyboardInterrupt(self.name(signum))

    @staticmethod
    def name(signum: int) -> str:
        import signal

        return signal.Signals(signum).name

    @contextmanager
    def mode(self, may_interrupt: bool) -> Iterator[None]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield  # the handler runs in the main thread: it never raises here
            return
        if not self.installed and not may_interrupt:
            with self._borrowed():
                yield
            return
        self.modes.append(may_interrupt)
        try:
            if may_interrupt:
                self.act()  # a signal recorded while held stops us here
            yield
        finally:
            self.modes.pop()
        if self.modes and self.modes[-1]:
            self.act()  # held inside an interruptible step (a netns thread): it stops now

    @contextmanager
    def _borrowed(self) -> Iterator[None]:
        """The library's held step: record, then hand the signals to the program's handlers."""
        import signal

        caught: list[int] = []
        previous = {}
        for name in self.SIGNALS:
            signum = getattr(signal, name)
            if signal.getsignal(signum) not in (signal.SIG_IGN, None):
                previous[signum] = signal.signal(signum, lambda n, f: caught.append(n))
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for signum in dict.fromkeys(caught):
                signal.raise_signal(signum)


_signals = _SignalGuard()


def _signals_deferred() -> AbstractContextManager[None]:
    """Hold SIGINT, SIGTERM and SIGHUP while a rollback or clean-up runs to its end."""
    return _signals.mode(may_interrupt=False)


def _interruptible() -> AbstractContextManager[None]:
    """Let SIGINT, SIGTERM and SIGHUP interrupt this step (KeyboardInterrupt),
    which is undone or changes nothing when cut short."""
    return _signals.mode(may_interrupt=True)


def _interrupted() -> str:
    """The name of the first signal that asked the CLI to stop, or ""."""
    return _signals.name(_signals.received[0]) if _signals.installed and _signals.received else ""


# ---- CRI: schema subset of k8s.io/cri-api runtime.v1 --------------------

# The messages if-inject uses, written like api.proto with its field numbers.
# No PyPI package ships working runtime.v1 stubs, so _proto_messages() builds
# the classes from this text at run time. `map` means map<string, string>.
_CRI_SCHEMA = """
enum PodSandboxState { SANDBOX_READY = 0; SANDBOX_NOTREADY = 1; }
enum NamespaceMode { POD = 0; CONTAINER = 1; NODE = 2; TARGET = 3; }
message VersionRequest { string version = 1; }
message VersionResponse {
    string version = 1; string runtime_name = 2; string runtime_version = 3;
    string runtime_api_version = 4;
}
message PodSandboxMetadata { string name = 1; string uid = 2; string namespace = 3; uint32 attempt = 4; }
message PodSandboxStateValue { PodSandboxState state = 1; }
message PodSandboxFilter { string id = 1; PodSandboxStateValue state = 2; map label_selector = 3; }
message ListPodSandboxRequest { PodSandboxFilter filter = 1; }
message PodSandbox {
    string id = 1; PodSandboxMetadata metadata = 2; PodSandboxState state = 3; int64 created_at = 4;
    map labels = 5; map annotations = 6; string runtime_handler = 7;
}
message ListPodSandboxResponse { repeated PodSandbox items = 1; }
message PodSandboxStatusRequest { string pod_sandbox_id = 1; bool verbose = 2; }
message NamespaceOption {
    NamespaceMode network = 1; NamespaceMode pid = 2; NamespaceMode ipc = 3; string target_id = 4;
}
message Namespace { NamespaceOption options = 2; }
message LinuxPodSandboxStatus { Namespace namespaces = 1; }
message PodIP { string ip = 1; }
message PodSandboxNetworkStatus { string ip = 1; repeated PodIP additional_ips = 2; }
message PodSandboxStatus {
    string id = 1; PodSandboxMetadata metadata = 2; PodSandboxState state = 3; int64 created_at = 4;
    PodSandboxNetworkStatus network = 5; LinuxPodSandboxStatus linux = 6; map labels = 7;
    map annotations = 8; string runtime_handler = 9;
}
message PodSandboxStatusResponse { PodSandboxStatus status = 1; map info = 2; int64 timestamp = 4; }
message ContainerStatusRequest { string container_id = 1; bool verbose = 2; }
message ContainerStatus { string id = 1; }
message ContainerStatusResponse { ContainerStatus status = 1; map info = 2; }
message StatusRequest { bool verbose = 1; }
message RuntimeCondition { string type = 1; bool status = 2; string reason = 3; string message = 4; }
message RuntimeStatus { repeated RuntimeCondition conditions = 1; }
message StatusResponse { RuntimeStatus status = 1; map info = 2; }
"""

_CRI_SERVICE = "runtime.v1.RuntimeService"


def _schema_enums(schema: str) -> dict[str, dict[str, int]]:
    """{enum name: {value name: number}} of the enums in a schema text."""
    return {name: {k: int(v) for k, v in re.findall(r"(\w+)\s*=\s*(\d+)", body)}
            for name, body in re.findall(r"enum\s+(\w+)\s*\{([^}]*)\}", schema)}


# The enums' numbers, read from the schema above (tests import them from here).
_CRI_ENUMS = _schema_enums(_CRI_SCHEMA)
_SANDBOX_READY = _CRI_ENUMS["PodSandboxState"]["SANDBOX_READY"]
_SANDBOX_NOTREADY = _CRI_ENUMS["PodSandboxState"]["SANDBOX_NOTREADY"]
_NAMESPACE_MODE = _CRI_ENUMS["NamespaceMode"]  # {"POD": 0, "CONTAINER": 1, "NODE": 2, "TARGET": 3}
_NAMESPACE_MODE_NAMES = {number: name for name, number in _NAMESPACE_MODE.items()}
_NODE_MODE = "NODE"  # the network mode of a hostNetwork pod

_SCALARS = {"string": 9, "bool": 8, "int32": 5, "int64": 3, "uint32": 13, "uint64": 4, "bytes": 12}


def _proto_messages(schema: str, package: str = "runtime.v1") -> dict[str, Any]:
    """Build protobuf message classes from a small subset of .proto syntax.

    Supports `enum`, `message`, scalar/enum/message fields, `repeated` and
    `map` (string to string). Returns {name: class or enum dict}. Each call
    uses a private descriptor pool, so tests can build a larger schema with
    the same names beside the tool's.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}.{id(schema)}.proto",
                                             package=package, syntax="proto3")
    enums = _schema_enums(schema)
    for name, values in enums.items():
        enum = fdp.enum_type.add(name=name)
        for key, number in values.items():
            enum.value.add(name=key, number=number)
    F = descriptor_pb2.FieldDescriptorProto
    for name, body in re.findall(r"message\s+(\w+)\s*\{([^}]*)\}", schema):
        msg = fdp.message_type.add(name=name)
        for label, ftype, fname, number in re.findall(
                r"(repeated\s+)?(\w+)\s+(\w+)\s*=\s*(\d+)", body):
            field = msg.field.add(name=fname, number=int(number), json_name=fname,
                                  label=F.LABEL_REPEATED if label else F.LABEL_OPTIONAL)
            if ftype == "map":
                entry = msg.nested_type.add(name=fname.title().replace("_", "") + "Entry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
                entry.field.add(name="value", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
                field.label = F.LABEL_REPEATED
                field.type, field.type_name = F.TYPE_MESSAGE, f".{package}.{name}.{entry.name}"
            elif ftype in _SCALARS:
                field.type = _SCALARS[ftype]  # type: ignore[assignment]
            else:
                field.type = F.TYPE_ENUM if ftype in enums else F.TYPE_MESSAGE
                field.type_name = f".{package}.{ftype}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    classes: dict[str, Any] = dict(enums)
    for msg in fdp.message_type:
        classes[msg.name] = message_factory.GetMessageClass(
            pool.FindMessageTypeByName(f"{package}.{msg.name}"))
    return classes


# ---- CRI: connection ----------------------------------------------------

# Where runtimes put their socket, in the original's order, then cri-dockerd.
_DEFAULT_ENDPOINTS = (
    "unix:///run/crio/crio.sock",
    "unix:///run/containerd/containerd.sock",
    "unix:///var/run/crio/crio.sock",
    "unix:///var/run/cri-dockerd.sock",
)


def _endpoint_candidates(endpoint: str | None = None) -> list[str]:
    """The endpoints to try: the given one, else $CONTAINER_RUNTIME_ENDPOINT, else the defaults."""
    chosen = endpoint or os.environ.get("CONTAINER_RUNTIME_ENDPOINT")
    return [chosen] if chosen else list(_DEFAULT_ENDPOINTS)


def _socket_path(endpoint: str) -> str:
    if endpoint.startswith("unix://"):
        return endpoint[len("unix://"):]
    if endpoint.startswith("unix:"):  # unix:/run/x.sock, as grpc and kubelet take it too
        return endpoint[len("unix:"):]
    if "://" in endpoint:
        raise InjectError(f"unsupported runtime endpoint {endpoint}: only unix sockets are",
                          CODE_INVALID_CONFIG)
    return endpoint


class _RuntimeClient:
    """A CRI RuntimeService client on the first endpoint that answers Version."""

    def __init__(self, endpoint: str | None = None, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.messages = _cri_classes()
        self.channel: Any = None
        failures = []
        for candidate in _endpoint_candidates(endpoint):
            try:
                self.version = self._connect(candidate)
                self.endpoint = candidate
                break
            except InjectError as e:
                _log("Runtime endpoint failed", v=1, endpoint=candidate, error=str(e))
                failures.append(f"{candidate}: {e}")
        else:
            raise InjectError("no container runtime answers: " + "; ".join(failures),
                              CODE_TRY_AGAIN_LATER)
        _log("Runtime connected", v=1, endpoint=self.endpoint,
            runtime=self.version.runtime_name, runtime_version=self.version.runtime_version)

    def _connect(self, endpoint: str) -> Any:
        import stat

        import grpc

        path = _socket_path(endpoint)
        try:
            if not stat.S_ISSOCK(os.stat(path).st_mode):
                raise InjectError("not a unix socket", CODE_INVALID_CONFIG)
        except OSError as e:
            raise InjectError(e.strerror or str(e), CODE_IO) from None
        # An own channel per client; "unix:" + absolute path is grpc's form.
        self.channel = grpc.insecure_channel("unix:" + os.path.abspath(path))
        try:
            return self.call("Version", self.messages["VersionRequest"](version="v1"))
        except InjectError:
            self.close()
            raise

    def call(self, method: str, request: Any) -> Any:
        """One unary RuntimeService call; gRPC failures become InjectError."""
        import grpc

        response_class = self.messages[method + "Response"]
        rpc = self.channel.unary_unary(f"/{_CRI_SERVICE}/{method}",
                                       request_serializer=type(request).SerializeToString,
                                       response_deserializer=response_class.FromString)
        try:
            with _interruptible():
                return rpc(request, timeout=self.timeout)
        except grpc.RpcError as e:
            # The raised object is also a grpc.Call with code() and details().
            code = e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNKNOWN
            reasons = {grpc.StatusCode.DEADLINE_EXCEEDED: f"no answer within {self.timeout:g}s",
                       grpc.StatusCode.UNIMPLEMENTED: "the runtime does not serve CRI runtime.v1"}
            reason = reasons.get(code) or (e.details() if isinstance(e, grpc.Call) else "") or str(e)
            raise InjectError(f"{method}: {code.name}: {reason}", CODE_TRY_AGAIN_LATER) from None

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def __enter__(self) -> _RuntimeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_cri_messages: dict[str, Any] = {}


def _cri_classes() -> dict[str, Any]:
    if not _cri_messages:
        _cri_messages.update(_proto_messages(_CRI_SCHEMA))
    return _cri_messages


# ---- CRI: sandbox lookup ------------------------------------------------

_POD_NAME_LABEL = "io.kubernetes.pod.name"
_POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
_POD_UID_LABEL = "io.kubernetes.pod.uid"


@dataclass
class Pod:
    """A pod as the runtime sees it: its ready sandbox and network namespace."""

    namespace: str
    name: str
    uid: str = ""
    sandbox_id: str = ""
    netns: str = ""
    network_mode: str = "POD"
    ready: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    status_ready: bool = True  # what PodSandboxStatus said, which can lag behind the list


def _list_sandboxes(client: _RuntimeClient, labels: dict[str, str] | None = None,
                   ready_only: bool = False) -> list[Any]:
    """ListPodSandbox filtered by labels (and the READY state when asked)."""
    m = client.messages
    flt = m["PodSandboxFilter"](label_selector=labels or {})
    if ready_only:
        flt.state.CopyFrom(m["PodSandboxStateValue"](state=_SANDBOX_READY))
    return list(client.call("ListPodSandbox", m["ListPodSandboxRequest"](filter=flt)).items)


def _ready_sandbox(client: _RuntimeClient, namespace: str, name: str,
                  missing_ok: bool = False) -> Any:
    """The one READY sandbox of a pod; old NOTREADY attempts are ignored."""
    labels = {_POD_NAMESPACE_LABEL: namespace, _POD_NAME_LABEL: name}
    sandboxes = _list_sandboxes(client, labels)
    ready = [s for s in sandboxes if s.state == _SANDBOX_READY]
    _log("Sandboxes", v=2, pod=f"{namespace}/{name}",
        sandboxes=[(s.id, "READY" if s.state == _SANDBOX_READY else "NOTREADY") for s in sandboxes])
    if not ready and missing_ok:
        return None
    if not ready:
        stopped = f" (only not-ready sandboxes: {', '.join(s.id for s in sandboxes)})" if sandboxes else ""
        raise InjectError(f"pod {namespace}/{name} not found on this node{stopped}",
                          CODE_UNKNOWN_CONTAINER)
    if len(ready) > 1:
        raise InjectError(f"pod {namespace}/{name} has {len(ready)} ready sandboxes: "
                          + ", ".join(s.id for s in ready), CODE_UNKNOWN_CONTAINER)
    return ready[0]


def _dig(obj: Any, *keys: str | int) -> Any:
    """obj[k1][k2]... or None when any level is missing or of the wrong type."""
    for key in keys:
        if isinstance(key, str) and isinstance(obj, dict):
            obj = obj.get(key)
        else:
            return None
    return obj


def _netns_from_info(info: dict[str, Any]) -> str:
    """The netns path in a verbose PodSandboxStatus info, as each runtime writes it."""
    namespaces = _dig(info, "runtimeSpec", "linux", "namespaces")
    for ns in namespaces if isinstance(namespaces, list) else []:
        if isinstance(ns, dict) and ns.get("type") == "network" and ns.get("path"):
            return _netns_path(ns["path"])
    # containerd 2.x keeps the path in its sandbox metadata, also when the
    # shim is gone and runtimeSpec is null.
    path = _dig(info, "sandboxMetadata", "Metadata", "NetNSPath")
    if path:
        return _netns_path(path)
    pid = info.get("pid")
    # A JSON true is an int to Python: it must not become /proc/True/ns/net.
    if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0:
        return f"/proc/{pid}/ns/net"
    raise InjectError("the runtime reports no network namespace for this sandbox", CODE_UNKNOWN_CONTAINER,
                      f"its info has {', '.join(sorted(info))}" if info else "its info is empty")


def _netns_path(value: object) -> str:
    """A path from the runtime, taken only when absolute: a relative one would
    resolve against wherever if-inject happens to run."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise InjectError(f"the runtime reports an invalid network namespace path: {value!r}",
                          CODE_DECODING)
    return value


def _docker_sandbox_info(client: _RuntimeClient, sandbox_id: str) -> str:
    """cri-dockerd answers PodSandboxStatus without any info; but a sandbox is a
    docker container there, and ContainerStatus(verbose) on its ID gives
    {"sandboxID", "pid"}: the pause process, in the pod's netns."""
    request = client.messages["ContainerStatusRequest"](container_id=sandbox_id, verbose=True)
    try:
        return str(client.call("ContainerStatus", request).info.get("info", ""))
    except InjectError as e:
        _log("No container info for the sandbox either", v=1, sandbox=sandbox_id, error=str(e))
        return ""


def _sandbox_info(client: _RuntimeClient, sandbox_id: str) -> tuple[Any, dict[str, Any]]:
    """PodSandboxStatus(verbose) as (status, parsed info["info"])."""
    m = client.messages
    response = client.call("PodSandboxStatus",
                           m["PodSandboxStatusRequest"](pod_sandbox_id=sandbox_id, verbose=True))
    raw = response.info.get("info", "") or _docker_sandbox_info(client, sandbox_id)
    _log("Sandbox info", v=4, sandbox=sandbox_id, info=raw)
    try:
        info = json.loads(raw) if raw else {}
    except (ValueError, RecursionError) as e:  # RecursionError: nested too deep
        raise InjectError(f"sandbox {sandbox_id}: runtime info is not JSON ({e})",
                          CODE_DECODING) from None
    if not isinstance(info, dict):
        raise InjectError(f"sandbox {sandbox_id}: runtime info is not a JSON object", CODE_DECODING)
    return response.status, info


def _sandbox_pod(client: _RuntimeClient, sandbox: Any, netns_required: bool = True) -> Pod:
    """A Pod from a ListPodSandbox item, with its netns read from the runtime
    (left empty when the runtime knows none and `netns_required` is false)."""
    status, info = _sandbox_info(client, sandbox.id)
    mode = _NAMESPACE_MODE_NAMES.get(status.linux.namespaces.options.network, "?")
    pod = Pod(namespace=sandbox.metadata.namespace, name=sandbox.metadata.name,
              uid=sandbox.metadata.uid, sandbox_id=sandbox.id, network_mode=mode,
              ready=sandbox.state == _SANDBOX_READY, labels=dict(sandbox.labels),
              status_ready=status.state == _SANDBOX_READY)
    if mode != _NODE_MODE:
        try:
            pod.netns = _netns_from_info(info)
        except InjectError:
            if netns_required:
                raise
    _log("Pod", v=2, namespace=pod.namespace, pod=pod.name, sandbox=pod.sandbox_id,
        netns=pod.netns, network=mode)
    return pod


def _find_pod(client: _RuntimeClient, namespace: str, name: str,
             missing_ok: bool = False) -> Pod | None:
    """The pod's ready sandbox and its network namespace, checked to be safe to change.

    With missing_ok (for a delete), a pod that is gone, or going, is None.
    """
    sandbox = _ready_sandbox(client, namespace, name, missing_ok)
    if sandbox is None:
        return None
    try:
        pod = _sandbox_pod(client, sandbox)
        # Listed ready, but its own status says not (containerd 2.x once the
        # shim is gone): a dying sandbox, never a target.
        pod.ready = pod.ready and pod.status_ready
        if not pod.ready:
            raise InjectError(f"pod {namespace}/{name} not found on this node (sandbox "
                              f"{sandbox.id} is no longer ready)", CODE_UNKNOWN_CONTAINER)
        if pod.network_mode == _NODE_MODE:
            raise InjectError(f"pod {namespace}/{name} uses the node's network (hostNetwork): "
                              "refusing to change the node", CODE_INVALID_CONFIG)
        _check_netns(pod.netns)
    except InjectError as e:
        # Stopped or removed since the list (PodSandboxStatus NOT_FOUND, the
        # netns gone): for a delete, that is a pod that is gone, as if unlisted.
        if missing_ok and (e.code == CODE_UNKNOWN_CONTAINER
                           or _ready_sandbox(client, namespace, name, missing_ok=True) is None):
            return None
        raise
    return pod


# Kubernetes label syntax: an optional DNS-subdomain prefix and "/", then a
# name of up to 63 characters; a value is empty or name-like.
_LABEL_NAME = r"(?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_LABEL_PREFIX = r"(?=.{1,253}/)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/"
_LABEL_KEY = re.compile(f"^({_LABEL_PREFIX})?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(f"^({_LABEL_NAME})?$")


def _parse_selector(text: str) -> dict[str, str]:
    """A kubectl label selector of equality terms, `app=alpine,tier==web`, as
    {key: value}; "" selects everything. Set-based terms (in, notin, !=,
    bare keys) are refused: the CRI filters on equality only."""
    labels: dict[str, str] = {}
    for term in (t.strip() for t in text.split(",")):
        if not term and not text.strip():
            continue
        match = re.fullmatch(r"([^=!\s]+)\s*==?\s*([^=!\s]*)", term)
        if not match:
            raise InjectError(f"unsupported label selector term {term!r} in {text!r}: only "
                              "key=value and key==value, joined by ','", CODE_INVALID_CONFIG)
        key, value = match.groups()
        if not _LABEL_KEY.match(key):
            raise InjectError(f"invalid label key {key!r} in selector {text!r}", CODE_INVALID_CONFIG)
        if not _LABEL_VALUE.match(value):
            raise InjectError(f"invalid label value {value!r} in selector {text!r}", CODE_INVALID_CONFIG)
        if labels.setdefault(key, value) != value:
            raise InjectError(f"label selector {text!r} wants {key} to be both "
                              f"{labels[key]!r} and {value!r}", CODE_INVALID_CONFIG)
    return labels


def _list_pods(client: _RuntimeClient, namespace: str | None = None,
              selector: dict[str, str] | None = None) -> list[Pod]:
    """Every pod sandbox on this node, READY and NOTREADY, in `namespace`
    (every one when None) and with the labels in `selector`. A netns that is
    gone (stopped sandboxes) shows as ""; a sandbox removed while we look is
    left out."""
    labels = dict(selector or {})
    if namespace is not None and labels.setdefault(_POD_NAMESPACE_LABEL, namespace) != namespace:
        return []
    pods = []
    for sandbox in _list_sandboxes(client, labels):
        try:
            pod = _sandbox_pod(client, sandbox, netns_required=False)
        except InjectError as e:
            _log("Skipping sandbox", v=1, sandbox=sandbox.id, error=str(e))
            continue
        if pod.netns and not os.path.exists(pod.netns):
            pod.netns = ""
        pods.append(pod)
    return sorted(pods, key=lambda p: (p.namespace, p.name, not p.ready))


# ---- netns checks -------------------------------------------------------

_NS_GET_NSTYPE = 0xB703  # ioctl on an nsfs file: which kind of namespace
_CLONE_NEWNET = 0x40000000


def _node_netns_ids() -> set[tuple[int, int]]:
    """(st_dev, st_ino) of the node's netns: PID 1's where readable, and our own."""
    ids = set()
    for path in ("/proc/1/ns/net", "/proc/self/ns/net"):
        try:
            st = os.stat(path)
            ids.add((st.st_dev, st.st_ino))
        except OSError:
            pass  # /proc/1 is EACCES on some VMs, our own is then enough
    return ids


def _check_netns(path: str) -> None:
    """Refuse anything that is not a network namespace, or that is the node's own."""
    import fcntl

    if not path:
        raise InjectError("no network namespace path", CODE_INVALID_ENV)
    try:
        # O_NONBLOCK: opening a FIFO (or a device) must not hang us.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        raise InjectError(f"network namespace {path}: {e.strerror}", CODE_UNKNOWN_CONTAINER) from None
    try:
        st = os.fstat(fd)
        try:
            kind = fcntl.ioctl(fd, _NS_GET_NSTYPE)
        except OSError:
            kind = 0  # ENOTTY: not an nsfs file at all
    finally:
        os.close(fd)
    if kind != _CLONE_NEWNET:
        raise InjectError(f"{path} is not a network namespace", CODE_INVALID_ENV)
    if (st.st_dev, st.st_ino) in _node_netns_ids():
        raise InjectError(f"{path} is the node's own network namespace: refusing to change the node",
                          CODE_INVALID_ENV)


# ---- CNI: config --------------------------------------------------------

_CNI_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
_DEFAULT_CNI_PATH = ("/opt/cni/bin", "/usr/libexec/cni", "/usr/lib/cni")
# libcni's cacheDir: results in its results/, our locks in its if-inject-locks/.
_DEFAULT_CACHE_DIR = "/var/lib/cni"
# The CNI spec's rules for container IDs and network names.
_NAME_PATTERN = r"^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$"


@dataclass
class NetworkConfig:
    """A network as a conflist; a single plugin conf becomes a list of one."""

    name: str
    cni_version: str
    plugins: list[dict[str, Any]]
    raw: bytes  # the file's bytes, cached as libcni does
    # The Multus NetworkAttachmentDefinition it came from, if any: its
    # namespace ("" when the document names none) and name.
    nad_namespace: str = ""
    nad_name: str = ""
    disable_check: bool = False  # a conflist's "disableCheck": CHECK then runs no plugin

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.cni_version.split("."))

    def status_name(self, pod_namespace: str) -> str:
        """The network's name in a pod's network-status, as Multus writes it:
        <namespace>/<name> of its NetworkAttachmentDefinition (the pod's
        namespace when the definition names none), else the network's name."""
        if not self.nad_name:
            return self.name
        namespace = self.nad_namespace or pod_namespace
        return f"{namespace}/{self.nad_name}" if namespace else self.nad_name


# Multus' NetworkAttachmentDefinition (network-attachment-definition-client,
# pkg/apis/k8s.cni.cncf.io/v1): the CNI config is a JSON string in .spec.config.
_NAD_API_VERSION = "k8s.cni.cncf.io/v1"
_NAD_KIND = "NetworkAttachmentDefinition"
# Kubernetes object names: a DNS-1123 subdomain; namespaces: a DNS-1123 label.
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_OBJECT_NAME = re.compile(rf"^(?=.{{1,253}}$){_DNS_LABEL}(\.{_DNS_LABEL})*$")
_NAMESPACE = re.compile(rf"^(?=.{{1,63}}$){_DNS_LABEL}$")


def load_network(path: str) -> NetworkConfig:
    """Read a network spec (see parse_spec) from a file, or from stdin when `path` is "-"."""
    if path == "-":
        return parse_spec(_read_stdin(), "stdin")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise InjectError(f"spec {path}: {e.strerror}", CODE_IO) from None
    return parse_spec(raw, path)


def _read_stdin() -> bytes:
    if sys.stdin is None:
        raise InjectError("spec -: there is no standard input", CODE_IO)
    if sys.stdin.isatty():  # a pipe is what `-spec -` is for; a terminal would just wait
        raise InjectError("spec -: standard input is a terminal: pipe the spec in", CODE_INVALID_CONFIG)
    try:
        return sys.stdin.buffer.read()
    except OSError as e:
        raise InjectError(f"spec -: {e.strerror or e}", CODE_IO) from None


def parse_spec(raw: bytes, source: str = "spec") -> NetworkConfig:
    """A network spec as users give it: a plugin conf or conflist (JSON), or a
    Multus NetworkAttachmentDefinition (JSON or YAML, as `kubectl get
    net-attach-def NAME -o json|yaml` prints it or a manifest holds it) whose
    .spec.config is one."""
    if not raw.strip():
        raise InjectError(f"{source}: empty", CODE_INVALID_CONFIG)
    document = _decode_spec(raw, source)
    if _is_kubernetes_object(document):
        return _nad_network(document, source)
    return _network_from_conf(document, raw, source)


def _is_kubernetes_object(document: Any) -> bool:
    return isinstance(document, dict) and ("kind" in document or "apiVersion" in document)


def _decode_spec(raw: bytes, source: str) -> Any:
    """JSON, else a Kubernetes object in YAML. YAML's parser is imported only
    for what is not JSON; JSON-looking text keeps its JSON error."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as e:  # RecursionError: nested too deep
        json_error = InjectError(f"{source}: not JSON ({e})", CODE_DECODING)
    import yaml

    try:
        documents = [d for d in yaml.load_all(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
                     if d is not None]
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        if raw.lstrip()[:1] in (b"{", b"["):
            raise json_error from None
        raise InjectError(f"{source}: neither JSON nor YAML ({_yaml_problem(e)})", CODE_DECODING) from None
    if len(documents) == 1 and _is_kubernetes_object(documents[0]):
        return documents[0]
    if raw.lstrip()[:1] in (b"{", b"["):
        raise json_error
    if len(documents) != 1:
        raise InjectError(f"{source}: {len(documents)} YAML documents: give one {_NAD_KIND}",
                          CODE_INVALID_CONFIG)
    found = type(documents[0]).__name__
    found = {"dict": "mapping without apiVersion and kind", "str": "string"}.get(found, found)
    raise InjectError(f"{source}: not JSON, and as YAML a {found}, not a {_NAD_KIND}", CODE_INVALID_CONFIG)


def _yaml_problem(error: Exception) -> str:
    """A YAML parser error on one line: the problem and where it is."""
    problem = getattr(error, "problem", None)
    mark = getattr(error, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(error).split())


def _nad_network(document: dict[str, Any], source: str) -> NetworkConfig:
    """The network in a NetworkAttachmentDefinition's .spec.config; a config
    without a name is given the definition's, as Multus does (GetCNIConfigFromSpec)."""
    kind, api_version = document.get("kind"), document.get("apiVersion")
    if (kind, api_version) != (_NAD_KIND, _NAD_API_VERSION):
        found = (f"kind {kind}" if kind else "no kind") + " and " + \
                (f"apiVersion {api_version}" if api_version else "no apiVersion")
        raise InjectError(f"{source}: a document of {found}, not a {_NAD_KIND} of {_NAD_API_VERSION}",
                          CODE_INVALID_CONFIG)
    name, namespace = _dig(document, "metadata", "name"), _dig(document, "metadata", "namespace") or ""
    if not isinstance(name, str) or not _OBJECT_NAME.match(name):
        raise InjectError(f"{source}: {_NAD_KIND} with an invalid metadata.name {name!r}",
                          CODE_INVALID_CONFIG)
    if not isinstance(namespace, str) or (namespace and not _NAMESPACE.match(namespace)):
        raise InjectError(f"{source}: {_NAD_KIND} {name} with an invalid metadata.namespace {namespace!r}",
                          CODE_INVALID_CONFIG)
    what = f"{source}: {_NAD_KIND} {namespace}/{name}" if namespace else f"{source}: {_NAD_KIND} {name}"
    config = _dig(document, "spec", "config")
    if config is None or config == "":
        raise InjectError(f"{what} has no spec.config (Multus then reads the network from a file "
                          "on the node: give that file as -spec)", CODE_INVALID_CONFIG)
    if not isinstance(config, str):
        raise InjectError(f"{what}: spec.config is a {type(config).__name__}, not a string of JSON",
                          CODE_INVALID_CONFIG)
    try:
        conf = json.loads(config)
    except (ValueError, RecursionError) as e:
        raise InjectError(f"{what}: spec.config is not JSON ({e})", CODE_DECODING) from None
    raw = config.encode()
    if isinstance(conf, dict) and conf.get("name", "") == "":
        conf["name"] = name
        raw = json.dumps(conf).encode()
    network = _network_from_conf(conf, raw, f"{what}: spec.config")
    network.nad_namespace, network.nad_name = namespace, name
    return network


def parse_network(raw: bytes, source: str = "spec") -> NetworkConfig:
    """Validate a conf or conflist as libcni does, before any plugin runs."""
    if not raw.strip():
        raise InjectError(f"{source}: empty", CODE_INVALID_CONFIG)
    try:
        conf = json.loads(raw)
    except ValueError as e:
        raise InjectError(f"{source}: not JSON ({e})", CODE_DECODING) from None
    return _network_from_conf(conf, raw, source)


def _network_from_conf(conf: Any, raw: bytes, source: str) -> NetworkConfig:
    def bad(why: str) -> InjectError:
        return InjectError(f"{source}: {why}", CODE_INVALID_CONFIG)
    if not isinstance(conf, dict):
        raise bad("not a JSON object")
    disable_check = False  # libcni reads it from a conflist only, and ignores it in a conf
    if "plugins" in conf:
        plugins = conf["plugins"]
        if not isinstance(plugins, list) or not plugins:
            raise bad("'plugins' must be a non-empty list")
        disable_check = conf.get("disableCheck", False)
        if not isinstance(disable_check, bool):
            raise bad("'disableCheck' must be true or false")
    elif "type" in conf:
        plugins = [conf]
    else:
        raise bad("neither a plugin conf (no 'type') nor a conflist (no 'plugins')")
    name, version = conf.get("name"), conf.get("cniVersion")
    if not isinstance(name, str) or not re.match(_NAME_PATTERN, name):
        raise bad(f"invalid network name {name!r}")
    if version not in _CNI_VERSIONS:
        raise InjectError(f"{source}: unknown cniVersion {version!r} (known: "
                          f"{', '.join(_CNI_VERSIONS)})", CODE_INCOMPATIBLE_VERSION)
    for plugin in plugins:
        plugin_type = plugin.get("type") if isinstance(plugin, dict) else None
        if not isinstance(plugin_type, str) or not plugin_type:
            raise bad("every plugin needs a 'type'")
        if "/" in plugin_type or plugin_type in (".", ".."):
            raise bad(f"plugin type {plugin_type!r} must be a plain file name")
    return NetworkConfig(name, version, plugins, raw, disable_check=disable_check)


# ---- CNI: plugin execution ----------------------------------------------


@dataclass
class Attachment:
    """One interface of one container, as libcni's RuntimeConf."""

    container_id: str
    netns: str
    ifname: str = "net1"
    args: list[tuple[str, str]] = field(default_factory=list)
    capability_args: dict[str, Any] = field(default_factory=dict)
    pod: Pod | None = None  # recorded in the cache, to find the attachment later

    def __post_init__(self) -> None:
        _validate_attachment(self)  # once, where the CNI layer's input enters


def _validate_container_id(container_id: str) -> None:
    """The CNI spec's rule for container IDs."""
    if not re.match(_NAME_PATTERN, container_id):
        raise InjectError(f"invalid container ID {container_id!r}", CODE_INVALID_ENV)


def _validate_ifname(name: str) -> None:
    """The CNI spec's rules for interface names (the kernel's: 15 bytes, no '/', ':' or space)."""
    if not 0 < len(name.encode()) <= 15 or name in (".", "..") \
            or any(c in name for c in "/:") or any(c.isspace() for c in name):
        raise InjectError(f"invalid interface name {name!r}: 1-15 bytes, not . or .., "
                          "no '/', ':' or whitespace", CODE_INVALID_ENV)


def _validate_attachment(att: Attachment) -> None:
    """The CNI spec's rules for container IDs and interface names."""
    _validate_container_id(att.container_id)
    _validate_ifname(att.ifname)


def _parse_cni_args(text: str) -> list[tuple[str, str]]:
    """'K=V;K=V' as in CNI_ARGS."""
    pairs = []
    for item in filter(None, text.split(";")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InjectError(f"invalid CNI args {text!r}: expected K=V;K=V", CODE_INVALID_ENV)
        pairs.append((key, value))
    return pairs


def _plugin_stdin(network: NetworkConfig, plugin: dict[str, Any], att: Attachment,
                 prev_result: dict[str, Any] | None) -> bytes:
    """A plugin's own config as libcni builds it from the list."""
    conf = dict(plugin, name=network.name, cniVersion=network.cni_version)
    capabilities = plugin.get("capabilities")
    if isinstance(capabilities, dict):
        runtime_config = {k: v for k, v in att.capability_args.items() if capabilities.get(k)}
        if runtime_config:
            conf["runtimeConfig"] = runtime_config
    if prev_result is not None:
        conf["prevResult"] = prev_result
    return json.dumps(conf).encode()


def _find_plugin(plugin_type: str, search_path: list[str]) -> str:
    for directory in search_path:
        path = os.path.join(directory, plugin_type)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise InjectError(f"plugin {plugin_type!r} not found in CNI path {':'.join(search_path)}",
                      CODE_NOT_AVAILABLE)


def _plugin_env(command: str, att: Attachment, search_path: list[str]) -> dict[str, str]:
    # Plugins are the node's programs: they get the environment we were started
    # with, not what the one-file executable's bootloader (PyInstaller) sets for
    # itself: its _PYI_* variables, and its library dir prepended to
    # LD_LIBRARY_PATH (the user's value, if any, saved in LD_LIBRARY_PATH_ORIG).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("_PYI_", "_MEIPASS"))}
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle and "LD_LIBRARY_PATH_ORIG" in env:
        env["LD_LIBRARY_PATH"] = env.pop("LD_LIBRARY_PATH_ORIG")
    elif bundle and "LD_LIBRARY_PATH" in env:
        user = [p for p in env["LD_LIBRARY_PATH"].split(":") if os.path.realpath(p or ".") != bundle]
        if any(user):
            env["LD_LIBRARY_PATH"] = ":".join(user)
        else:
            del env["LD_LIBRARY_PATH"]
    env.update(CNI_COMMAND=command, CNI_CONTAINERID=att.container_id, CNI_NETNS=att.netns,
               CNI_IFNAME=att.ifname, CNI_PATH=":".join(search_path),
               CNI_ARGS=";".join(f"{k}={v}" for k, v in att.args))
    return env


def _exec_plugin(path: str, env: dict[str, str], stdin: bytes, timeout: float) -> bytes:
    """Run a plugin; return its stdout or raise with its CNI error."""
    import signal
    import subprocess

    name = os.path.basename(path)
    # Its own session: a Ctrl-C on the terminal reaches us, and we decide
    # what happens to the plugin (killed, then rolled back).
    proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except BaseException as e:
        with suppress(ProcessLookupError):  # it may have ended on its own meanwhile
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        if isinstance(e, subprocess.TimeoutExpired):
            raise InjectError(f"plugin {name} did not finish within {timeout:g}s: killed",
                              CODE_TRY_AGAIN_LATER) from None
        raise
    if proc.returncode != 0:
        raise _plugin_error(name, proc.returncode, out, err)
    return out


def _plugin_error(name: str, returncode: int, out: bytes, err: bytes) -> InjectError:
    """The CNI error a failed plugin printed, or its stderr when it printed none."""
    try:
        error = json.loads(out)
    except ValueError:
        error = None
    if isinstance(error, dict) and ("code" in error or "msg" in error):
        code = error["code"] if isinstance(error.get("code"), int) else CODE_INTERNAL
        return InjectError(f"plugin {name} failed (code {code}): {error.get('msg', '')}",
                           code, str(error.get("details", "")))
    text = (err or out).decode(errors="replace").strip().splitlines()
    why = text[-1] if text else "no output"
    signal_note = f"killed by signal {-returncode}" if returncode < 0 else f"exit {returncode}"
    return InjectError(f"plugin {name} failed ({signal_note}): {why}", CODE_INTERNAL)


# ---- CNI: result cache --------------------------------------------------

# libcni's cache format, plus an "ifInject" key (libcni ignores unknown keys)
# that tells our own entries from containerd's or Multus' in the same dir.
_CACHE_KIND = "cniCacheV1"
_CACHE_MARK = "ifInject"


def _results_dir(cache_dir: str) -> str:
    """Where libcni keeps its cached results under its cacheDir."""
    return os.path.join(cache_dir, "results")


def _cache_file(cache_dir: str, network: str, container_id: str, ifname: str) -> str:
    return os.path.join(_results_dir(cache_dir), f"{network}-{container_id}-{ifname}")


def _go_map(value: Any) -> Any:
    """`value` with its objects' keys sorted, as Go's encoding/json writes a map."""
    if isinstance(value, dict):
        return {k: _go_map(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_go_map(v) for v in value]
    return value


def _cache_entry(network: NetworkConfig, att: Attachment, result: dict[str, Any] | None) -> dict[str, Any]:
    """The cache entry, key for key as libcni's cachedInfo: netns as libcni 1.2+
    writes it, cniArgs, capabilityArgs and result left out when empty."""
    import base64

    entry: dict[str, Any] = {
        "kind": _CACHE_KIND, "containerId": att.container_id,
        "config": base64.b64encode(network.raw).decode(), "ifName": att.ifname,
        "networkName": network.name,
    }
    if att.netns:
        entry["netns"] = att.netns
    if att.args:
        entry["cniArgs"] = [list(kv) for kv in att.args]
    if att.capability_args:
        entry["capabilityArgs"] = _go_map(att.capability_args)
    if result:
        entry["result"] = _go_map(result)
    pod = att.pod
    entry[_CACHE_MARK] = {"version": __version__, "namespace": pod.namespace if pod else "",
                         "pod": pod.name if pod else "", "podUid": pod.uid if pod else "",
                         "sandboxId": pod.sandbox_id if pod else ""}
    if network.nad_name:  # the network-status name, for list and gc
        entry[_CACHE_MARK]["netAttachDef"] = network.status_name(pod.namespace if pod else "")
    return entry


def _write_cache(cache_dir: str, network: NetworkConfig, att: Attachment,
                result: dict[str, Any] | None) -> None:
    """Write the cache entry atomically (0600 in a 0700 dir), as libcni does."""
    path = _cache_file(cache_dir, network.name, att.container_id, att.ifname)
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        for directory in (cache_dir, _results_dir(cache_dir)):  # MkdirAll(results, 0700)
            os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(_cache_entry(network, att, result), f, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError as e:
        with suppress(OSError):  # a full disk: no half-written file stays behind
            os.unlink(tmp)
        raise InjectError(f"result cache {cache_dir}: {e.strerror}", CODE_IO) from None


def _read_cache(path: str) -> dict[str, Any] | None:
    """A cache entry, or None when missing, empty or corrupt (never blocks a DEL)."""
    try:
        with open(path, "rb") as f:
            entry = json.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        _log("Ignoring unreadable cache entry", path=path, error=str(e))
        return None
    if not isinstance(entry, dict) or entry.get("kind") != _CACHE_KIND:
        _log("Ignoring cache entry of unknown kind", path=path)
        return None
    return entry


def _remove_cache(cache_dir: str, network: str, container_id: str, ifname: str) -> None:
    try:
        os.unlink(_cache_file(cache_dir, network, container_id, ifname))
    except FileNotFoundError:
        pass
    except OSError as e:
        raise InjectError(f"result cache {cache_dir}: {e.strerror}", CODE_IO) from None


@dataclass
class CachedAttachment:
    """One attachment if-inject made, as its cache entry records it: what
    list, gc and cache-only del share. `sandbox_state` and `stale` are the
    runtime's view, filled in by attachments()."""

    path: str
    namespace: str
    pod: str
    pod_uid: str
    sandbox_id: str
    net_attach_def: str
    interface: str
    network: str
    container_id: str
    netns: str
    config: str  # the network config, base64 as libcni caches it
    cni_args: list[tuple[str, str]]
    capability_args: dict[str, Any]
    result: dict[str, Any] | None  # None while an ADD is under way (or was killed)
    sandbox_state: str = ""  # ready, notready, gone
    stale: bool = False

    @classmethod
    def from_entry(cls, path: str, entry: dict[str, Any]) -> CachedAttachment:
        mark = entry[_CACHE_MARK]
        result, capability_args = entry.get("result"), entry.get("capabilityArgs")
        return cls(path=path, namespace=str(mark.get("namespace", "")), pod=str(mark.get("pod", "")),
                   pod_uid=str(mark.get("podUid", "")), sandbox_id=str(mark.get("sandboxId", "")),
                   net_attach_def=str(mark.get("netAttachDef", "")), interface=str(entry.get("ifName", "")),
                   network=str(entry.get("networkName", "")), container_id=str(entry.get("containerId", "")),
                   netns=str(entry.get("netns") or ""), config=str(entry.get("config", "")),
                   cni_args=[(str(kv[0]), str(kv[1])) for kv in entry.get("cniArgs") or [] if len(kv) == 2],
                   capability_args=capability_args if isinstance(capability_args, dict) else {},
                   result=result if isinstance(result, dict) else None)

    @property
    def addresses(self) -> list[str]:
        return _result_addresses(self.result)

    def network_config(self) -> NetworkConfig:
        """The network config the entry was made with."""
        import base64

        try:
            raw = base64.b64decode(self.config, validate=True)
        except ValueError:
            raise InjectError("cache entry has no valid config", CODE_DECODING) from None
        return parse_network(raw, "cached config")

    def attachment(self) -> Attachment:
        """The Attachment the entry records; a netns that is gone becomes ''."""
        netns = self.netns
        # A /proc/<pid> path may belong to another process by now, and a netns
        # that was unmounted is gone: DEL then runs without one, as the spec allows.
        if netns.startswith("/proc/") or not os.path.exists(netns):
            netns = ""
        pod = Pod(namespace=self.namespace, name=self.pod, uid=self.pod_uid, sandbox_id=self.sandbox_id,
                  netns=netns)
        return Attachment(container_id=self.container_id, netns=netns, ifname=self.interface,
                          args=list(self.cni_args), capability_args=dict(self.capability_args), pod=pod)

    def json(self) -> dict[str, Any]:
        """What `list -o json` prints."""
        return {"namespace": self.namespace, "pod": self.pod, "interface": self.interface,
                "network": self.network, "netAttachDef": self.net_attach_def, "addresses": self.addresses,
                "containerId": self.container_id, "netns": self.netns, "sandboxId": self.sandbox_id,
                "sandboxState": self.sandbox_state, "stale": self.stale, "cacheFile": self.path}


def _cached_attachments(cache_dir: str) -> list[CachedAttachment]:
    """Every readable entry that if-inject wrote, by file name."""
    results = _results_dir(cache_dir)
    try:
        names = sorted(os.listdir(results))
    except FileNotFoundError:
        return []
    except OSError as e:
        raise InjectError(f"result cache {results}: {e.strerror}", CODE_IO) from None
    found = []
    for name in names:
        path = os.path.join(results, name)
        if ".tmp" in name or not os.path.isfile(path):
            continue
        entry = _read_cache(path)
        if entry and isinstance(entry.get(_CACHE_MARK), dict):
            found.append(CachedAttachment.from_entry(path, entry))
    return found


# The result types of libcni's pkg/types (020, 040, 100) and the versions each
# reads; 1.1.0 is read as 1.0.0 is, as libcni does from 1.2.
_RESULT_TYPES = {"0.1.0": "020", "0.2.0": "020", "0.3.0": "040", "0.3.1": "040", "0.4.0": "040",
                "1.0.0": "100", "1.1.0": "100"}


def _convert_result(result: dict[str, Any], version: str) -> dict[str, Any]:
    """`result` as CNI `version`, as libcni's GetAsVersion converts a cached
    result to the config's version before it is any plugin's prevResult."""
    source = result.get("cniVersion") or "0.1.0"  # libcni's reading of a missing version
    if source == version and "cniVersion" in result and "dns" in result:
        return result
    if _RESULT_TYPES.get(source) is None or _RESULT_TYPES.get(version) is None:
        raise InjectError(f"cannot convert a CNI {source} result to {version}: no such result version",
                          CODE_INCOMPATIBLE_VERSION)
    if source == version or _RESULT_TYPES[source] == _RESULT_TYPES[version] != "040":
        # Relabelled, as 0.1.0 and 0.2.0 are, and 1.0.0 and 1.1.0; libcni's types always have dns.
        return {**result, "cniVersion": version, "dns": result.get("dns") or {}}
    try:
        return _result_from_040(_result_to_040(result, _RESULT_TYPES[source]), version)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise InjectError(f"cannot convert a CNI {source} result to {version}: {e}",
                          CODE_INCOMPATIBLE_VERSION) from None


def _interface_040(interface: dict[str, Any]) -> dict[str, Any]:
    """An interface as libcni's 040 and 100 types carry it across versions."""
    out = {"name": str(interface.get("name", ""))}
    out.update((k, interface[k]) for k in ("mac", "sandbox") if interface.get(k))
    return out


def _ip_040(ip: dict[str, Any], version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"version": version}
    if ip.get("interface") is not None:
        out["interface"] = ip["interface"]
    out["address"] = ip["address"]
    if ip.get("gateway"):
        out["gateway"] = ip["gateway"]
    return out


def _address_family(cidr: str) -> str:
    import ipaddress

    ip = ipaddress.ip_interface(cidr).ip
    return "4" if ip.version == 4 or getattr(ip, "ipv4_mapped", None) else "6"


def _result_to_040(result: dict[str, Any], kind: str) -> dict[str, Any]:
    """Any result as libcni's 0.4.0 type holds it: ips with their IP version."""
    out: dict[str, Any] = {"interfaces": [], "ips": [], "routes": [], "dns": dict(result.get("dns") or {})}
    if kind == "020":
        for family, key in (("4", "ip4"), ("6", "ip6")):
            if result.get(key):
                ip = result[key]
                out["ips"].append(_ip_040({"address": ip["ip"], "gateway": ip.get("gateway")}, family))
                out["routes"] += [dict(r) for r in ip.get("routes") or []]
        return out
    out["interfaces"] = [_interface_040(i) if kind == "100" else dict(i)
                         for i in result.get("interfaces") or []]
    out["ips"] = [_ip_040(ip, _address_family(ip["address"]) if kind == "100" else ip.get("version", ""))
                  for ip in result.get("ips") or []]
    out["routes"] = [dict(r) for r in result.get("routes") or []]
    return out


def _result_from_040(r040: dict[str, Any], version: str) -> dict[str, Any]:
    """A result held as 0.4.0 written as `version`; empty lists are left out."""
    if _RESULT_TYPES[version] == "020":
        return _result_020(r040, version)
    ips = r040["ips"]
    if _RESULT_TYPES[version] == "100":
        ips = [{k: v for k, v in ip.items() if k != "version"} for ip in ips]
    interfaces = [_interface_040(i) for i in r040["interfaces"]] if _RESULT_TYPES[version] == "100" \
        else r040["interfaces"]
    out: dict[str, Any] = {"cniVersion": version}
    for key, value in (("interfaces", interfaces), ("ips", ips), ("routes", r040["routes"])):
        if value:
            out[key] = value
    out["dns"] = r040["dns"]
    return out


def _result_020(r040: dict[str, Any], version: str) -> dict[str, Any]:
    """0.1.0 and 0.2.0 hold one address per IP version; routes go with their family."""
    out: dict[str, Any] = {"cniVersion": version}
    for ip in r040["ips"]:
        key = {"4": "ip4", "6": "ip6"}.get(ip.get("version", ""))
        if key and key not in out:
            out[key] = {"ip": ip["address"], **({"gateway": ip["gateway"]} if ip.get("gateway") else {})}
    if "ip4" not in out and "ip6" not in out:
        raise ValueError("no valid IP addresses")
    for route in r040["routes"]:
        key = "ip4" if _address_family(route["dst"]) == "4" else "ip6"
        if key in out:
            kept = {k: route[k] for k in ("dst", "gw") if route.get(k)}
            out[key].setdefault("routes", []).append(kept)
    out["dns"] = r040["dns"]
    return out


class _attachment_lock:
    """An exclusive flock per container and interface, so that two if-injects
    never work on the same attachment at once. The lock file is removed after
    use; a waiter that got the lock on a removed file tries again."""

    def __init__(self, cache_dir: str, container_id: str, ifname: str, timeout: float) -> None:
        lock_dir = os.path.join(cache_dir, "if-inject-locks")
        self.path = os.path.join(lock_dir, f"{container_id}-{ifname}.lock")
        self.timeout = timeout
        self.fd = -1

    def __enter__(self) -> _attachment_lock:
        import fcntl

        deadline = time.monotonic() + self.timeout
        try:
            while True:
                try:
                    fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                except FileNotFoundError:  # no lock dir, or its last user removed it
                    os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    if time.monotonic() > deadline:
                        raise InjectError(f"another if-inject works on {self.path}: "
                                          "gave up waiting", CODE_TRY_AGAIN_LATER) from None
                    with _interruptible():
                        time.sleep(0.05)
                    continue
                if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    self.fd = fd
                    return self
                os.close(fd)  # removed by the previous holder: take the new file
        except OSError as e:
            raise InjectError(f"lock {self.path}: {e.strerror}", CODE_IO) from None

    def __exit__(self, *exc: object) -> None:
        with suppress(OSError):
            os.unlink(self.path)
        os.close(self.fd)
        with suppress(OSError):  # fails while another holder's lock is in it
            os.rmdir(os.path.dirname(self.path))


# ---- CNI: add, del, check -----------------------------------------------


@dataclass
class CNI:
    """How plugins are found and run, as libcni's CNIConfig; knows nothing of pods."""

    path: list[str] = field(default_factory=lambda: list(_DEFAULT_CNI_PATH))
    cache_dir: str = _DEFAULT_CACHE_DIR
    timeout: float = 10.0

    def invoke(self, command: str, network: NetworkConfig, plugin: dict[str, Any],
               att: Attachment, prev_result: dict[str, Any] | None) -> bytes:
        """One plugin call (ADD, DEL or CHECK); returns its stdout."""
        stdin = _plugin_stdin(network, plugin, att, prev_result)
        binary = _find_plugin(plugin["type"], self.path)
        env = _plugin_env(command, att, self.path)
        _log("Plugin", v=2, command=command, plugin=binary, stdin=stdin.decode(),
            env={k: v for k, v in env.items() if k.startswith("CNI_")})
        return _exec_plugin(binary, env, stdin, self.timeout)

    def invoke_add(self, network: NetworkConfig, plugin: dict[str, Any], att: Attachment,
                   prev_result: dict[str, Any] | None) -> dict[str, Any]:
        """One plugin's ADD; returns its result."""
        out = self.invoke("ADD", network, plugin, att, prev_result)
        try:
            result = json.loads(out)
        except ValueError:
            result = None
        if not isinstance(result, dict):
            raise InjectError(f"plugin {plugin['type']} returned no valid result: "
                              f"{out[:200].decode(errors='replace')!r}", CODE_DECODING)
        if not isinstance(result.get("cniVersion"), str) or not result["cniVersion"]:
            result["cniVersion"] = network.cni_version  # as libcni: the conf's, when the plugin gave none
        return result

    def prev_result_for_del(self, network: NetworkConfig,
                            result: dict[str, Any] | None) -> dict[str, Any] | None:
        # prevResult on DEL came with CNI 0.4.0; older plugins must not see it.
        if result is None or network.version_tuple < (0, 4, 0):
            return None
        try:
            return _convert_result(result, network.cni_version)
        except InjectError as e:
            # libcni fails the DEL here; a DEL must release what it can, so it runs without one.
            _log("Cached result not usable: DEL runs without prevResult", error=str(e))
            return None

    def add(self, network: NetworkConfig, att: Attachment) -> dict[str, Any]:
        """ADD the whole list; on any failure or interrupt, DEL what ran, then raise."""
        for plugin in network.plugins:  # a missing one fails before anything is done
            _find_plugin(plugin["type"], self.path)
        # The entry goes in first: if we are killed half-way, gc and del find it.
        _write_cache(self.cache_dir, network, att, None)
        result: dict[str, Any] | None = None
        ran: list[dict[str, Any]] = []
        try:
            with _interruptible():
                for plugin in network.plugins:
                    ran.append(plugin)
                    result = self.invoke_add(network, plugin, att, result)
            assert result is not None
            # A result that cannot be cached (a full disk) could never be
            # deleted with its prevResult: the ADD is undone instead.
            _write_cache(self.cache_dir, network, att, result)
        except BaseException as e:
            self.rollback(network, att, ran, result, e)
            raise  # rollback() raises; this keeps type checkers sure
        return result

    def rollback(self, network: NetworkConfig, att: Attachment, ran: list[dict[str, Any]],
                 result: dict[str, Any] | None, cause: BaseException) -> None:
        with _signals_deferred():
            failures = self.delete_plugins(network, att, ran, result)
            if not failures:
                _remove_cache(self.cache_dir, network.name, att.container_id, att.ifname)
        names = ", ".join(p["type"] for p in reversed(ran))
        note = (f"rolled back (DEL ran for {names})" if not failures
                else f"rollback failed: {'; '.join(failures)}")
        _log("Add failed", v=1, rollback=note)
        raise _undone(cause, note) from None

    def delete_plugins(self, network: NetworkConfig, att: Attachment,
                       plugins: list[dict[str, Any]], result: dict[str, Any] | None) -> list[str]:
        """DEL in reverse order, best effort: every plugin runs, errors are collected."""
        prev = self.prev_result_for_del(network, result)
        failures = []
        for plugin in reversed(plugins):
            try:
                self.invoke("DEL", network, plugin, att, prev)
            except InjectError as e:
                failures.append(str(e))
        return failures

    def delete(self, network: NetworkConfig, att: Attachment) -> None:
        """DEL with the cached result; the cache entry goes only when every plugin succeeded."""
        entry = _read_cache(_cache_file(self.cache_dir, network.name, att.container_id, att.ifname))
        with _signals_deferred():  # a DEL is a clean-up: it runs to its end
            failures = self.delete_plugins(network, att, network.plugins,
                                           entry.get("result") if entry else None)
            if failures:
                raise InjectError("DEL failed: " + "; ".join(failures), CODE_INTERNAL)
            _remove_cache(self.cache_dir, network.name, att.container_id, att.ifname)

    def check(self, network: NetworkConfig, att: Attachment) -> None:
        """CHECK every plugin against the cached result of the ADD, converted
        to the network's version; nothing runs when the list disables CHECK."""
        if network.version_tuple < (0, 4, 0):
            raise InjectError(f"CHECK needs cniVersion 0.4.0 or later, not {network.cni_version}",
                              CODE_INCOMPATIBLE_VERSION)
        if network.disable_check:
            _log("CHECK disabled by the network's disableCheck: no plugin runs", v=1, network=network.name)
            return
        path = _cache_file(self.cache_dir, network.name, att.container_id, att.ifname)
        entry = _read_cache(path)
        if not entry or not isinstance(entry.get("result"), dict):
            raise InjectError(f"no cached result for {att.ifname} of network {network.name} "
                              f"({path}): was it added?", CODE_UNKNOWN_CONTAINER)
        try:
            prev = _convert_result(entry["result"], network.cni_version)
        except InjectError as e:
            raise InjectError(f"cached result {path}: {e}", e.code) from None
        with _interruptible():
            for plugin in network.plugins:
                self.invoke("CHECK", network, plugin, att, prev)


# ---- pods: CNI on a pod (the public API) --------------------------------


def _kubelet_args(pod: Pod) -> list[tuple[str, str]]:
    """CNI_ARGS as kubelet passes them; IgnoreUnknown keeps host-local happy."""
    return [("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", pod.namespace),
            ("K8S_POD_NAME", pod.name), ("K8S_POD_INFRA_CONTAINER_ID", pod.sandbox_id),
            ("K8S_POD_UID", pod.uid)]


def _default_container_id(pod: Pod) -> str:
    """The netns file's name, as the original; /proc/<pid>/ns/net would make
    every pod "net", so the sandbox ID stands in there."""
    base = os.path.basename(pod.netns)
    return pod.sandbox_id if base == "net" or not re.match(_NAME_PATTERN, base) else base


def _pod_attachment(pod: Pod, ifname: str = "net1", container_id: str = "",
                   args: list[tuple[str, str]] | None = None,
                   capability_args: dict[str, Any] | None = None) -> Attachment:
    return Attachment(container_id or _default_container_id(pod), pod.netns, ifname,
                      _kubelet_args(pod) + list(args or []), dict(capability_args or {}), pod)


def _matching_attachments(cache_dir: str, namespace: str, pod: str, ifname: str,
                         network: str = "") -> list[CachedAttachment]:
    """Our cached attachments of a pod's interface (of one network, if given)."""
    return [cached for cached in _cached_attachments(cache_dir)
            if (cached.namespace, cached.pod, cached.interface) == (namespace, pod, ifname)
            and (not network or cached.network == network)]


def _runtime_networks(client: _RuntimeClient) -> dict[str, str]:
    """{name: conf file} of the CNI networks the runtime attaches pods to itself.
    containerd's verbose Status has them ("cniconfig": the networks it loaded,
    its conf dir); cri-o's has no network part, but the HTTP API it serves on
    the same socket gives its configuration (network_dir: it GCs every network
    there at start). A conf file not readable from here is named by its dir;
    a runtime that tells neither gives {}."""
    try:
        info = client.call("Status", client.messages["StatusRequest"](verbose=True)).info
        conf_dir, names = _runtime_cni_conf(client, info)
    except InjectError as e:
        _log("The runtime's own CNI networks are unknown", v=1, error=str(e))
        return {}
    files: dict[str, str] = {}
    with suppress(OSError):
        for entry in sorted(os.listdir(conf_dir)) if conf_dir else []:
            if entry.endswith((".conf", ".conflist", ".json")):
                with suppress(OSError, ValueError, AttributeError), \
                        open(os.path.join(conf_dir, entry), "rb") as f:
                    files.setdefault(str(json.load(f).get("name")), os.path.join(conf_dir, entry))
    chosen = names if names is not None else set(files)
    return {name: files.get(name, conf_dir) for name in chosen}


def _runtime_cni_conf(client: _RuntimeClient, info: Any) -> tuple[str, set[str] | None]:
    """(conf dir, the names of the networks in use; None: all in the dir) of the runtime."""
    try:
        cni = json.loads(info.get("cniconfig") or "null")
    except ValueError:
        cni = None
    if isinstance(cni, dict):  # containerd: go-cni's ConfigResult
        networks = cni.get("Networks")
        names = {str(_dig(n, "Config", "Name")) for n in networks if _dig(n, "Config", "Name")
                 } if isinstance(networks, list) else set()
        conf_dir = cni.get("PluginConfDir")
        return (conf_dir if isinstance(conf_dir, str) else ""), names - {"cni-loopback"}
    if client.version.runtime_name != "cri-o":
        return "", set()
    import tomllib

    try:
        conf_dir = _dig(tomllib.loads(_crio_config(client)), "crio", "network", "network_dir")
    except tomllib.TOMLDecodeError as e:
        raise InjectError(f"cri-o's configuration is not TOML: {e}", CODE_DECODING) from None
    return (conf_dir, None) if isinstance(conf_dir, str) and conf_dir else ("", set())


def _crio_config(client: _RuntimeClient) -> str:
    """cri-o's configuration (TOML), as `crio status config` reads it: GET /config
    from the HTTP API cri-o serves beside CRI on its socket. Plain HTTP/1.0 by hand:
    http.client is not in the built executable."""
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(client.timeout)
            sock.connect(_socket_path(client.endpoint))
            sock.sendall(b"GET /config HTTP/1.0\r\nHost: localhost\r\n\r\n")
            answer = b""
            while len(answer) < 1 << 20 and (chunk := sock.recv(65536)):
                answer += chunk
    except OSError as e:
        raise InjectError(f"cri-o's configuration: {e}", CODE_IO) from None
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if status[1:2] != [b"200"]:
        raise InjectError(f"cri-o's configuration: {head[:80].decode(errors='replace')!r}", CODE_IO)
    return body.decode(errors="replace")


def _warn_if_runtime_network(client: _RuntimeClient, network: NetworkConfig) -> None:
    """An injected interface on a network the runtime runs itself is in the same
    cache under the same name: the runtime may take it for its own."""
    conf_file = _runtime_networks(client).get(network.name)
    if conf_file is not None:
        runtime = client.version.runtime_name
        _log(f"network {network.name} is also {runtime}'s own network ({conf_file}): "
             f"{runtime} may take this interface for its own (cri-o's CNI GC at start-up "
             "deletes it, with its own config); give it another name", level="warning",
             network=network.name, runtime=runtime, confFile=conf_file)


class Node:
    """This node's runtime and CNI setup; the API's entry point.

    The runtime connection is opened on first use and shared by every call
    (and thread) until close(); threads asking for it at once get one.
    """

    def __init__(self, endpoint: str | None = None, timeout: float = 10.0,
                 cni_path: list[str] | None = None, cache_dir: str = _DEFAULT_CACHE_DIR) -> None:
        import threading

        self.endpoint, self.timeout = endpoint, timeout
        self.cni = CNI(list(cni_path or _DEFAULT_CNI_PATH), cache_dir, timeout)
        self._client: _RuntimeClient | None = None
        self._client_lock = threading.Lock()

    @property
    def client(self) -> _RuntimeClient:
        with self._client_lock:
            if self._client is None:
                self._client = _RuntimeClient(self.endpoint, self.timeout)
            return self._client

    def close(self) -> None:
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pod(self, namespace: str, name: str) -> Pod:
        """A running pod on this node, checked to be safe to change."""
        pod = _find_pod(self.client, namespace, name)
        assert pod is not None
        return pod

    def add(self, namespace: str, pod: str, network: NetworkConfig, ifname: str = "net1",
            **attachment: Any) -> dict[str, Any]:
        """ADD `network` as `ifname` in a running pod; returns the CNI result."""
        att = _pod_attachment(self.pod(namespace, pod), ifname, **attachment)
        _warn_if_runtime_network(self.client, network)
        with _attachment_lock(self.cni.cache_dir, att.container_id, ifname, self.timeout):
            self._refuse_taken_name(att)
            self._release_interrupted_add(network, att)
            return self.cni.add(network, att)

    @staticmethod
    def _refuse_taken_name(att: Attachment) -> None:
        """Never ADD over an existing interface: a rollback would delete it."""
        assert att.pod is not None
        if att.ifname in _interface_names(att.netns):
            raise InjectError(f"interface {att.ifname} already exists in pod "
                              f"{att.pod.namespace}/{att.pod.name}", CODE_INVALID_CONFIG)

    def _release_interrupted_add(self, network: NetworkConfig, att: Attachment) -> None:
        """A cache entry of this very attachment was left by an add killed
        half-way (the interface is not there): release what it took first."""
        path = _cache_file(self.cni.cache_dir, network.name, att.container_id, att.ifname)
        if os.path.exists(path):
            _log("Cleaning up an earlier interrupted add", path=path)
            self.cni.delete(network, att)

    def check(self, namespace: str, pod: str, network: NetworkConfig, ifname: str = "net1",
              **attachment: Any) -> None:
        att = _pod_attachment(self.pod(namespace, pod), ifname, **attachment)
        self.cni.check(network, att)

    def delete(self, namespace: str, pod: str, network: NetworkConfig | None = None,
               ifname: str = "net1", **attachment: Any) -> int:
        """DEL an interface; works from the cache when the pod is gone or no
        network is given. Returns how many attachments were deleted."""
        found = _find_pod(self.client, namespace, pod, missing_ok=True)
        if found is not None and network is not None:
            self._delete_from_pod(found, network, ifname, **attachment)
            return 1
        return self._delete_from_cache(namespace, pod, network, ifname)

    def _delete_from_pod(self, pod: Pod, network: NetworkConfig, ifname: str, **attachment: Any) -> None:
        """DEL in a running pod, with the network given."""
        att = _pod_attachment(pod, ifname, **attachment)
        with _attachment_lock(self.cni.cache_dir, att.container_id, ifname, self.timeout):
            self.cni.delete(network, att)

    def _delete_from_cache(self, namespace: str, pod: str, network: NetworkConfig | None,
                           ifname: str) -> int:
        """DEL what the cache records of a pod's interface: the pod is gone, or no network was given."""
        found = _matching_attachments(self.cni.cache_dir, namespace, pod, ifname,
                                     network.name if network else "")
        if not found:
            if network is None:
                raise InjectError(f"no cached attachment {ifname} for pod {namespace}/{pod}: "
                                  "give -spec", CODE_UNKNOWN_CONTAINER)
            _log("Pod not found and nothing cached for it: nothing to delete",
                pod=f"{namespace}/{pod}", interface=ifname)
        for cached in found:
            self.delete_cached(cached, network)
        return len(found)

    def delete_cached(self, cached: CachedAttachment, network: NetworkConfig | None = None) -> bool:
        """DEL a cached attachment with its cached config (or `network`);
        False when its entry went meanwhile (another del or gc)."""
        att = cached.attachment()
        with _attachment_lock(self.cni.cache_dir, att.container_id, att.ifname, self.timeout):
            if not os.path.exists(cached.path):
                return False
            self.cni.delete(network or cached.network_config(), att)
        return True


@contextmanager
def _node(node: Node | None) -> Iterator[Node]:
    if node is not None:
        yield node
    else:
        with Node() as fresh:
            yield fresh


def _network(spec: str | NetworkConfig) -> NetworkConfig:
    return spec if isinstance(spec, NetworkConfig) else load_network(spec)


def add(namespace: str, pod: str, spec: str | NetworkConfig, ifname: str = "net1",
        node: Node | None = None, **attachment: Any) -> dict[str, Any]:
    """ADD the network in file `spec` to a running pod; returns the CNI result."""
    with _node(node) as n:
        return n.add(namespace, pod, _network(spec), ifname, **attachment)


def delete(namespace: str, pod: str, spec: str | NetworkConfig | None = None,
           ifname: str = "net1", node: Node | None = None, **attachment: Any) -> int:
    """DEL an interface from a pod (or from the cache, when the pod is gone)."""
    with _node(node) as n:
        return n.delete(namespace, pod, _network(spec) if spec else None, ifname, **attachment)


def check(namespace: str, pod: str, spec: str | NetworkConfig, ifname: str = "net1",
          node: Node | None = None, **attachment: Any) -> None:
    """CHECK an interface against the cached ADD result; raises when it is wrong."""
    with _node(node) as n:
        n.check(namespace, pod, _network(spec), ifname, **attachment)


def resolve_netns(namespace: str, pod: str, endpoint: str | None = None,
                  timeout: float = 10.0) -> str:
    """The path of a pod's network namespace, as `if-inject netns` prints it."""
    with Node(endpoint, timeout) as node:
        return node.pod(namespace, pod).netns


# ---- pods: many at once, and the lifecycle of attachments ---------------


def _select_pods(client: _RuntimeClient, namespace: str | None, names: list[str] | None = None,
                selector: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(namespace, name) of the pods to work on: the named ones, or the ready
    pods matching `selector`, in `namespace` (every namespace when None)."""
    if names and not selector and namespace is not None:
        return [(namespace, name) for name in dict.fromkeys(names)]
    labels = dict(selector or {})
    if namespace is not None:
        labels[_POD_NAMESPACE_LABEL] = namespace
    found = {(s.metadata.namespace, s.metadata.name)
             for s in _list_sandboxes(client, labels, ready_only=True)}
    return sorted(p for p in found if not names or p[1] in names)


def for_each_pod(pods: list[tuple[str, str]], work: Callable[[str, str], _T],
                 parallel: int = 8) -> Iterator[tuple[str, str, _T | InjectError]]:
    """Run work(namespace, name) for every pod on a bounded pool of threads;
    yields (namespace, name, result or error) as each finishes. One pod's
    failure is its own (its ADD is rolled back alone); the others go on.
    Once the CLI is asked to stop (SIGINT, SIGTERM, SIGHUP), the pods not
    started yet are yielded with an error, and those under way finish whole."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = {pool.submit(work, ns, name): (ns, name) for ns, name in pods}
        order = list(futures)
        try:
            running = set(futures)
            while running:
                # The CLI's handler only records a signal here: look for one every 0.1 s.
                done, running = wait(running, 0.1 if _signals.installed else None, FIRST_COMPLETED)
                if _interrupted():
                    stopped = {future for future in running if future.cancel()}
                    running -= stopped
                    done |= stopped
                for future in sorted(done, key=order.index):
                    ns, name = futures[future]
                    yield ns, name, _outcome(future)
        except BaseException:
            # Interrupted: pods not started yet are skipped, those under way
            # finish whole (an ADD either completes or is rolled back).
            for future in futures:
                future.cancel()
            raise


_NOT_STARTED = "not started: interrupted by"


def _outcome(future: Any) -> Any:
    """A finished pod's result or InjectError; a cancelled one's error."""
    if future.cancelled():
        return InjectError(f"{_NOT_STARTED} {_interrupted()}", CODE_TRY_AGAIN_LATER)
    try:
        return future.result()
    except InjectError as e:
        return e


def _result_addresses(result: Any) -> list[str]:
    """The addresses (CIDRs) in a CNI result of any version."""
    ips, _ = _result_ips_and_routes(result)
    return [str(ip["address"]) for ip in ips if ip.get("address")]


def network_status(result: Any, name: str, ifname: str) -> dict[str, Any]:
    """The entry Multus writes for an attachment in the pod's
    k8s.v1.cni.cncf.io/network-status annotation, from its CNI result (as
    network-attachment-definition-client's CreateNetworkStatuses and the JSON
    of its NetworkStatus: empty fields are left out, "default" among them, as
    it is false for every network but the cluster's; "dns" is always there).

    The entry is the result's pod interface named `ifname`; when the result
    names none (CNI before 0.3.0), it still names `ifname`."""
    interfaces = [i if isinstance(i, dict) else {} for i in _dig(result, "interfaces") or []]
    in_pod = [n for n, i in enumerate(interfaces) if i.get("sandbox")]
    mine = next((n for n in in_pod if interfaces[n].get("name") == ifname), in_pod[-1] if in_pod else None)
    ips, routes = _result_ips_and_routes(result)
    if len(interfaces) != 1 and mine is not None:
        # Several interfaces: each pod interface gets the addresses that point
        # at it; those that point nowhere go to the last one.
        ips = [ip for ip in ips if ip.get("interface") == mine
               or (not isinstance(ip.get("interface"), int) and mine == in_pod[-1])]
    interface = interfaces[mine] if mine is not None else {}
    entry: dict[str, Any] = {"name": name, "interface": interface.get("name") or ifname}
    addresses = [_bare_address(ip.get("address")) for ip in ips]
    if any(addresses):
        entry["ips"] = [a for a in addresses if a]
    for key in ("mac", "mtu"):
        if interface.get(key):
            entry[key] = interface[key]
    dns = _dig(result, "dns") or {}
    entry["dns"] = {k: dns[k] for k in ("nameservers", "domain", "search", "options")
                    if isinstance(dns, dict) and dns.get(k)}
    gateways = [str(r["gw"]) for r in routes if r.get("gw") and _is_default_route(r.get("dst"))]
    if gateways:
        entry["gateway"] = gateways
    return entry


def _result_ips_and_routes(result: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The "ips" and "routes" of a CNI result of any version, as 1.0.0 has them."""
    if isinstance(_dig(result, "ips"), list) or isinstance(_dig(result, "routes"), list):
        ips, routes = _dig(result, "ips") or [], _dig(result, "routes") or []
    else:  # CNI 0.1.0 and 0.2.0: ip4 and ip6, each with its address and routes
        old = [_dig(result, key) or {} for key in ("ip4", "ip6")]
        ips = [{"address": o.get("ip")} for o in old if isinstance(o, dict) and o.get("ip")]
        routes = [r for o in old if isinstance(o, dict) for r in o.get("routes") or []]
    return ([ip for ip in ips if isinstance(ip, dict)], [r for r in routes if isinstance(r, dict)])


def _bare_address(cidr: Any) -> str:
    """An address without its prefix length, as Go's net.IP prints it."""
    import ipaddress

    try:
        return str(ipaddress.ip_interface(str(cidr)).ip) if cidr else ""
    except ValueError:
        return ""


def _is_default_route(dst: Any) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_interface(str(dst)).ip.is_unspecified
    except ValueError:
        return False


def attachments(node: Node, namespace: str | None = None, pod: str | None = None) -> list[CachedAttachment]:
    """Every attachment if-inject made on this node, from the result cache,
    with the state of its pod's sandbox as the runtime reports it now."""
    states = {s.id: s.state for s in _list_sandboxes(node.client)}
    found = []
    for cached in _cached_attachments(node.cni.cache_dir):
        if (namespace and cached.namespace != namespace) or (pod and cached.pod != pod):
            continue
        state = states.get(cached.sandbox_id, -1)
        cached.sandbox_state = {_SANDBOX_READY: "ready", _SANDBOX_NOTREADY: "notready"}.get(state, "gone")
        # Without a sandbox ID (an API caller's entry) only the netns tells.
        cached.stale = (bool(cached.sandbox_id) and cached.sandbox_state != "ready") \
            or not os.path.exists(cached.netns)
        found.append(cached)
    return found


def pod_network_status(node: Node, namespace: str, pod: str) -> list[dict[str, Any]]:
    """The network-status entries of everything if-inject attached to a pod's
    ready sandbox, by interface name: what to merge into its annotation."""
    return [network_status(cached.result, cached.net_attach_def or cached.network, cached.interface)
            for cached in sorted(attachments(node, namespace, pod), key=lambda c: c.interface)
            if not cached.stale and cached.result is not None]  # not an add under way


def gc(node: Node, dry_run: bool = False) -> Iterator[dict[str, Any]]:
    """DEL every attachment whose pod sandbox is gone (or not ready, or whose
    netns is gone), from its cached config; live pods are never touched.
    Yields one record per stale attachment: what was done, or what failed."""
    for cached in attachments(node):
        if not cached.stale:
            continue
        record = {k: v for k, v in cached.json().items() if k not in ("netns", "stale", "cacheFile")}
        if dry_run:
            yield dict(record, action="would delete")
            continue
        try:
            if node.delete_cached(cached):
                yield dict(record, action="deleted")
        except InjectError as e:
            yield dict(record, action="failed", error=str(e))


# ---- netlink: links, veth pairs -----------------------------------------


def _in_netns(path: str, func: Callable[[], _T]) -> _T:
    """Run func in a thread that has entered the netns at `path`.

    setns() changes only the calling thread, and the thread ends right after,
    so the rest of the process never leaves the node's netns. (os.setns comes
    with Python 3.12; libc's is used here.)
    """
    import ctypes
    import threading

    libc = ctypes.CDLL(None, use_errno=True)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, os.strerror(errno))
                outcome["value"] = func()
            finally:
                os.close(fd)
        except BaseException as e:  # handed to the caller's thread
            outcome["error"] = e

    thread = threading.Thread(target=run, name="netns")
    with _signals_deferred():  # the thread's work is not cut short, so neither is the wait
        thread.start()
        thread.join()
    if "error" in outcome:
        e = outcome["error"]
        if isinstance(e, OSError):
            raise InjectError(f"network namespace {path}: {e.strerror}", CODE_IO) from None
        raise e
    value: _T = outcome["value"]
    return value


def _interface_names(netns: str) -> set[str]:
    """Names of the interfaces in a netns (no pyroute2 needed for this)."""
    import socket

    return _in_netns(netns, lambda: {name for _, name in socket.if_nameindex()})


def _netlink(netns: str | None, work: Callable[[Any], _T]) -> _T:
    """work(ipr) with a pyroute2 IPRoute on the node (netns None) or inside the
    netns at path `netns`.

    The socket is opened in a thread that entered the netns (_in_netns), never
    with IPRoute(netns=...): that forks this process, grpc threads and SIGTERM
    handler included (a child that gets pyroute2's SIGTERM at the wrong moment
    runs our error handling), and unless given flags=0 it creates and mounts a
    new netns where the path is missing.
    """
    from pyroute2 import IPRoute

    def run() -> _T:
        with IPRoute() as ipr:
            return work(ipr)

    return run() if netns is None else _in_netns(netns, run)


@contextmanager
def _netlink_step(what: str) -> Iterator[None]:
    """Turn a netlink or OS error inside the block into an InjectError saying what failed."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        yield
    except NetlinkError as e:
        raise InjectError(f"{what}: {os.strerror(e.code)}", CODE_IO) from None
    except OSError as e:
        raise InjectError(f"{what}: {e.strerror or e}", CODE_IO) from None


@dataclass
class Link:
    """An interface as `ip -br addr` shows it, with its MAC and MTU."""

    name: str
    index: int
    state: str  # operstate
    mac: str
    mtu: int
    kind: str  # "" when the kernel names none
    link: str  # parent or veth peer: a name here, "ifN" in another netns
    addresses: list[str]  # CIDRs

    def json(self) -> dict[str, Any]:
        """What `links -o json` prints."""
        return dict(vars(self))


def pod_links(netns: str) -> list[Link]:
    """The interfaces in the netns at `netns`, as `ip -br addr` shows them."""
    def read(ipr: Any) -> tuple[list[Any], list[Any]]:
        with _netlink_step(f"reading the interfaces in {netns}"):
            return list(ipr.get_links()), list(ipr.get_addr())

    links, addresses = _netlink(netns, read)
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
    cidrs: dict[int, list[str]] = {}
    for a in addresses:
        # On a point-to-point address IFA_ADDRESS is the far end; ours is IFA_LOCAL.
        local = a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")
        cidrs.setdefault(a["index"], []).append(f"{local}/{a['prefixlen']}")
    return [_link_record(link, names, cidrs.get(link["index"], [])) for link in links]


def _link_record(link: Any, names: dict[int, str], addresses: list[str]) -> Link:
    """One RTM_NEWLINK message as a Link."""
    parent = link.get_attr("IFLA_LINK")
    if not parent or parent == link["index"]:
        via = ""
    elif link.get_attr("IFLA_LINK_NETNSID") is not None:
        via = f"if{parent}"  # an index in another netns, as ip shows it
    else:
        via = names.get(parent, f"if{parent}")
    return Link(name=link.get_attr("IFLA_IFNAME"), index=link["index"],
                state=link.get_attr("IFLA_OPERSTATE") or "UNKNOWN", mac=link.get_attr("IFLA_ADDRESS") or "",
                mtu=link.get_attr("IFLA_MTU"), kind=_link_kind(link), link=via, addresses=addresses)


def _link_kind(link: Any) -> str:
    info = link.get_attr("IFLA_LINKINFO")
    return str(info.get_attr("IFLA_INFO_KIND") or "") if info else ""


def _host_veth_name(sandbox_id: str, ifname: str) -> str:
    """The node end's default name: short (12 bytes), the same for the same
    pod sandbox and interface, so that `veth -delete` finds it again."""
    import hashlib

    return "veth" + hashlib.sha256(f"{sandbox_id}/{ifname}".encode()).hexdigest()[:8]


def _parse_cidrs(value: str | list[str] | None) -> list[Any]:
    """Addresses as ipaddress interfaces; a bare address is a /32 or /128, as with ip."""
    import ipaddress

    try:
        return [ipaddress.ip_interface(text) for text in ([value] if isinstance(value, str)
                                                           else value or [])]
    except ValueError as e:
        raise InjectError(f"invalid address: {e}", CODE_INVALID_CONFIG) from None


@dataclass
class VethEnd:
    """One end of a veth pair as made: its name, MAC, MTU and the addresses given."""

    name: str
    mac: str
    mtu: int
    addresses: list[str]


@dataclass
class Veth:
    """A veth pair as add_veth made it: the end in the pod's netns, the node's end."""

    netns: str
    pod_end: VethEnd
    host_end: VethEnd

    def json(self) -> dict[str, Any]:
        """What `veth` prints (after the pod's name)."""
        return {"netns": self.netns, "interface": self.pod_end.name, "hostInterface": self.host_end.name,
                "mtu": self.pod_end.mtu,
                "addresses": {"interface": self.pod_end.addresses, "hostInterface": self.host_end.addresses},
                "macs": {"interface": self.pod_end.mac, "hostInterface": self.host_end.mac}}


def add_veth(netns: str, ifname: str, host_ifname: str, address: str | list[str] | None = None,
             host_address: str | list[str] | None = None, mtu: int | None = None,
             timeout: float = 10.0) -> Veth:
    """A veth pair between the node (`host_ifname`) and the netns at `netns`
    (`ifname`), both ends up, with the addresses given; returns what was made.

    The kernel makes the pod end right inside the pod's netns under its final
    name, so the pair appears whole or not at all (a name taken on either
    side fails the creation). It returns once both ends are usable: their
    IPv6 link-local addresses there and, like every address given, out of
    duplicate address detection (within `timeout` seconds). Any later
    failure or interrupt deletes the pair.
    """
    for name in (ifname, host_ifname):
        _validate_ifname(name)
    pod_cidrs, host_cidrs = _parse_cidrs(address), _parse_cidrs(host_address)
    return _make_veth(netns, ifname, host_ifname, pod_cidrs, host_cidrs, mtu, timeout)


def _make_veth(netns: str, ifname: str, host_ifname: str, pod_cidrs: list[Any], host_cidrs: list[Any],
              mtu: int | None, timeout: float) -> Veth:
    """add_veth once its names and addresses are checked (the CLI checks them as flags)."""
    if mtu is not None and not 68 <= mtu <= 65535:
        raise InjectError(f"invalid MTU {mtu}: 68 to 65535", CODE_INVALID_CONFIG)
    _check_netns(netns)
    _refuse_taken_names(netns, ifname, host_ifname)
    made = False
    try:
        with _interruptible():
            _create_veth(netns, ifname, host_ifname, mtu)
            made = True
            host_end = _configure_link(None, host_ifname, host_cidrs)
            pod_end = _configure_link(netns, ifname, pod_cidrs)
            _settle_addresses([(None, host_ifname), (netns, ifname)], timeout)
    except BaseException as e:
        if made or not isinstance(e, InjectError):
            _undo_veth(netns, ifname, host_ifname, e)
        raise
    _log("Veth added", v=1, netns=netns, interface=ifname, host_interface=host_ifname)
    return Veth(netns, pod_end, host_end)


def _refuse_taken_names(netns: str, ifname: str, host_ifname: str) -> None:
    """Clear messages for the usual case; the kernel refuses the rest (races, altnames)."""
    import socket

    if ifname in _interface_names(netns):
        raise InjectError(f"interface {ifname} already exists in network namespace {netns}",
                          CODE_INVALID_CONFIG)
    if host_ifname in {name for _, name in socket.if_nameindex()}:
        raise InjectError(f"interface {host_ifname} already exists on the node", CODE_INVALID_CONFIG)


def _create_veth(netns: str, ifname: str, host_ifname: str, mtu: int | None) -> None:
    """One RTM_NEWLINK makes both ends, the peer already in the pod's netns."""
    import errno

    from pyroute2.netlink.exceptions import NetlinkError

    mtu_attr = {"mtu": mtu} if mtu else {}
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _netlink(None, lambda ipr: ipr.link("add", ifname=host_ifname, kind="veth", **mtu_attr,
                                           peer={"ifname": ifname, "net_ns_fd": fd, **mtu_attr}))
    except NetlinkError as e:
        why = (f"the name {host_ifname} (node) or {ifname} (pod) is taken"
               if e.code == errno.EEXIST else os.strerror(e.code))
        raise InjectError(f"creating veth {host_ifname} - {ifname}: {why}", CODE_IO) from None
    finally:
        os.close(fd)


def _where(netns: str | None) -> str:
    """Where a link is, for messages: in the netns at `netns`, or on the node (None)."""
    return f"in {netns}" if netns else "on the node"


def _configure_link(netns: str | None, name: str, cidrs: list[Any]) -> VethEnd:
    """Add the addresses to an interface, set it up; returns its mac, mtu and addresses."""
    where = _where(netns)

    def configure(ipr: Any) -> Any:
        with _netlink_step(f"finding {name} {where}"):
            indexes = ipr.link_lookup(ifname=name)
        if not indexes:
            raise InjectError(f"{name} is gone {where}", CODE_IO)
        for cidr in cidrs:
            with _netlink_step(f"adding {cidr} to {name} {where}"):
                ipr.addr("add", index=indexes[0], address=str(cidr.ip),
                         prefixlen=cidr.network.prefixlen)
        with _netlink_step(f"setting {name} up {where}"):
            ipr.link("set", index=indexes[0], state="up")
            return ipr.get_links(indexes[0])[0]

    link = _netlink(netns, configure)
    return VethEnd(name, link.get_attr("IFLA_ADDRESS"), link.get_attr("IFLA_MTU"),
                   [str(cidr) for cidr in cidrs])


_IFA_F_DADFAILED, _IFA_F_TENTATIVE = 0x08, 0x40
_IN6_ADDR_GEN_MODE_NONE = 1


def _settle_addresses(links: list[tuple[str | None, str]], timeout: float) -> None:
    """Wait until every (netns or None for the node, name) link is usable over
    IPv6, as the reference plugins do (ip.SettleAddresses): no address still
    tentative, the link-local one there. A duplicate address fails at once."""
    deadline = time.monotonic() + timeout
    while True:
        links = [(netns, name) for netns, name in links if not _link_settled(netns, name)]
        if not links:
            return
        if time.monotonic() >= deadline:
            names = ", ".join(f"{name} {_where(netns)}" for netns, name in links)
            raise InjectError(f"addresses of {names} still tentative after {timeout:g}s "
                              "(duplicate address detection)", CODE_TRY_AGAIN_LATER)
        time.sleep(0.05)


def _link_settled(netns: str | None, name: str) -> bool:
    """One look at a link for _settle_addresses."""
    import socket

    where = _where(netns)

    def look(ipr: Any) -> bool:
        link = _find_link(ipr, name)
        if link is None:
            raise InjectError(f"{name} is gone {where}", CODE_IO)
        spec = link.get_attr("IFLA_AF_SPEC")
        inet6 = spec.get_attr("AF_INET6") if spec else None  # none: IPv6 is off in the kernel
        wants_link_local = inet6 is not None and not (inet6.get_attr("IFLA_INET6_CONF") or {}).get(
            "disable_ipv6") and inet6.get_attr("IFLA_INET6_ADDR_GEN_MODE") != _IN6_ADDR_GEN_MODE_NONE
        has_link_local = False
        for a in ipr.get_addr(family=socket.AF_INET6, index=link["index"]):
            flags = a.get_attr("IFA_FLAGS") or a["flags"]
            address = f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            if flags & _IFA_F_DADFAILED:
                raise InjectError(f"{address} on {name} {where} is a duplicate address "
                                  "(duplicate address detection failed)", CODE_IO)
            if flags & _IFA_F_TENTATIVE:
                return False
            has_link_local |= address.startswith("fe80:")
        return has_link_local or not wants_link_local

    with _netlink_step(f"reading the addresses of {name} {where}"):
        return _netlink(netns, look)


def _undo_veth(netns: str, ifname: str, host_ifname: str, cause: BaseException) -> NoReturn:
    """Delete a half-made pair (never a pair we did not make), then raise."""
    with _signals_deferred():
        try:
            pod_end, _, peer_index = _veth_ends(netns, ifname, host_ifname)
            if pod_end is not None and peer_index == pod_end["index"]:
                delete_veth(netns, ifname, host_ifname)
            note = "the veth pair was removed"
        except InjectError as e:
            note = f"removing the veth pair failed: {e}"
    _log("Add veth failed", v=1, rollback=note)
    raise _undone(cause, note) from None


def _find_link(ipr: Any, name: str) -> Any:
    """The RTM_NEWLINK message of interface `name`, or None."""
    indexes = ipr.link_lookup(ifname=name)
    return ipr.get_links(indexes[0])[0] if indexes else None


def _veth_ends(netns: str, ifname: str | None, host_ifname: str | None) -> tuple[Any, Any, int]:
    """(the link `ifname` in the netns, the link `host_ifname` on the node, the
    index in the netns of the node link's veth peer, 0 when it has none there);
    None for a link that is missing or not asked for."""
    pod_end = None
    if ifname and os.path.exists(netns):
        with _netlink_step(f"reading {ifname} in {netns}"):
            pod_end = _netlink(netns, lambda ipr: _find_link(ipr, ifname))
    if not host_ifname:
        return pod_end, None, 0

    def read_node_end(ipr: Any) -> tuple[Any, int | None]:
        host_end = _find_link(ipr, host_ifname)
        if host_end is None or _link_kind(host_end) != "veth" or not os.path.exists(netns):
            return host_end, None
        # A peer's index means something only with the netns it is in: the
        # node's id for the pod's netns must be the one the link reports.
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return host_end, ipr.get_netnsid(fd=fd)["nsid"]
        finally:
            os.close(fd)

    with _netlink_step(f"reading {host_ifname} on the node"):
        host_end, nsid = _netlink(None, read_node_end)
    if host_end is None or nsid is None or host_end.get_attr("IFLA_LINK_NETNSID") != nsid:
        return pod_end, host_end, 0
    return pod_end, host_end, int(host_end.get_attr("IFLA_LINK") or 0)


def delete_veth(netns: str, ifname: str | None = None, host_ifname: str | None = None) -> None:
    """Delete a veth pair by either end: `ifname` in the netns at `netns` or
    `host_ifname` on the node (deleting one end deletes both). The end named
    must be a veth whose peer is on the other side: in the node's netns for
    `ifname`, in `netns` for `host_ifname`; given both names, they must be
    the two ends of one pair."""
    if not ifname and not host_ifname:
        raise InjectError("delete_veth: name the interface, the node's end, or both",
                          CODE_INVALID_CONFIG)
    pod_end, host_end, peer_index = _veth_ends(netns, ifname, host_ifname)
    if pod_end is None and host_end is None:
        names = " nor ".join(n for n in (f"{ifname} in {netns}" if ifname else "",
                                         f"{host_ifname} on the node" if host_ifname else "") if n)
        raise InjectError(f"no interface {names}", CODE_UNKNOWN_CONTAINER)
    for end, name in ((pod_end, ifname), (host_end, host_ifname)):
        if end is not None and _link_kind(end) != "veth":
            raise InjectError(f"{name} is a {_link_kind(end) or 'device'} link, not a veth: "
                              "not deleting it", CODE_INVALID_CONFIG)
    if ifname and host_ifname and not (pod_end is not None and peer_index == pod_end["index"]):
        raise InjectError(f"{ifname} in {netns} and {host_ifname} on the node are not the two "
                          "ends of one veth pair: not deleting either", CODE_INVALID_CONFIG)
    if not ifname:
        assert host_ifname is not None
        if not peer_index:
            raise InjectError(f"the peer of {host_ifname} is not in {netns}: not deleting it",
                              CODE_INVALID_CONFIG)
        _delete_link(None, host_ifname)
    else:
        if not host_ifname and not _peer_on_node(netns, pod_end):
            raise InjectError(f"the peer of {ifname} in {netns} is not on the node: not deleting it",
                              CODE_INVALID_CONFIG)
        _delete_link(netns, ifname)
    _log("Veth deleted", v=1, netns=netns, interface=ifname, host_interface=host_ifname)


def _peer_on_node(netns: str, link: Any) -> bool:
    """Whether the veth peer of `link`, in the netns at `netns`, is in the node's netns."""
    peer_nsid = link.get_attr("IFLA_LINK_NETNSID")
    if peer_nsid is None:  # the peer is in the same netns
        return False
    # /proc/self is the main thread, which never leaves the node's netns.
    fd = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with _netlink_step(f"reading the id of the node's netns in {netns}"):
            node_nsid = _netlink(netns, lambda ipr: ipr.get_netnsid(fd=fd)["nsid"])
    finally:
        os.close(fd)
    return bool(node_nsid >= 0 and node_nsid == peer_nsid)


def _delete_link(netns: str | None, name: str) -> None:
    with _netlink_step(f"deleting {name} {_where(netns)}"):
        _netlink(netns, lambda ipr: ipr.link("del", ifname=name))


# ---- CLI ----------------------------------------------------------------
# Each subcommand is one entry, in _cni_subcommands or _node_subcommands: its
# flags and, by set_defaults(run=...), the function that runs it (as the
# original's map of commands). Adding a subcommand touches that entry and its
# run function only.


class _UsageError(Exception):
    """A command line that cannot be run as given (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _global_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    """Flags taken before or after the subcommand (after it, they must not
    reset what was given before: hence SUPPRESS as their default there)."""
    def d(value: Any) -> Any:
        return value if default is None else default
    parser.add_argument("-loglevel", "--loglevel", type=int, default=d(0), metavar="N",
                        help="log detail on stderr: 0 info and errors, up to 4 everything")
    parser.add_argument("-runtime-endpoint", "--runtime-endpoint", "-r", dest="endpoint",
                        default=d(None), metavar="URI",
                        help="CRI socket (default: $CONTAINER_RUNTIME_ENDPOINT, else search)")
    parser.add_argument("-timeout", "--timeout", type=float, default=d(10.0), metavar="SECONDS",
                        help="limit for runtime calls and for each plugin (default 10)")
    parser.add_argument("-cni-path", "--cni-path", default=d(None), metavar="DIRS",
                        help="plugin dirs, ':'-separated (default: $CNI_PATH, else "
                             + ":".join(_DEFAULT_CNI_PATH) + ")")
    parser.add_argument("-cache-dir", "--cache-dir", default=d(_DEFAULT_CACHE_DIR), metavar="DIR",
                        help="libcni's cache dir: results in its results/, as a runtime's "
                             f"(default {_DEFAULT_CACHE_DIR})")


def _namespace_flag(parser: argparse.ArgumentParser, listing: bool) -> None:
    """-ns, one value everywhere: a namespace, or None for every namespace.
    Listings (pods, list) show every namespace unless -ns is given, as
    `crictl pods`; commands on a pod default to "default", as kubectl."""
    if listing:
        parser.add_argument("-ns", "--ns", default=None, metavar="NAMESPACE",
                            help="only this namespace (default: every namespace)")
    else:
        parser.add_argument("-ns", "--ns", default="default", metavar="NAMESPACE",
                            help="the pod's namespace (default: default)")


def _pod_flags(parser: argparse.ArgumentParser) -> None:
    """The pods of netns, add, del and check: one, several, or selected by labels."""
    _namespace_flag(parser, listing=False)
    parser.add_argument("-pod", "--pod", action="append", metavar="POD",
                        help="the pod's name; repeat it for several pods")
    parser.add_argument("-l", "-selector", "--selector", default="", metavar="SELECTOR",
                        help="all ready pods with these labels, as kubectl's -l app=alpine")
    parser.add_argument("-A", "-all-namespaces", "--all-namespaces", action="store_true",
                        help="pods of every namespace, instead of -ns (with -l or -pod)")
    parser.add_argument("-parallel", "--parallel", type=int, default=8, metavar="N",
                        help="pods worked on at once with several pods (default 8)")


def _one_pod_flags(parser: argparse.ArgumentParser) -> None:
    _namespace_flag(parser, listing=False)
    parser.add_argument("-pod", "--pod", required=True, help="the pod's name")


def _cni_flags(parser: argparse.ArgumentParser, spec_required: bool = True) -> None:
    parser.add_argument("-spec", "--spec", required=spec_required, metavar="FILE",
                        help="CNI network: a plugin conf or a conflist, or a Multus "
                             "NetworkAttachmentDefinition (JSON or YAML) holding one; - reads stdin"
                             + ("" if spec_required else " (default: the cached one)"))
    parser.add_argument("-interface", "--interface", default="net1",
                        help="name in the pod (default net1)")
    parser.add_argument("-containerid", "--containerid", default="", metavar="ID",
                        help="CNI container ID (default: the netns file's name)")
    parser.add_argument("-args", "--args", default="", metavar="K=V;K=V",
                        help="extra CNI_ARGS, after kubelet's")
    parser.add_argument("-capability-args", "--capability-args", default="", metavar="JSON",
                        help='runtimeConfig for plugins that declare them, e.g. {"mac": "..."}')


def _output_flag(parser: argparse.ArgumentParser, network_status: bool = False) -> None:
    more = ("network-status",) if network_status else ()
    parser.add_argument("-o", "-output", "--output", choices=("text", "json", *more), default="text",
                        help="a table (default) or JSON" + (", or the pod's network-status entries "
                                                            "(with -ns and -pod)" if more else ""))


def _veth_flags(parser: argparse.ArgumentParser) -> None:
    # No default for -interface: -delete tells a name given from none (net1 otherwise).
    parser.add_argument("-interface", "--interface", default=None,
                        help="name in the pod (default net1; with -delete and -host-interface, "
                             "found from the node's end)")
    parser.add_argument("-host-interface", "--host-interface", default="", metavar="NAME",
                        help="name on the node (default: veth + 8 hex digits from the sandbox "
                             "and -interface)")
    parser.add_argument("-address", "--address", action="append", metavar="CIDR",
                        help="address of the pod's end; repeat it for more")
    parser.add_argument("-host-address", "--host-address", action="append", metavar="CIDR",
                        help="address of the node's end; repeat it for more")
    parser.add_argument("-mtu", "--mtu", type=int, metavar="N",
                        help="MTU of both ends (default: the kernel's)")
    parser.add_argument("-delete", "--delete", action="store_true",
                        help="delete the pair of -interface, or of -host-interface, or of both, instead")


# A subcommand's run function: prints its output, returns the exit code, raises errors.
_Run = Callable[[argparse.Namespace, Node], int]


@dataclass
class _PodWork:
    """What one of netns/add/del/check does for one pod (returning what to
    print), and the network of its -spec, read once for every pod."""

    one: Callable[[str, str], Any]
    network: NetworkConfig | None = None


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="if-inject", allow_abbrev=False,
                     description="Inject interfaces into, and remove them from, running pods. "
                                 "-ns: commands on a pod default to namespace default; listings "
                                 "(pods, list) show every namespace unless -ns is given.")
    parser.add_argument("-version", "--version", action="store_true", help="print the version")
    _global_flags(parser, None)
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=_Parser)

    def command(name: str, text: str, run: _Run) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text, allow_abbrev=False)
        _global_flags(sub, argparse.SUPPRESS)
        sub.set_defaults(run=run)
        return sub

    _cni_subcommands(command)
    _node_subcommands(command)
    parser.set_defaults(subcommands=list(commands.choices))
    return parser


# command(name, help, run function) -> the subcommand's parser, for its flags.
_Command = Callable[[str, str, _Run], argparse.ArgumentParser]


def _cni_subcommands(command: _Command) -> None:
    """netns, add, del, check: one entry each, in the order --help lists them."""
    _pod_flags(command("netns", "print the pod's network namespace path", _on_pods(_netns_work)))

    sub = command("add", "add an interface with CNI; prints the result", _on_pods(_add_work))
    _pod_flags(sub)
    _cni_flags(sub)
    sub.add_argument("-o", "-output", "--output", choices=("json", "network-status"), default="json",
                     help="the CNI result (default), or the entry Multus would put in the pod's "
                          "k8s.v1.cni.cncf.io/network-status")

    sub = command("del", "delete an interface with CNI (also after the pod is gone)", _on_pods(_del_work))
    _pod_flags(sub)
    _cni_flags(sub, spec_required=False)

    sub = command("check", "check an interface with CNI", _on_pods(_check_work))
    _pod_flags(sub)
    _cni_flags(sub)


def _node_subcommands(command: _Command) -> None:
    """list, gc, pods, links, veth: one entry each, in the order --help lists them."""
    sub = command("list", "list the attachments if-inject made, with their pods' state", _run_list)
    _namespace_flag(sub, listing=True)
    sub.add_argument("-pod", "--pod", default=None, help="only this pod")
    _output_flag(sub, network_status=True)

    sub = command("gc", "delete the attachments of pods that are gone", _run_gc)
    sub.add_argument("-dry-run", "--dry-run", action="store_true", help="only say what would go")

    sub = command("pods", "list the pods on this node as the runtime sees them", _run_pods)
    _namespace_flag(sub, listing=True)
    sub.add_argument("-l", "-selector", "--selector", default="", metavar="SELECTOR",
                     help="only pods with these labels, as kubectl's -l app=alpine,tier=web")
    _output_flag(sub)

    sub = command("links", "show the pod's interfaces (as ip -br addr inside it), read from the node",
                  _run_links)
    _one_pod_flags(sub)
    _output_flag(sub)

    sub = command("veth", "add a veth pair between the node and the pod (or -delete it); "
                          "prints what it made", _run_veth)
    _one_pod_flags(sub)
    _veth_flags(sub)


def _search_path(flag: str | None) -> list[str]:
    text = flag or os.environ.get("CNI_PATH", "")
    return [d for d in text.split(":") if d] or list(_DEFAULT_CNI_PATH)


def _usage(check: Callable[[], _T]) -> _T:
    """check(), with a bad input it finds reported as a usage error (exit code 2)."""
    try:
        return check()
    except InjectError as e:
        raise _UsageError(str(e)) from None


def _attachment_options(args: argparse.Namespace) -> dict[str, Any]:
    """-interface, -containerid, -args, -capability-args, validated before anything runs."""
    _usage(lambda: _validate_ifname(args.interface))
    if args.containerid:
        _usage(lambda: _validate_container_id(args.containerid))
    pairs = _usage(lambda: _parse_cni_args(args.args))
    capability_args: Any = {}
    if args.capability_args:
        try:
            capability_args = json.loads(args.capability_args)
        except ValueError as e:
            raise _UsageError(f"-capability-args is not JSON: {e}") from None
        if not isinstance(capability_args, dict):
            raise _UsageError("-capability-args must be a JSON object")
    return {"container_id": args.containerid, "args": pairs, "capability_args": capability_args}


def _netns_work(args: argparse.Namespace, node: Node) -> _PodWork:
    return _PodWork(lambda ns, pod: node.pod(ns, pod).netns)


def _add_work(args: argparse.Namespace, node: Node) -> _PodWork:
    options = _attachment_options(args)
    network = load_network(args.spec)

    def add_one(ns: str, pod: str) -> Any:
        result = node.add(ns, pod, network, args.interface, **options)
        if args.output == "network-status":
            return network_status(result, network.status_name(ns), args.interface)
        return result
    return _PodWork(add_one, network)


def _del_work(args: argparse.Namespace, node: Node) -> _PodWork:
    options = _attachment_options(args)
    network = load_network(args.spec) if args.spec else None

    def delete_one(ns: str, pod: str) -> None:
        node.delete(ns, pod, network, args.interface, **options)
    return _PodWork(delete_one, network)


def _check_work(args: argparse.Namespace, node: Node) -> _PodWork:
    options = _attachment_options(args)
    network = load_network(args.spec)
    return _PodWork(lambda ns, pod: node.check(ns, pod, network, args.interface, **options), network)


def _on_pods(make_work: Callable[[argparse.Namespace, Node], _PodWork]) -> _Run:
    """The run function of a command on pods (netns, add, del, check)."""
    return lambda args, node: _run_pod_command(args, node, make_work)


def _run_pod_command(args: argparse.Namespace, node: Node,
                     make_work: Callable[[argparse.Namespace, Node], _PodWork]) -> int:
    """netns/add/del/check on one pod (plain output) or on several (JSON lines)."""
    if not (args.pod or args.selector or args.all_namespaces):
        raise _UsageError("the following arguments are required: -pod (or -l, -A)")
    several = bool(args.selector or args.all_namespaces or len(args.pod) > 1)
    if getattr(args, "containerid", "") and several:
        raise _UsageError("-containerid goes with a single pod")
    selector = _usage(lambda: _parse_selector(args.selector))
    work = make_work(args, node)
    if not several:
        output = work.one(args.ns, args.pod[0])
        if output is not None:
            print(output if isinstance(output, str) else json.dumps(output, indent=4))
        return 0
    pods = _select_pods(node.client, None if args.all_namespaces else args.ns, args.pod, selector)
    return _run_batch(pods, work, args.parallel)


def _run_batch(pods: list[tuple[str, str]], work: _PodWork, parallel: int) -> int:
    """One JSON line per pod, a progress line on a terminal; exit code 1 if any pod failed."""
    failed = not_started = 0
    network = work.network
    for done, (ns, pod, outcome) in enumerate(for_each_pod(pods, work.one, parallel), 1):
        line: dict[str, Any] = {"namespace": ns, "pod": pod}
        if network is not None and network.nad_name:
            line["netAttachDef"] = network.status_name(ns)
        if isinstance(outcome, InjectError):
            failed += 1
            not_started += outcome.msg.startswith(_NOT_STARTED)
            line["error"] = str(outcome)
        else:
            line["result"] = outcome
        print(json.dumps(line), flush=True)
        if sys.stderr.isatty():
            sys.stderr.write(f"\r{done}/{len(pods)} pods, {failed} failed" + "\n" * (done == len(pods)))
    if _interrupted():
        raise InjectError(f"interrupted by {_interrupted()}: the pods under way were finished, "
                          f"{not_started} of {len(pods)} not started", CODE_TRY_AGAIN_LATER)
    return 1 if failed else 0


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _run_list(args: argparse.Namespace, node: Node) -> int:
    if args.output == "network-status":
        if not (args.ns and args.pod):
            raise _UsageError("-o network-status lists one pod's attachments: give -ns and -pod")
        print(json.dumps(pod_network_status(node, args.ns, args.pod), indent=4))
        return 0
    found = attachments(node, args.ns or None, args.pod or None)
    if args.output == "json":
        print(json.dumps([a.json() for a in found], indent=4))
        return 0
    _print_table(("NAMESPACE", "POD", "INTERFACE", "NETWORK", "ADDRESSES", "SANDBOX", "STATE"),
                 [(a.namespace, a.pod, a.interface, a.network, ",".join(a.addresses) or "-",
                   a.sandbox_id[:13] or "-", "stale" if a.stale else a.sandbox_state) for a in found])
    return 0


def _run_gc(args: argparse.Namespace, node: Node) -> int:
    failed = 0
    for record in gc(node, args.dry_run):
        failed += record["action"] == "failed"
        print(json.dumps(record), flush=True)
    return 1 if failed else 0


def _run_pods(args: argparse.Namespace, node: Node) -> int:
    pods = _list_pods(node.client, args.ns, _usage(lambda: _parse_selector(args.selector)))
    if args.output == "json":
        print(json.dumps([{"namespace": p.namespace, "name": p.name, "uid": p.uid,
                           "sandboxId": p.sandbox_id, "state": "READY" if p.ready else "NOTREADY",
                           "network": p.network_mode, "netns": p.netns, "labels": p.labels}
                          for p in pods], indent=4))
        return 0
    _print_table(("NAMESPACE", "NAME", "SANDBOX", "STATE", "NETWORK", "NETNS"),
                 [(p.namespace, p.name, p.sandbox_id[:13], "READY" if p.ready else "NOTREADY",
                   p.network_mode, p.netns or "-") for p in pods])
    return 0


def _run_links(args: argparse.Namespace, node: Node) -> int:
    links = pod_links(node.pod(args.ns, args.pod).netns)
    if args.output == "json":
        print(json.dumps([link.json() for link in links], indent=4))
        return 0
    _print_table(("NAME", "STATE", "MAC", "MTU", "ADDRESSES"),
                 [(link.name + (f"@{link.link}" if link.link else ""), link.state,
                   link.mac, str(link.mtu), " ".join(link.addresses)) for link in links])
    return 0


def _run_veth(args: argparse.Namespace, node: Node) -> int:
    """veth: the README's manual injection (ip link add ... veth) in one command."""
    def check_names() -> None:
        for name in filter(None, (args.interface, args.host_interface)):
            _validate_ifname(name)
    _usage(check_names)
    pod_cidrs = _usage(lambda: _parse_cidrs(args.address))
    host_cidrs = _usage(lambda: _parse_cidrs(args.host_address))
    if args.delete and (args.address or args.host_address or args.mtu):
        raise _UsageError("-delete takes no -address, -host-address or -mtu")
    pod = node.pod(args.ns, args.pod)
    # -delete with -host-interface alone finds the pod end from the node end.
    ifname = args.interface or ("" if args.delete and args.host_interface else "net1")
    host_ifname = args.host_interface or ("" if args.delete else _host_veth_name(pod.sandbox_id, ifname))
    # The lock of a CNI add/del on the same interface: they must not overlap.
    with _attachment_lock(node.cni.cache_dir, _default_container_id(pod), ifname or "net1", node.timeout):
        try:
            if args.delete:
                delete_veth(pod.netns, ifname, host_ifname)
                return 0
            made = _make_veth(pod.netns, ifname, host_ifname, pod_cidrs, host_cidrs, args.mtu, node.timeout)
        except InjectError as e:
            raise InjectError(f"pod {pod.namespace}/{pod.name}: {e.msg}", e.code, e.details) from None
    print(json.dumps({"pod": f"{pod.namespace}/{pod.name}", **made.json()}, indent=4))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The if-inject command; returns the exit code (0 ok, 1 failed, 2 usage)."""
    global _log_verbosity

    if _only_version(sys.argv[1:] if argv is None else argv):  # before the parser is built
        return _print_version()
    try:
        args = _build_parser().parse_args(argv)
    except _UsageError as e:
        _log_error("Invalid command line", e)
        return 2
    if args.version:
        return _print_version()
    if not args.command:
        print("Subcommands:", *args.subcommands, sep="\n   ", file=sys.stderr)
        return 2
    _log_verbosity = args.loglevel
    _log("Start", v=1, version=__version__, command=args.command)
    _signals.install()  # SIGINT, SIGTERM, SIGHUP: an ADD under way is rolled back
    node = Node(args.endpoint, args.timeout, _search_path(args.cni_path), args.cache_dir)
    try:
        code: int = args.run(args, node)
        sys.stdout.flush()  # a closed stdout shows here, not at exit
        return code
    except _UsageError as e:
        _log_error("Invalid command line", e)
        return 2
    except InjectError as e:
        _log_error(f"{args.command} failed", e, code=e.code)
        return 1
    except KeyboardInterrupt as e:
        _log_error(f"{args.command} failed", f"interrupted by {e}" if e.args else "interrupted")
        return 1
    except BrokenPipeError:
        _log_error(f"{args.command} failed", _stdout_closed(args.command), code=CODE_IO)
        return 1
    finally:
        node.close()


def _stdout_closed(command: str) -> str:
    """A reader that went away (`| head -c 10`) is no reason to undo work that
    is done: an ADD stays, cached, as `ip addr add` would. Only its report is
    lost, and the exit code says so."""
    with suppress(OSError):  # nothing more reaches the closed pipe, nor fails at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    done = {"add": "; what was added stays (see `if-inject list`, undo it with `del`)",
            "del": "; what was deleted stays deleted", "gc": "; what was deleted stays deleted",
            "veth": "; the veth pair stays (undo it with `veth -delete`)"}.get(command, "")
    return f"stdout was closed (broken pipe): the output was not fully written{done}"


def cli() -> NoReturn:
    """The `if-inject` program: main() in a short-lived process (see the speed tricks at the top)."""
    _tune_gc()
    _exit_now(main())


if __name__ == "__main__":
    cli()
