"""if-inject's own CRI codec (if_inject._Message, read from the schema text),
held against protobuf's classes for the same schema: what one writes the other
reads, field for field, and what protobuf refuses the codec refuses too."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import DecodeError

import if_inject
from support.cri_schema import proto_messages
from support.fake_cri import CONTAINERD_17, FakeCRI

OURS = if_inject._cri_messages()
THEIRS = proto_messages(if_inject._CRI_SCHEMA)
NAMES = sorted(OURS)
# The tool's PodSandbox, as a newer runtime sends it: with fields the tool does
# not know, of every wire type (fixed64, fixed32, packed, length-delimited).
WIDER = proto_messages(if_inject._CRI_SCHEMA.replace(
    "string runtime_handler = 7;",
    "string runtime_handler = 7; fixed64 f64 = 20; fixed32 f32 = 21; double d = 22; "
    "repeated int64 packed = 23; PodIP extra = 24; sint64 signed = 25;"))


def fill(message: Any, rng: random.Random) -> Any:
    """A protobuf message with random values in some of its fields, at every depth."""
    for f in message.DESCRIPTOR.fields:
        if rng.random() < 0.3:
            continue
        target = getattr(message, f.name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            for _ in range(rng.randrange(4)):
                target[text(rng)] = text(rng)
        elif f.message_type is not None and f.is_repeated:
            for _ in range(rng.randrange(4)):
                fill(target.add(), rng)
        elif f.message_type is not None:
            fill(target, rng)
            target.SetInParent()  # set, even when empty
        elif f.is_repeated:
            target.extend(scalar(f.type, rng) for _ in range(rng.randrange(4)))
        else:
            setattr(message, f.name, scalar(f.type, rng))
    return message


def scalar(kind: int, rng: random.Random) -> Any:
    """A value of a FieldDescriptor type number."""
    bits = {5: 31, 3: 63, 18: 63, 14: 31}  # int32, int64, sint64, enum: signed
    unsigned = {13: 32, 4: 64, 6: 64, 7: 32}  # uint32, uint64, fixed64, fixed32
    if kind == 9:
        return text(rng)
    if kind == 12:
        return rng.randbytes(rng.randrange(6))
    if kind == 8:
        return rng.random() < 0.5
    if kind in (1, 2):
        return rng.random()
    if kind in bits:
        return rng.choice([0, 1, -1, rng.randrange(-(1 << bits[kind]), 1 << bits[kind])])
    return rng.choice([0, 1, (1 << unsigned[kind]) - 1, rng.randrange(1 << unsigned[kind])])


def text(rng: random.Random) -> str:
    return "".join(rng.choice("az09-/.é☃\x00\n") for _ in range(rng.randrange(5)))


def theirs_view(message: Any) -> dict[str, Any]:
    """What a protobuf message holds: its set fields, as plain values."""
    view: dict[str, Any] = {}
    for f, value in message.ListFields():
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            view[f.name] = dict(value)
        elif f.message_type is not None and f.is_repeated:
            view[f.name] = [theirs_view(item) for item in value]
        elif f.message_type is not None:
            view[f.name] = theirs_view(value)
        else:
            view[f.name] = list(value) if f.is_repeated else value
    return view


def ours_view(message: if_inject._Message) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, if_inject._Message):
            return ours_view(value)
        return [plain(v) for v in value] if isinstance(value, list) else value
    # Zero values sent on the wire read as unset, as proto3 has them.
    return {name: plain(value) for name, value in message.values.items()
            if isinstance(value, if_inject._Message) or value not in ({}, [], "", 0, b"")}


def build(message_type: if_inject._MessageType, view: dict[str, Any]) -> if_inject._Message:
    """Our message of a view, as the tool builds its requests (keyword arguments)."""
    def value(f: if_inject._Field, v: Any) -> Any:
        if f.kind != "message":
            return v
        sub = message_type.types[f.message]
        return [build(sub, item) for item in v] if f.repeated else build(sub, v)
    return message_type(**{name: value(message_type.fields[name], v) for name, v in view.items()})


def test_the_schema_text_is_read_as_written() -> None:
    # Both sides of the tests below are built by this reader: it is held to the text itself.
    schema = """
    enum State { READY = 0; NOT_READY = 1; }
    message Empty { }
    message Item {
        string id = 1; repeated Item children = 12;
        map labels = 3; State state = 4; int64 created_at = 5;
    }
    """
    assert if_inject._schema_enums(schema) == {"State": {"READY": 0, "NOT_READY": 1}}
    assert [name for name, _ in if_inject._schema_messages(schema)] == ["Empty", "Item"]
    assert if_inject._schema_fields(if_inject._schema_messages(schema)[1][1]) == [
        (False, "string", "id", 1), (True, "Item", "children", 12), (False, "map", "labels", 3),
        (False, "State", "state", 4), (False, "int64", "created_at", 5)]
    types = if_inject._message_types(schema)
    assert types["Empty"].fields == {}
    assert [(f.name, f.number, f.kind, f.repeated, f.message) for f in types["Item"].fields.values()] == [
        ("id", 1, "string", False, ""), ("children", 12, "message", True, "Item"),
        ("labels", 3, "map", False, ""), ("state", 4, "enum", False, ""),
        ("created_at", 5, "int64", False, "")]


@pytest.mark.parametrize("name", NAMES)
def test_what_protobuf_writes_the_codec_reads(name: str) -> None:
    rng = random.Random(name)
    for _ in range(50):
        written = fill(THEIRS[name](), rng)
        assert ours_view(OURS[name].decode(written.SerializeToString())) == theirs_view(written)


@pytest.mark.parametrize("name", NAMES)
def test_what_the_codec_writes_protobuf_reads(name: str) -> None:
    rng = random.Random(name + "w")
    for _ in range(50):
        view = theirs_view(fill(THEIRS[name](), rng))
        ours = build(OURS[name], view)
        assert theirs_view(THEIRS[name].FromString(ours.encode())) == view
        assert OURS[name].decode(ours.encode()) == ours


def test_fields_the_schema_leaves_out_are_skipped() -> None:
    rng = random.Random(1)
    for _ in range(100):
        wide = fill(WIDER["PodSandbox"](), rng)
        known = THEIRS["PodSandbox"].FromString(wide.SerializeToString())
        assert ours_view(OURS["PodSandbox"].decode(wide.SerializeToString())) == theirs_view(known)


def test_unset_fields_read_as_protobufs_defaults() -> None:
    empty = OURS["PodSandboxStatusResponse"].decode(b"")
    assert (empty.status.id, empty.status.state, empty.status.linux.namespaces.options.network,
            empty.status.labels, empty.status.network.additional_ips, empty.timestamp, empty.info) \
        == ("", 0, 0, {}, [], 0, {})
    assert empty.encode() == b"" and empty == OURS["PodSandboxStatusResponse"]()
    with pytest.raises(AttributeError, match="PodSandboxStatusResponse has no field nope"):
        empty.nope  # noqa: B018
    with pytest.raises(TypeError, match="VersionRequest has no field versoin"):
        OURS["VersionRequest"](versoin="v1")


def test_a_message_seen_twice_is_merged_as_protobuf_merges_it() -> None:
    first = THEIRS["PodSandboxStatusResponse"](status=THEIRS["PodSandboxStatus"](id="a", labels={"x": "1"}))
    second = THEIRS["PodSandboxStatusResponse"](status=THEIRS["PodSandboxStatus"](state=1, labels={"y": "2"}))
    data = first.SerializeToString() + second.SerializeToString()
    assert ours_view(OURS["PodSandboxStatusResponse"].decode(data)) \
        == theirs_view(THEIRS["PodSandboxStatusResponse"].FromString(data)) \
        == {"status": {"id": "a", "state": 1, "labels": {"x": "1", "y": "2"}}}


@pytest.mark.parametrize("data", [
    b"\x08", b"\x08\xff", b"\x0a\x05ab", b"\x08" + b"\xff" * 10 + b"\x01", b"\x00\x01",
    b"\x0b\x08\x01", b"\x0c", b"\x0b\x10\x01\x14", b"\x0f\x01", b"\x0a\x02\xff\xfe",
    b"\x09\x01\x02", b"\x0d\x01", b"\xff\xff\xff\xff\x7f\x00"])
def test_what_protobuf_refuses_the_codec_refuses(data: bytes) -> None:
    """Truncated values, a varint too long, field 0, groups unended or crossed,
    wire types 6 and 7, a string that is not UTF-8, a key past 32 bits."""
    with pytest.raises(DecodeError):
        THEIRS["VersionResponse"].FromString(data)
    with pytest.raises(ValueError):
        OURS["VersionResponse"].decode(data)


def test_damaged_answers_are_read_or_refused_as_protobuf_does() -> None:
    """Valid answers with bytes flipped, cut, or inserted: the codec and
    protobuf refuse the same ones and read the same from the rest."""
    rng = random.Random(7)
    outcomes = set()
    for _ in range(3000):
        name = rng.choice(NAMES)
        data = bytearray(fill(THEIRS[name](), rng).SerializeToString() or b"\x08\x01")
        at = rng.randrange(len(data))
        change = rng.randrange(3)
        if change == 0:
            data[at] = rng.randrange(256)
        elif change == 1:
            del data[at:]
        else:
            data[at:at] = rng.randbytes(rng.randrange(1, 4))
        try:
            theirs: Any = theirs_view(THEIRS[name].FromString(bytes(data)))
        except DecodeError:
            theirs = "refused"
        try:
            ours: Any = ours_view(OURS[name].decode(bytes(data)))
        except ValueError:
            ours = "refused"
        assert ours == theirs, (name, bytes(data))
        outcomes.add(theirs == "refused")
    assert outcomes == {True, False}


def test_bytes_fields_are_read_as_bytes() -> None:
    blob = if_inject._message_types("message Blob { bytes data = 1; string name = 2; }")["Blob"]
    message = blob(data=b"\x00\xff", name="x")
    assert blob.decode(message.encode()).values == {"data": b"\x00\xff", "name": "x"}
    assert blob.decode(b"").data == b""


@pytest.mark.parametrize("answer, reason", [
    (b"\x0a\x05ab", "truncated"),
    (b"\x0b" * 5000 + b"\x0c" * 5000, "maximum recursion depth exceeded"),  # groups in groups
])
def test_a_malformed_answer_is_a_decoding_error(tmp_path: Path, answer: bytes, reason: str) -> None:
    """Through real gRPC: the runtime's answer is input, checked like any other."""
    with FakeCRI(tmp_path / "cri.sock", CONTAINERD_17, raw={"PodSandboxStatus": answer}) as cri, \
            if_inject._RuntimeClient(cri.endpoint, timeout=5) as client:
        request = OURS["PodSandboxStatusRequest"](pod_sandbox_id="x", verbose=True)
        with pytest.raises(if_inject.InjectError) as raised:
            client.call("PodSandboxStatus", request)
    assert str(raised.value).startswith("PodSandboxStatus: the runtime's answer is not a "
                                        f"PodSandboxStatusResponse: {reason}")
    assert raised.value.code == if_inject.CODE_DECODING
