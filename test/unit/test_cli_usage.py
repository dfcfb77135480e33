"""The command line before any runtime is asked: -version, usage, bad flags, label selectors.
No root, no runtime (the endpoint does not exist)."""

from __future__ import annotations

import argparse
import subprocess
from collections.abc import Callable

import pytest

import if_inject as ii
from support.toolrun import Run


def test_version_and_usage(tool: list[str]) -> None:
    run = subprocess.run([*tool, "-version"], capture_output=True, text=True)
    assert (run.returncode, run.stdout, run.stderr) == (0, ii.__version__ + "\n", "")
    bare = subprocess.run(tool, capture_output=True, text=True)
    assert bare.returncode == 2 and bare.stdout == ""
    assert bare.stderr.splitlines()[:5] == ["Subcommands:", "   netns", "   add", "   del", "   check"]


@pytest.mark.parametrize("args, message", [
    (["add", "-ns", "x", "-spec", "s.json"], "the following arguments are required: -pod (or -l, -A)"),
    (["add", "-pod", "p"], "the following arguments are required: -spec/--spec"),
    (["add", "-pod", "p", "-spec", "s", "-interface", "a" * 16], "invalid interface name 'aaaaaaaaaaaaaaaa'"),
    (["add", "-pod", "p", "-spec", "s", "-interface", "a:b"], "invalid interface name 'a:b'"),
    (["add", "-pod", "p", "-spec", "s", "-containerid", "a/b"], "invalid container ID 'a/b'"),
    (["add", "-pod", "p", "-spec", "s", "-args", "novalue"], "invalid CNI args 'novalue'"),
    (["add", "-pod", "p", "-spec", "s", "-capability-args", "{x"], "-capability-args is not JSON"),
    (["add", "-pod", "p", "-spec", "s", "-capability-args", "[]"], "-capability-args must be a JSON object"),
    (["add", "-pod", "p", "-spec", "s", "-l", "app in (a)"], "unsupported label selector term 'app in (a)'"),
    (["add", "-pod", "a", "-pod", "b", "-spec", "s", "-containerid", "c"], "-containerid goes with a single"),
    (["nosuch"], "argument SUBCOMMAND: invalid choice: 'nosuch'"),
    (["netns", "-pod", "p", "-bogus"], "unrecognized arguments: -bogus"),
    (["veth", "-pod", "p", "-mtu", "67"], "invalid MTU 67: 68 to 65535"),
    (["netns", "-pod", "p", "-timeout", "nan"], "invalid timeout nan: seconds, above 0 and below 1e6"),
    (["del", "-pod", "p", "-timeout", "0"], "invalid timeout 0.0: seconds, above 0"),
    (["status", "-spec", "s", "-timeout", "inf"], "invalid timeout inf: seconds, above 0"),
    (["veth", "-pod", "p", "-address", "bad"], "invalid address: 'bad' does not appear"),
    (["veth", "-pod", "p", "-host-interface", "a/b"], "invalid interface name 'a/b'"),
    (["veth", "-pod", "p", "-delete", "-mtu", "1280"], "-delete takes no -address, -host-address or -mtu"),
])
def test_usage_errors_exit_2(tool: list[str], args: list[str], message: str) -> None:
    proc = subprocess.run([*tool, "-r", "/nonexistent", *args], capture_output=True, text=True)
    run = Run(proc.returncode, proc.stdout, proc.stderr)
    assert (run.code, run.out) == (2, "")
    assert run.error.startswith(message), run.error


def parsed(parser: argparse.ArgumentParser, argv: list[str]) -> dict[str, object] | str:
    """What a parser makes of a command line (its run function aside), or its usage error."""
    try:
        args = vars(parser.parse_args(argv))
    except ii._UsageError as e:
        return str(e)
    return {k: v for k, v in args.items() if k not in ("run", "subcommands")}


@pytest.mark.parametrize("argv", [
    ["netns", "-ns", "a", "-pod", "b"], ["-r", "add", "netns", "-pod", "b"], ["-r=add", "del", "-pod", "b"],
    ["-loglevel", "2", "-cache-dir", "veth", "veth", "-pod", "p", "-mtu", "1280"],
    ["-loglevel", "netns", "add", "-pod", "p", "-spec", "s"], ["--", "list"], ["-version"], [],
    ["-cache-dir", "-x", "netns"], ["gc", "-dry-run", "-timeout", "3"], ["netsn", "-pod", "p"],
    ["pods", "-o", "json", "-l", "a=b"], ["status"], ["links", "-pod", "p", "-pod"], ["-bogus", "netns"],
    ["check", "-pod", "p", "-spec", "s", "-r", "x", "-loglevel", "1"], ["-timeout"],
])
def test_the_parser_of_one_subcommand_parses_as_the_whole_one(argv: list[str]) -> None:
    """A command line's parser has its own subcommand's flags only (the rest cost
    every call ~8 ms): what it makes of the line is what the whole parser makes."""
    assert parsed(ii._build_parser(argv), argv) == parsed(ii._build_parser(), argv)


@pytest.mark.parametrize("call, message", [
    (lambda node: node.add_veth("ns", "p", mtu=67), "invalid MTU 67"),
    (lambda node: node.add_veth("ns", "p", address="10.0.0.300/24"), "invalid address"),
    (lambda node: node.add_veth("ns", "p", "a" * 16), "invalid interface name"),
    (lambda node: node.delete_veth("ns", "p", host_ifname="a:b"), "invalid interface name 'a:b'"),
])
def test_node_checks_veth_input_before_asking_the_runtime(call: Callable[[ii.Node], object],
                                                          message: str) -> None:
    with ii.Node("unix:///nonexistent") as node, pytest.raises(ii.InjectError, match=message):
        call(node)


@pytest.mark.parametrize("text, labels", [
    ("", {}),
    ("app=alpine", {"app": "alpine"}),
    (" app == alpine , tier=web ", {"app": "alpine", "tier": "web"}),
    ("example.com/role=db,empty=", {"example.com/role": "db", "empty": ""}),
])
def test_parse_selector(text: str, labels: dict[str, str]) -> None:
    assert ii._parse_selector(text) == labels


@pytest.mark.parametrize("text", ["a=b,", "a=b=c", "!a", "a notin (b)", "a=b c", "A/b=c", "a=" + "v" * 64])
def test_parse_selector_refuses(text: str) -> None:
    with pytest.raises(ii.InjectError):
        ii._parse_selector(text)
