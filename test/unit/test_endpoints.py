"""Where the tool looks for the runtime, and what each runtime sends: fake
runtimes (support/fake_cri.py) on sockets in a temporary directory. No root,
no network namespace: test/test_runtimes.py runs the plugins through them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import if_inject
from support import REPO
from support.fake_cri import (
    CONTAINERD_17,
    CONTAINERD_20,
    CONTAINERD_23,
    CRI_DOCKERD,
    CRIO,
    NAME,
    NS,
    FakeCRI,
    Runtime,
    Serve,
    SilentSocket,
    containerd2_sandbox,
    dead_socket,
)
from support.toolrun import error_of
from support.toolrun import run_clean as run


def connected_to(out: subprocess.CompletedProcess[str]) -> str:
    """The runtime version in the "Runtime connected" log line (-loglevel 1)."""
    for line in out.stderr.splitlines():
        record = json.loads(line)
        if record["msg"] == "Runtime connected":
            return str(record["runtimeVersion"])
    raise AssertionError(f"not connected: {out.stderr}")


@pytest.mark.parametrize("runtime", [CRIO, CONTAINERD_17, CONTAINERD_20, CONTAINERD_23, CRI_DOCKERD],
                         ids=lambda r: r.label)
def test_what_each_runtime_sends_without_verbose(runtime: Runtime, serve: Serve) -> None:
    """Only containerd 2.3 fills info without verbose, and then with nothing usable in it."""
    sandbox = containerd2_sandbox(NAME, "/var/run/netns/x", 4242, NS)
    cri = serve(runtime, [sandbox])
    with if_inject._RuntimeClient(cri.endpoint, timeout=2) as client:
        request = client.messages["PodSandboxStatusRequest"](pod_sandbox_id=sandbox.id)
        info = dict(client.call("PodSandboxStatus", request).info)
    if runtime is CONTAINERD_23:
        quiet = json.loads(info.pop("info"))
        assert (quiet["runtimeSpec"], quiet["sandboxMetadata"], quiet["pid"]) == (None, None, 0)
    assert info == {}


# ---- where the tool looks for the runtime ----------------------------------------

# The default list's slots, in if_inject._DEFAULT_ENDPOINTS' order.
SLOTS = ("run-crio", "run-containerd", "var-run-crio", "cri-dockerd")


def make_slot(kind: str, path: Path, serve: Serve, stack: list[SilentSocket]) -> None:
    """Put `kind` at `path`: missing, file (not a socket), dead (no listener),
    silent (accepts, never answers), v1alpha2 (old runtime) or live (answers)."""
    if kind == "file":
        path.write_text("")
    elif kind == "dead":
        dead_socket(path)
    elif kind == "silent":
        stack.append(SilentSocket(path).__enter__())
    elif kind in ("live", "v1alpha2"):
        runtime = Runtime("fake", path.stem)  # the version says who answered
        serve(runtime, [], name=path.name, v1alpha2_only=kind == "v1alpha2")


@pytest.fixture
def slots(sock_dir: Path, serve: Serve, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[Callable[[list[str]], list[str]]]:
    """slots(kinds): the default endpoints, moved to tmp paths holding `kinds`; returns them."""
    silent: list[SilentSocket] = []
    monkeypatch.delenv("CONTAINER_RUNTIME_ENDPOINT", raising=False)

    def make(kinds: list[str]) -> list[str]:
        paths = [sock_dir / f"{slot}.sock" for slot in SLOTS]
        for kind, path in zip(kinds, paths, strict=True):
            make_slot(kind, path, serve, silent)
        endpoints = [f"unix://{path}" for path in paths]
        monkeypatch.setattr(if_inject, "_DEFAULT_ENDPOINTS", tuple(endpoints))
        return endpoints

    yield make
    for sock in silent:
        sock.__exit__()


SEARCHES: dict[str, tuple[list[str], int]] = {
    "all-live": (["live", "live", "live", "live"], 0),
    "crio-missing": (["missing", "live", "live", "live"], 1),
    "crio-not-a-socket": (["file", "live", "live", "live"], 1),
    "crio-dead": (["dead", "live", "live", "live"], 1),
    "crio-silent": (["silent", "live", "live", "live"], 1),
    "crio-v1alpha2-only": (["v1alpha2", "live", "live", "live"], 1),
    "var-run-crio": (["missing", "dead", "live", "live"], 2),
    "cri-dockerd-last": (["file", "dead", "missing", "live"], 3),
}


@pytest.mark.parametrize("search", SEARCHES)
def test_the_first_default_endpoint_that_answers_is_used(
        search: str, slots: Callable[[list[str]], list[str]]) -> None:
    kinds, chosen = SEARCHES[search]
    endpoints = slots(kinds)
    # How soon a silent slot is passed over is a speed target: `make bench`.
    with if_inject._RuntimeClient(timeout=0.5) as client:
        assert client.endpoint == endpoints[chosen]
        assert client.version.runtime_version == SLOTS[chosen]


def test_no_default_endpoint_answers(slots: Callable[[list[str]], list[str]]) -> None:
    endpoints = slots(["missing", "file", "dead", "silent"])
    with pytest.raises(if_inject.InjectError) as failed:
        if_inject._RuntimeClient(timeout=0.5)
    message = failed.value.msg
    assert message.startswith("no container runtime answers: ")
    for endpoint, why in zip(endpoints, ["No such file or directory", "not a unix socket",
                                         "Version: UNAVAILABLE", "Version: DEADLINE_EXCEEDED"], strict=True):
        assert f"{endpoint}: {why}" in message


def test_env_and_argument_come_before_the_defaults(
        slots: Callable[[list[str]], list[str]], serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    slots(["live", "live", "live", "live"])
    env = serve(Runtime("fake", "env"), name="env.sock")
    flag = serve(Runtime("fake", "flag"), name="flag.sock")
    monkeypatch.setenv("CONTAINER_RUNTIME_ENDPOINT", env.endpoint)
    with if_inject._RuntimeClient(timeout=2) as client:
        assert client.version.runtime_version == "env"
    with if_inject._RuntimeClient(flag.endpoint, timeout=2) as client:
        assert client.version.runtime_version == "flag"


def test_a_chosen_endpoint_that_fails_is_not_replaced(
        slots: Callable[[list[str]], list[str]], sock_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An explicit endpoint (env or argument) is the one the user wants: no silent fallback."""
    slots(["live", "live", "live", "live"])
    dead = "unix://" + dead_socket(sock_dir / "dead.sock")
    monkeypatch.setenv("CONTAINER_RUNTIME_ENDPOINT", dead)
    with pytest.raises(if_inject.InjectError, match=f"^no container runtime answers: {dead}: "
                                                    "Version: UNAVAILABLE"):
        if_inject._RuntimeClient(timeout=2)
    monkeypatch.delenv("CONTAINER_RUNTIME_ENDPOINT")
    with pytest.raises(if_inject.InjectError, match=f"^no container runtime answers: {dead}: "):
        if_inject._RuntimeClient(dead, timeout=2)


