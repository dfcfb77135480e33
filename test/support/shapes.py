"""Comparing a fake runtime's answers with a real runtime's, by structure:
the keys of the verbose `info` and their nesting (in Go's order), the JSON
types, where the netns path appears, the state values, and the fields each
CRI message sets. Values that differ from pod to pod are left out.

Used by test/unit/test_fakes_real.py (the documents in test/data) and
test/test_fakes_live.py (the lab's runtimes).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# Maps whose keys are the pod's (labels, interface names), not the runtime's:
# their keys become "*".
FREE_FORM = frozenset({
    "config.labels", "config.annotations", "runtimeSpec.annotations", "runtimeSpec.linux.sysctl",
    "cniResult.Interfaces", "sandboxMetadata.Metadata.Config.labels",
    "sandboxMetadata.Metadata.Config.annotations", "sandboxMetadata.Metadata.CNIResult.Interfaces",
    "labels", "annotations"})
# What a node's configuration decides, not the runtime's version: only its
# presence is compared (runc options: null without any, {"systemd_cgroup":
# true} with SystemdCgroup).
CONFIGURED = frozenset({"runtimeOptions"})
# The fake keeps a cut of the OCI spec: its keys there are a subset.
CUT = ("runtimeSpec",)
# Fields whose values are a runtime's vocabulary, not the pod's.
VOCABULARY = ("processStatus", "netNamespaceClosed", "runtimeHandler", "runtimeType", "snapshotter",
              "sandboxMetadata.Version", "sandboxMetadata.Metadata.RuntimeHandler",
              "sandboxMetadata.Metadata.ProcessLabel")


def json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    return {int: "int", float: "number", str: "string", list: "list", dict: "object"}[type(value)]


def child(path: str, key: str) -> str:
    return f"{path}.{'*' if path in FREE_FORM else key}" if path else key


def walk(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(normalised path, value) of every node: list items as path[], free-form keys as *."""
    yield path, value
    if path in CONFIGURED:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, child(path, key))
    elif isinstance(value, list):
        for item in value:
            yield from walk(item, path + "[]")


def shape(value: Any) -> dict[str, set[str]]:
    """{path: the JSON types found there}."""
    found: dict[str, set[str]] = {}
    for path, item in walk(value):
        found.setdefault(path, set()).add(json_type(item))
    return found


def key_orders(value: Any) -> dict[str, set[tuple[str, ...]]]:
    """{path: the key orders of the objects there}, for Go structs (not free-form maps)."""
    orders: dict[str, set[tuple[str, ...]]] = {}
    for path, item in walk(value):
        if isinstance(item, dict) and path not in FREE_FORM and path not in CONFIGURED:
            orders.setdefault(path, set()).add(tuple(item))
    return orders


def in_cut(path: str) -> bool:
    return any(path == top or path.startswith(top + ".") for top in CUT)


def differences(fake: Any, real: Any) -> list[str]:
    """How the fake's structure differs from the real one's; [] when it does not."""
    fake_shape, real_shape = shape(fake), shape(real)
    found = []
    for path in sorted(fake_shape.keys() | real_shape.keys()):
        if path not in real_shape:
            found.append(f"only the fake has {path or '.'}")
        elif path not in fake_shape:
            if not in_cut(path):
                found.append(f"only the real runtime has {path}")
        elif not fake_shape[path] <= real_shape[path] and path not in CONFIGURED:
            found.append(f"{path}: the fake has {sorted(fake_shape[path])}, "
                         f"the real runtime {sorted(real_shape[path])}")
    fake_orders, real_orders = key_orders(fake), key_orders(real)
    for path, orders in sorted(fake_orders.items()):
        real_order = real_orders.get(path, set())
        same_keys = {frozenset(o) for o in orders} == {frozenset(o) for o in real_order}
        if same_keys and not in_cut(path) and orders != real_order:  # else reported above
            found.append(f"{path or '.'}: keys in the order {sorted(orders)}, "
                         f"the real runtime {sorted(real_order)}")
    return found


def netns_locations(info: Any, netns: str) -> list[str]:
    """Where the netns path appears in an info document."""
    return sorted({path for path, item in walk(info) if item == netns})


def vocabulary(info: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for name in VOCABULARY:
        value: Any = info
        for key in name.split("."):
            value = value.get(key, "<absent>") if isinstance(value, dict) else "<absent>"
        values[name] = value
    return values


def message_shape(message: Any, path: str = "") -> dict[str, str]:
    """{path: type} of the fields a protobuf message sets (as protojson prints them);
    a message of the tool's own codec is read through protobuf's class first."""
    import if_inject
    from support.cri_schema import M

    if isinstance(message, if_inject._Message):
        message = M[message.type.name].FromString(message.encode())
    found = {}
    for descriptor, value in message.ListFields():
        name = child(path, descriptor.name)
        if descriptor.message_type is not None and descriptor.message_type.GetOptions().map_entry:
            found[name] = "map"
        elif descriptor.message_type is not None:
            found[name] = "message"
            found.update(message_shape(value, name))
        elif descriptor.enum_type is not None:
            found[name] = descriptor.enum_type.values_by_number[value].name
        else:
            found[name] = type(value).__name__
    return found


def snake(value: Any, free: bool = False) -> Any:
    """protojson's camelCase keys as the .proto names (not inside maps)."""
    if not isinstance(value, dict):
        return value
    return {(key if free else re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), key)):
            snake(item, key in ("labels", "annotations")) for key, item in value.items()}


def spec_netns(info: dict[str, Any]) -> str:
    (path,) = [ns["path"] for ns in info["runtimeSpec"]["linux"]["namespaces"] if ns["type"] == "network"]
    return str(path)


VERSION_FORMS = {
    # runtimeName: (version, runtimeApiVersion, runtimeVersion as the sources build it)
    "containerd": ("0.1.0", "v1", r"v?\d+\.\d+\.\d+([~+-].*)?"),
    "cri-o": ("0.1.0", "v1", r"\d+\.\d+\.\d+"),
}
