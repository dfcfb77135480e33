"""The CRI runtime.v1 messages the test lab uses, and a helper to call them.

LAB_SCHEMA is if_inject._CRI_SCHEMA (what the tool itself uses) plus what a
kubelet-like client needs to run pods: sandboxes, containers, ExecSync, images
(the runtime's Status is the tool's own). Field numbers are those of k8s.io/cri-api
pkg/apis/runtime/v1/api.proto; fields the lab does not use are left out, which
protobuf tolerates in both directions (unknown fields are skipped).

The module is only "schema + call helpers" so that a fake CRI server for the
tests can reuse it: `M` holds the message classes and enums by name,
`call()` makes a unary call as a client, `rpc_handler()` serves one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The schema extends the tool's own; the tool lives in the repository root.
import if_inject

LAB_EXTRA_SCHEMA = """
message LinuxSandboxSecurityContext { NamespaceOption namespace_options = 1; bool privileged = 6; }
message LinuxPodSandboxConfig {
    string cgroup_parent = 1; LinuxSandboxSecurityContext security_context = 2; map sysctls = 3;
}
message PodSandboxConfig {
    PodSandboxMetadata metadata = 1; string hostname = 2; string log_directory = 3;
    map labels = 6; map annotations = 7; LinuxPodSandboxConfig linux = 8;
}
message RunPodSandboxRequest { PodSandboxConfig config = 1; string runtime_handler = 2; }
message RunPodSandboxResponse { string pod_sandbox_id = 1; }
message StopPodSandboxRequest { string pod_sandbox_id = 1; }
message StopPodSandboxResponse { }
message RemovePodSandboxRequest { string pod_sandbox_id = 1; }
message RemovePodSandboxResponse { }

enum ContainerState {
    CONTAINER_CREATED = 0; CONTAINER_RUNNING = 1; CONTAINER_EXITED = 2; CONTAINER_UNKNOWN = 3;
}
message ContainerMetadata { string name = 1; uint32 attempt = 2; }
message ImageSpec { string image = 1; map annotations = 2; string user_specified_image = 18; }
message KeyValue { string key = 1; string value = 2; }
message Capability { repeated string add_capabilities = 1; repeated string drop_capabilities = 2; }
message LinuxContainerSecurityContext {
    Capability capabilities = 1; bool privileged = 2; NamespaceOption namespace_options = 3;
}
message LinuxContainerConfig { LinuxContainerSecurityContext security_context = 2; }
message ContainerConfig {
    ContainerMetadata metadata = 1; ImageSpec image = 2; repeated string command = 3;
    repeated string args = 4; string working_dir = 5; repeated KeyValue envs = 6;
    map labels = 9; map annotations = 10; string log_path = 11; LinuxContainerConfig linux = 15;
}
message CreateContainerRequest {
    string pod_sandbox_id = 1; ContainerConfig config = 2; PodSandboxConfig sandbox_config = 3;
}
message CreateContainerResponse { string container_id = 1; }
message StartContainerRequest { string container_id = 1; }
message StartContainerResponse { }
message StopContainerRequest { string container_id = 1; int64 timeout = 2; }
message StopContainerResponse { }
message RemoveContainerRequest { string container_id = 1; }
message RemoveContainerResponse { }
message ContainerStateValue { ContainerState state = 1; }
message ContainerFilter {
    string id = 1; ContainerStateValue state = 2; string pod_sandbox_id = 3; map label_selector = 4;
}
message ListContainersRequest { ContainerFilter filter = 1; }
message Container {
    string id = 1; string pod_sandbox_id = 2; ContainerMetadata metadata = 3; ImageSpec image = 4;
    string image_ref = 5; ContainerState state = 6; int64 created_at = 7; map labels = 8;
    map annotations = 9;
}
message ListContainersResponse { repeated Container containers = 1; }
message ExecSyncRequest { string container_id = 1; repeated string cmd = 2; int64 timeout = 3; }
message ExecSyncResponse { bytes stdout = 1; bytes stderr = 2; int32 exit_code = 3; }