# Runs the CLI with if_inject._DEFAULT_ENDPOINTS replaced: argv is REPO, the
# four endpoints, then the tool's arguments. (The real defaults are system paths.)
WITH_DEFAULTS = ("import sys; sys.path.insert(0, sys.argv[1]); import if_inject; "
                 "if_inject._DEFAULT_ENDPOINTS = tuple(sys.argv[2:6]); "
                 "sys.exit(if_inject.main(sys.argv[6:]))")


def test_cli_endpoint_precedence_flag_env_defaults(serve: Serve, sock_dir: Path) -> None:
    def runtime(version: str) -> FakeCRI:
        return serve(Runtime("fake", version), name=f"{version}.sock")
    defaults = [f"unix://{sock_dir}/missing.sock", "unix://" + dead_socket(sock_dir / "dead.sock"),
                runtime("default").endpoint, runtime("last").endpoint]
    env, flag = runtime("env"), runtime("flag")
    cli = [sys.executable, "-c", WITH_DEFAULTS, str(REPO), *defaults, "-loglevel", "1"]
    query = ["netns", "-ns", NS, "-pod", NAME]  # no pod anywhere: exit 1 after connecting

    assert connected_to(run(cli, "-runtime-endpoint", flag.endpoint, *query,
                            env={"CONTAINER_RUNTIME_ENDPOINT": env.endpoint})) == "flag"
    assert connected_to(run(cli, "-r", flag.endpoint, *query)) == "flag"
    assert connected_to(run(cli, *query, env={"CONTAINER_RUNTIME_ENDPOINT": env.endpoint})) == "env"
    assert connected_to(run(cli, *query)) == "default"
    # An empty variable is no choice: the defaults are searched.
    assert connected_to(run(cli, *query, env={"CONTAINER_RUNTIME_ENDPOINT": ""})) == "default"


def test_cli_endpoint_faults(tool: list[str], sock_dir: Path) -> None:
    query = ["netns", "-ns", NS, "-pod", NAME]
    not_a_socket = sock_dir / "file.sock"
    not_a_socket.write_text("")
    cases = {
        "tcp://127.0.0.1:10010": "unsupported runtime endpoint tcp://127.0.0.1:10010: only unix sockets are",
        f"unix://{sock_dir}/missing.sock": f"unix://{sock_dir}/missing.sock: No such file or directory",
        f"unix://{not_a_socket}": f"unix://{not_a_socket}: not a unix socket",
        "unix://" + dead_socket(sock_dir / "dead.sock"): f"unix://{sock_dir}/dead.sock: Version: UNAVAILABLE",
    }
    for endpoint, words in cases.items():
        assert words in error_of(run(tool, "-runtime-endpoint", endpoint, *query))
        assert words in error_of(run(tool, *query, env={"CONTAINER_RUNTIME_ENDPOINT": endpoint}))


def test_cli_socket_that_never_answers_times_out(tool: list[str], sock_dir: Path) -> None:
    with SilentSocket(sock_dir / "silent.sock") as silent:
        started = time.monotonic()
        out = run(tool, "-runtime-endpoint", silent.endpoint, "-timeout", "1",
                  "netns", "-ns", NS, "-pod", NAME, timeout=10)
        elapsed = time.monotonic() - started
    assert f"{silent.endpoint}: Version: DEADLINE_EXCEEDED: no answer within 1s" in error_of(out)
    # The tool waited for -timeout (a deadline cannot pass early); how soon it
    # returns after it is a speed target: `make bench`.
    assert elapsed >= 1
