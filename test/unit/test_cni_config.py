"""The CNI layer's input: specs, validators, CNI_ARGS, what a plugin gets on stdin.
No root, no plugin run: test/test_cni.py runs the real plugins into namespaces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import if_inject as ii
from support import CNI_BIN, REPO

# ---- config loading -----------------------------------------------------

@pytest.mark.parametrize("raw, message, code", [
    (b"", "empty", ii.CODE_INVALID_CONFIG),
    (b"  \n", "empty", ii.CODE_INVALID_CONFIG),
    (b"{nope", "not JSON", ii.CODE_DECODING),
    (b"[1, 2]", "not a JSON object", ii.CODE_INVALID_CONFIG),
    (b'{"name": "n", "cniVersion": "1.0.0"}', "neither a plugin conf", ii.CODE_INVALID_CONFIG),
    (b'{"name": "n", "cniVersion": "1.0.0", "plugins": []}', "non-empty list", ii.CODE_INVALID_CONFIG),
    (b'{"name": "n", "cniVersion": "9.9.9", "type": "ptp"}', "unknown cniVersion '9.9.9'",
     ii.CODE_INCOMPATIBLE_VERSION),
    (b'{"name": "n", "type": "ptp"}', "unknown cniVersion None", ii.CODE_INCOMPATIBLE_VERSION),
    (b'{"name": "-bad", "cniVersion": "1.0.0", "type": "ptp"}', "invalid network name",
     ii.CODE_INVALID_CONFIG),
    (b'{"name": "n", "cniVersion": "1.0.0", "type": "../../bin/sh"}', "must be a plain file name",
     ii.CODE_INVALID_CONFIG),
    (b'{"name": "n", "cniVersion": "1.0.0", "plugins": [{"type": ""}]}', "needs a 'type'",
     ii.CODE_INVALID_CONFIG),
    (b'{"name": "n", "cniVersion": "1.0.0", "plugins": ["ptp"]}', "needs a 'type'", ii.CODE_INVALID_CONFIG),
    # NaN and Infinity: Python's json reads them, Go's (libcni's, the plugins') does not
    (b'{"name": "n", "cniVersion": "1.0.0", "type": "ptp", "mtu": NaN}', "not JSON (NaN is not JSON)",
     ii.CODE_DECODING),
    (b'{"name": "n", "cniVersion": "1.0.0", "type": "ptp", "x": -Infinity}', "-Infinity is not JSON",
     ii.CODE_DECODING),
    (b"[" * 100_000, "not JSON (nested too deep)", ii.CODE_DECODING),
    # past int's 4,300 digits: no version, not a traceback
    (b'{"name": "n", "cniVersion": "1.0.0", "cniVersions": ["1.' + b"9" * 5000
     + b'"], "plugins": [{"type": "a"}]}', "invalid CNI version '1.999", ii.CODE_INVALID_CONFIG),
])
def test_bad_specs_are_refused_before_anything_runs(raw: bytes, message: str, code: int) -> None:
    with pytest.raises(ii.InjectError) as e:
        ii.parse_network_config(raw, "x.json")
    assert str(e.value).startswith("x.json: ") and message in str(e.value)
    assert e.value.code == code


def test_spec_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ii.InjectError, match="No such file or directory"):
        ii.read_network(str(tmp_path / "missing.json"))
    with pytest.raises(ii.InjectError, match="Is a directory"):
        ii.read_network(str(tmp_path))


def test_a_spec_that_never_ends_is_refused_at_its_limit() -> None:
    """/dev/zero (or an endless pipe) is read to 4 MiB, not until memory runs out."""
    with pytest.raises(ii.InjectError) as e:
        ii.read_network("/dev/zero")
    assert str(e.value) == "spec /dev/zero: larger than 4 MiB: not a network spec"


def test_a_yaml_alias_bomb_is_refused_without_being_expanded() -> None:
    """Nine levels of nine aliases: its text would have 387 million elements."""
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    bomb = "\n".join(["x:", *("  " + line for line in levels), "apiVersion: k8s.cni.cncf.io/v1",
                      "kind: NetworkAttachmentDefinition", "metadata:", "  name: *i"])
    with pytest.raises(ii.InjectError) as e:
        ii.parse_spec(bomb.encode(), "bomb.yaml")
    assert str(e.value) == ("bomb.yaml: NetworkAttachmentDefinition with an invalid metadata.name "
                            "of type list")
    kind = bomb.replace("kind: NetworkAttachmentDefinition", "kind: *i")
    with pytest.raises(ii.InjectError) as e:
        ii.parse_spec(kind.encode(), "bomb.yaml")
    assert str(e.value) == ("bomb.yaml: a document of kind of type list and apiVersion k8s.cni.cncf.io/v1, "
                            "not a NetworkAttachmentDefinition of k8s.cni.cncf.io/v1")


def test_single_conf_becomes_a_list_of_one() -> None:
    net = ii.read_network(str(REPO / "examples" / "ptp.json"))
    assert (net.name, net.cni_version, [p["type"] for p in net.plugins]) == ("mynet", "1.0.0", ["ptp"])


@pytest.mark.parametrize("ifname", ["", "a" * 16, ".", "..", "a/b", "a:b", "a b", "a\tb"])
def test_invalid_interface_names(ifname: str) -> None:
    with pytest.raises(ii.InjectError, match="invalid interface name"):
        ii.Attachment("c1", "/x", ifname)


@pytest.mark.parametrize("cid", ["", "-x", "a/b", "a b", "ä"])
def test_invalid_container_ids(cid: str) -> None:
    with pytest.raises(ii.InjectError, match="invalid container ID"):
        ii.Attachment(cid, "/x", "net1")


def test_cni_args() -> None:
    assert ii._parse_cni_args("A=1;B=x=y;") == [("A", "1"), ("B", "x=y")]
    for bad in ("A", "=1", "A=1;B"):
        with pytest.raises(ii.InjectError, match="invalid CNI args"):
            ii._parse_cni_args(bad)


def test_plugin_stdin_as_libcni_builds_it() -> None:
    net = ii.parse_network_config(json.dumps({"cniVersion": "1.0.0", "name": "n", "plugins": [
        {"type": "a"}, {"type": "tuning", "capabilities": {"mac": True, "ips": False}}]}).encode())
    att = ii.Attachment("c", "/x", capability_args={"mac": "02:00:00:00:00:01", "ips": ["1.2.3.4/24"]})
    first = json.loads(ii._plugin_stdin(net, net.plugins[0], att, None))
    assert first == {"type": "a", "name": "n", "cniVersion": "1.0.0"}
    second = json.loads(ii._plugin_stdin(net, net.plugins[1], att, {"cniVersion": "1.0.0"}))
    assert second["runtimeConfig"] == {"mac": "02:00:00:00:00:01"}
    assert second["prevResult"] == {"cniVersion": "1.0.0"}


def test_plugin_not_found(tmp_path: Path) -> None:
    with pytest.raises(ii.InjectError, match="plugin 'nosuch' not found in CNI path") as e:
        ii._find_plugin("nosuch", [str(tmp_path), CNI_BIN])
    assert e.value.code == ii.CODE_NOT_AVAILABLE