message ImageFilter { ImageSpec image = 1; }
message ListImagesRequest { ImageFilter filter = 1; }
message Image {
    string id = 1; repeated string repo_tags = 2; repeated string repo_digests = 3; uint64 size = 4;
}
message ListImagesResponse { repeated Image images = 1; }
"""

LAB_SCHEMA = if_inject._CRI_SCHEMA + LAB_EXTRA_SCHEMA
# The enums' numbers, as the tool reads them from its schema.
SANDBOX_READY, SANDBOX_NOTREADY = if_inject._SANDBOX_READY, if_inject._SANDBOX_NOTREADY
POD, CONTAINER, NODE = (if_inject._NAMESPACE_MODE[mode] for mode in ("POD", "CONTAINER", "NODE"))

RUNTIME_SERVICE = "runtime.v1.RuntimeService"
IMAGE_SERVICE = "runtime.v1.ImageService"
IMAGE_METHODS = frozenset({"ListImages"})

# Message classes and enums (as {name: number} dicts) by name, e.g.
# M["RunPodSandboxRequest"](config=...), M["ContainerState"]["CONTAINER_RUNNING"].
M: dict[str, Any] = {}  # filled below, by proto_messages(LAB_SCHEMA)

# FieldDescriptorProto's type numbers; the tool's schema uses the first seven,
# the rest let a test write fields the tool does not know.
_SCALARS = {"string": 9, "bool": 8, "int32": 5, "int64": 3, "uint32": 13, "uint64": 4, "bytes": 12,
            "double": 1, "fixed64": 6, "fixed32": 7, "sint64": 18}


def file_descriptor(schema: str, package: str) -> Any:
    """A schema text (if_inject's .proto subset) as a protobuf FileDescriptorProto (proto3)."""
    from google.protobuf import descriptor_pb2

    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}.{id(schema)}.proto", package=package,
                                             syntax="proto3")
    enums = if_inject._schema_enums(schema)
    for name, values in enums.items():
        enum = fdp.enum_type.add(name=name)
        for key, number in values.items():
            enum.value.add(name=key, number=number)
    F = descriptor_pb2.FieldDescriptorProto
    for name, body in if_inject._schema_messages(schema):
        msg = fdp.message_type.add(name=name)
        for repeated, ftype, fname, number in if_inject._schema_fields(body):
            field = msg.field.add(name=fname, number=number, json_name=fname,
                                  label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
            if ftype == "map":  # map<string, string>: a repeated nested XxxEntry message
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
    return fdp


def proto_messages(schema: str, package: str = "runtime.v1") -> dict[str, Any]:
    """protobuf's own message classes for a schema text, and its enums as
    {name: number} dicts, by name. Each call uses a private descriptor pool,
    so that schemas with the same names live side by side. The fakes and the
    lab speak CRI with these; the tool has its own codec (if_inject._Message),
    held against them in test/unit/test_cri_codec.py."""
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    pool.Add(file_descriptor(schema, package))
    classes: dict[str, Any] = dict(if_inject._schema_enums(schema))
    for name, _ in if_inject._schema_messages(schema):
        classes[name] = message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
    return classes


M.update(proto_messages(LAB_SCHEMA))


def service_of(method: str) -> str:
    """The fully qualified gRPC service that serves `method`."""
    return IMAGE_SERVICE if method in IMAGE_METHODS else RUNTIME_SERVICE


def message_types(method: str) -> tuple[Any, Any]:
    """(request class, response class) of a CRI method, e.g. "ExecSync"."""
    return M[f"{method}Request"], M[f"{method}Response"]


def call(channel: Any, method: str, request: Any = None, timeout: float = 10) -> Any:
    """Make the unary CRI call `method` on a grpc channel and return the response.

    `request` is the request message, or a dict of its fields (nested messages
    as dicts too), or None for an empty one:
    call(ch, "ExecSync", {"container_id": cid, "cmd": ["ip", "link"], "timeout": 5}).
    `timeout` is the gRPC deadline in seconds.
    """
    request_cls, response_cls = message_types(method)
    if not isinstance(request, request_cls):
        request = request_cls(**(request or {}))
    stub = channel.unary_unary(f"/{service_of(method)}/{method}",
                               request_serializer=request_cls.SerializeToString,
                               response_deserializer=response_cls.FromString)
    return stub(request, timeout=timeout)


def rpc_handler(service: str, methods: dict[str, Callable[[Any, Any], Any]]) -> Any:
    """A grpc generic handler serving `methods` ({name: fn(request, context)}) for a fake server."""
    import grpc

    handlers = {}
    for name, fn in methods.items():
        request_cls, response_cls = message_types(name)
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=request_cls.FromString,
            response_serializer=response_cls.SerializeToString)
    return grpc.method_handlers_generic_handler(service, handlers)
