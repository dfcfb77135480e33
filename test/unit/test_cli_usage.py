"""The command line before any runtime is asked: -version, usage, bad flags, label selectors.
No root, no runtime (the endpoint does not exist)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import if_inject as ii
from support import REPO
from support.toolrun import Run


def test_version_and_usage(tool: list[str]) -> None:
    run = subprocess.run([*tool, "-version"], capture_output=True, text=True)
    assert (run.returncode, run.stdout, run.stderr) == (0, ii.__version__ + "\n", "")
    bare = subprocess.run(tool, capture_output=True, text=True)
    assert bare.returncode == 2 and bare.stdout == ""
    assert bare.stderr.splitlines()[:5] == ["Subcommands:", "   netns", "   add", "   del", "   check"]
    assert json.loads(bare.stderr.splitlines()[-1])["error"] == "no subcommand: give one of those above"


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
    (["add", "-pod", "p", "-spec", "s", "-capability-args", '{"a": NaN}'],
     "-capability-args is not JSON: NaN is not JSON"),
    (["add", "-pod", "p", "-spec", "s", "-capability-args", "[" * 5000], "-capability-args is not JSON"),
    (["netns", "-ns", "\udcff", "-pod", "p"], "'\\udcff' is not valid UTF-8 text (only file names"),  # 0xff
    (["add", "-pod", "p", "-spec", "s", "-interface", "n\udcff"], "'n\\udcff' is not valid UTF-8 text"),
    (["add", "-pod", "p\udcff", "-spec", "s\udcff"], "'p\\udcff' is not valid UTF-8 text"),
    (["-cache-dir", "", "status", "-spec", "s"], "the cache dir must not be empty"),
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


@pytest.mark.parametrize("shell, code, out, error", [
    (">&-", 1, "", "stdout could not be written (Bad file descriptor): the output was not fully written"),
    ("<&- >&-", 1, "", "stdout could not be written (Bad file descriptor): the output was not fully written"),
    ("2>&-", 0, '{"network": "mynet", "cniVersion": "1.0.0", "status": "not asked"}\n', ""),
])
def test_a_stream_closed_by_the_caller(tool: list[str], tmp_path: Path, shell: str, code: int, out: str,
                                       error: str) -> None:
    """A closed stdout fails as a closed pipe does, in one line; a closed stderr loses
    only the log."""
    spec = str(REPO / "examples" / "ptp.json")
    argv = [*tool, "-cache-dir", str(tmp_path / "cni"), "status", "-spec", spec]
    proc = subprocess.run(["bash", "-c", f'exec "$@" {shell}', "-", *argv], capture_output=True, text=True)
    assert (proc.returncode, proc.stdout) == (code, out), proc.stderr
    assert [json.loads(line)["error"] for line in proc.stderr.splitlines() if '"error"' in line] == \
        ([error] if error else [])


@pytest.mark.parametrize("args, shell, why", [
    (["-version"], ">/dev/full", "No space left on device"), (["-version"], ">&-", "Bad file descriptor"),
    (["list", "-h"], ">&-", "Bad file descriptor"), (["-h"], ">/dev/full", "No space left on device"),
    (["add", "-h"], ">/dev/full", "No space left on device")])
def test_version_and_help_that_cannot_be_written_are_one_error_line(
        tool: list[str], args: list[str], shell: str, why: str) -> None:
    proc = subprocess.run(["bash", "-c", f'exec "$@" {shell}', "-", *tool, *args], capture_output=True,
                          text=True)
    assert proc.returncode == 1 and Run(1, "", proc.stderr).error == (
        f"stdout could not be written ({why}): the output was not fully written")


def test_a_spec_no_one_writes_ends_with_a_signal(tool: list[str], tmp_path: Path) -> None:
    """A FIFO without a writer (or `-spec <(a command that hangs)`) waits in open:
    SIGTERM ends that wait, with one error line."""
    fifo = tmp_path / "spec"
    os.mkfifo(fifo)
    proc = subprocess.Popen([*tool, "-cache-dir", str(tmp_path / "cni"), "status", "-spec", str(fifo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not in_fifo_open(proc.pid):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    run = Run(proc.returncode, out, err)
    assert (run.code, run.out, run.error) == (1, "", "interrupted by SIGTERM")


def in_fifo_open(pid: int) -> bool:
    """Whether `pid` waits in the open of a FIFO for a writer: the kernel's wait, or,
    where /proc hides kernel symbols, asleep in openat (no other open sleeps here)."""
    wchan = Path(f"/proc/{pid}/wchan").read_text()
    if wchan != "0":
        return wchan == "wait_for_partner"
    state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return state == "S" and Path(f"/proc/{pid}/syscall").read_text().split()[0] == "257"  # openat
