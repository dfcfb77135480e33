"""The CRI schema's file descriptor, serialized by hand (if_inject._file_descriptor, so
that a call needs no descriptor_pb2), held against the one protobuf's own
descriptor_pb2 builds from the same text, field for field; and the classes it
gives, against messages encoded by the descriptor_pb2-built ones."""

from __future__ import annotations

import re
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

import if_inject
from support.cri_schema import LAB_SCHEMA
from support.exe_image import MOUNT_SCHEMA

SCALARS = {"string": 9, "bool": 8, "int32": 5, "int64": 3, "uint32": 13, "uint64": 4, "bytes": 12}


def reference(schema: str, package: str) -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto as descriptor_pb2 builds it (the module's earlier way)."""
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}.{id(schema)}.proto", package=package,
                                             syntax="proto3")
    enums = if_inject._schema_enums(schema)
    for name, values in enums.items():
        enum = fdp.enum_type.add(name=name)
        for key, number in values.items():
            enum.value.add(name=key, number=number)
    F = descriptor_pb2.FieldDescriptorProto
    for name, body in re.findall(r"message\s+(\w+)\s*\{([^}]*)\}", schema):
        msg = fdp.message_type.add(name=name)
        for label, ftype, fname, number in re.findall(r"(repeated\s+)?(\w+)\s+(\w+)\s*=\s*(\d+)", body):
            field = msg.field.add(name=fname, number=int(number), json_name=fname,
                                  label=F.LABEL_REPEATED if label else F.LABEL_OPTIONAL)
            if ftype == "map":
                entry = msg.nested_type.add(name=fname.title().replace("_", "") + "Entry")
                entry.options.map_entry = True
                entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
                entry.field.add(name="value", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
                field.label = F.LABEL_REPEATED
                field.type, field.type_name = F.TYPE_MESSAGE, f".{package}.{name}.{entry.name}"
            elif ftype in SCALARS:
                field.type = SCALARS[ftype]  # type: ignore[assignment]
            else:
                field.type = F.TYPE_ENUM if ftype in enums else F.TYPE_MESSAGE
                field.type_name = f".{package}.{ftype}"
    return fdp


@pytest.mark.parametrize("schema, package", [
    (if_inject._CRI_SCHEMA, "runtime.v1"), (LAB_SCHEMA, "runtime.v1"), (MOUNT_SCHEMA, "mount.v1")])
def test_hand_serialized_descriptor_is_descriptor_pb2s(schema: str, package: str) -> None:
    ours = descriptor_pb2.FileDescriptorProto.FromString(if_inject._file_descriptor(schema, package))
    assert ours == reference(schema, package)
    assert len(ours.message_type) == len(re.findall(r"message\s+\w+\s*\{", schema)) > 0


def test_classes_read_what_descriptor_pb2s_write() -> None:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(reference(if_inject._CRI_SCHEMA, "runtime.v1"))
    response = pool.FindMessageTypeByName("runtime.v1.PodSandboxStatusResponse")
    theirs: Any = message_factory.GetMessageClass(response)
    written = theirs(timestamp=7, info={"info": "{}"})
    written.status.id = "abc"
    written.status.state = if_inject._SANDBOX_NOTREADY
    written.status.labels["app"] = "x"
    written.status.linux.namespaces.options.network = if_inject._NAMESPACE_MODE["NODE"]
    written.status.network.additional_ips.add(ip="10.0.0.2")
    ours = if_inject._cri_classes()["PodSandboxStatusResponse"].FromString(written.SerializeToString())
    status = ours.status
    assert (ours.timestamp, dict(ours.info), status.id, status.state, dict(status.labels),
            status.linux.namespaces.options.network, [ip.ip for ip in status.network.additional_ips]) \
        == (7, {"info": "{}"}, "abc", if_inject._SANDBOX_NOTREADY, {"app": "x"}, 2, ["10.0.0.2"])
