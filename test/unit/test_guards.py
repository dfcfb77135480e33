"""The tool's guards, without root or a runtime: one runtime connection for
threads asking at once, and signals held whatever thread receives them."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import if_inject as ii
from support import REPO
from support.toolrun import fake_plugin, with_signals

# ---- the API: one runtime connection, whatever the threads ----------------------------------

def test_node_client_is_made_once_for_threads_asking_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []

    class SlowClient:
        def __init__(self, endpoint: str | None, timeout: float) -> None:
            time.sleep(0.05)  # as a connect does: the others ask meanwhile
            made.append(self)

        def close(self) -> None:
            made.remove(self)

    monkeypatch.setattr(ii, "_RuntimeClient", SlowClient)
    node = ii.Node("unix:///nowhere.sock")
    barrier = threading.Barrier(8)
    seen: list[object] = []

    def ask() -> None:
        barrier.wait()
        seen.append(node.client)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(made) == 1 and seen == made * 8
    node.close()
    assert made == []


# ---- the signal guard itself ----------------------------------------------------------------

GUARD_SCRIPT = """
import os, signal, sys, threading, time
import if_inject as ii

ii._signals.install()
log = []

def from_another_thread(signum):  # as the kernel may deliver it: to grpc's thread, a pool's
    thread = threading.Thread(target=lambda: signal.pthread_kill(threading.get_ident(), signum))
    thread.start()
    thread.join()
    time.sleep(0.05)  # the main thread runs the handler meanwhile

try:
    with ii._interruptible():
        with ii._signals_deferred():
            from_another_thread(signal.SIGTERM)
            from_another_thread(signal.SIGINT)
            log.append("held step finished")
        log.append("interruptible step went on")
except KeyboardInterrupt as e:
    log.append(f"then interrupted by {e}")
from_another_thread(signal.SIGHUP)
log.append("held by default")
try:
    with ii._interruptible():
        log.append("interruptible step ran")
except KeyboardInterrupt as e:
    log.append(f"interrupted on entry by {e}")
print(log, ii._interrupted())
"""


def test_every_signal_that_would_end_it_from_outside_is_held() -> None:
    """Linux's standard signals not held are exactly those that cannot end it
    from outside (KILL, STOP: not catchable), those whose default is to ignore
    or to stop (CHLD, CONT, TSTP, TTIN, TTOU, URG, WINCH), PIPE (Python ignores
    it: a closed stdout is reported), and the faults a program raises on itself."""
    not_held = {signal.Signals(n).name for n in range(1, 32)} - {
        signal.Signals(n).name for n in ii._SignalGuard.signals() if n < 32}
    assert not_held == {"SIGKILL", "SIGSTOP", "SIGCHLD", "SIGCONT", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG",
                        "SIGWINCH", "SIGPIPE", "SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS",
                        "SIGABRT"}
    assert set(range(signal.SIGRTMIN, signal.SIGRTMAX + 1)) <= set(ii._SignalGuard.signals())


def test_signals_are_held_whatever_thread_receives_them() -> None:
    proc = subprocess.run(with_signals([sys.executable, "-c", GUARD_SCRIPT]), capture_output=True, text=True,
                          timeout=30, cwd=REPO)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.strip() == str(["held step finished", "then interrupted by SIGTERM", "held by default",
                                       "interrupted on entry by SIGHUP"]) + " SIGTERM"


GC_SCRIPT = """
import json, os, signal, sys, threading
import if_inject as ii

ii._signals.install()
bin_dir = sys.argv[1]
network = ii.parse_network_config(json.dumps({"cniVersion": "1.1.0", "name": "n",
                                              "plugins": [{"type": "a"}, {"type": "b"}]}).encode())
cni = ii.CNI([bin_dir], os.path.join(bin_dir, "cache"))
threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
print(cni._gc_plugins(network, []), ii._interrupted())
try:
    with ii._interruptible():
        print("not stopped")
except KeyboardInterrupt as e:
    print(f"stopped by {e} at the next step")
"""


def test_a_gc_runs_its_plugins_to_the_end_whatever_signal_comes(tmp_path: Path) -> None:
    """Plugins' GC is a clean-up, as DEL: a signal meanwhile is noted, every plugin
    finishes, and the next step that may be interrupted stops."""
    log = tmp_path / "log"
    for name in ("a", "b"):
        fake_plugin(tmp_path, name, f"cat > /dev/null\necho {name} started >> {log}\nsleep 0.5\n"
                                    f"echo {name} done >> {log}")
    proc = subprocess.run(with_signals([sys.executable, "-c", GC_SCRIPT, str(tmp_path)]),
                          capture_output=True, text=True, timeout=30, cwd=REPO)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout.splitlines() == ["[] SIGTERM", "stopped by SIGTERM at the next step"]
    assert log.read_text().splitlines() == ["a started", "a done", "b started", "b done"]


GC_DELS_SCRIPT = """
import json, os, signal, sys
import if_inject as ii

ii._signals.install()
cache = sys.argv[1]
network = ii.parse_network_config(json.dumps({"cniVersion": "1.0.0", "name": "n", "type": "a"}).encode())
for i in range(3):
    pod = ii.Pod("ns", f"p{i}", uid="u", sandbox_id=f"s{i}")
    ii._write_cache(cache, network, ii.Attachment(f"s{i}", "", "net1", pod=pod), None)
stale = [c._replace(stale=True) for c in ii._cached_attachments(cache)]
node = ii.Node("/nonexistent", 5, ["/nonexistent"], cache)
node.attachments = lambda *a: stale
deleted = []

def delete_cached(cached, network=None, netns=None):
    deleted.append(cached.pod)
    os.kill(os.getpid(), signal.SIGTERM)  # held while the DEL runs: noted
    return True

node.delete_cached = delete_cached
try:
    if sys.argv[2] == "gc":
        for record in node.gc():
            print(record.attachment.pod, record.action)
    else:  # del from the cache, every network's net1 of one pod
        for i in range(3):
            stale[i] = stale[i]._replace(pod="p", namespace="ns")
        ii._cached_attachments = lambda cache_dir: stale
        node._delete_from_cache("ns", "p", None, "net1")
except KeyboardInterrupt as e:
    print(f"stopped by {e} after", deleted)
"""


@pytest.mark.parametrize("command", ["gc", "del"])
def test_gc_and_del_stop_between_their_dels_when_a_signal_comes(tmp_path: Path, command: str) -> None:
    """Each DEL runs to its end, but the next one does not start."""
    argv = [sys.executable, "-c", GC_DELS_SCRIPT, str(tmp_path / "cni"), command]
    proc = subprocess.run(with_signals(argv), capture_output=True, text=True, timeout=30, cwd=REPO)
    assert (proc.returncode, proc.stderr) == (0, "")
    first = "p0" if command == "gc" else "p"
    assert proc.stdout.splitlines() == [f"{first} deleted"] * (command == "gc") + [
        f"stopped by SIGTERM after ['{first}']"]


# A stand-in for a module of the standard library that the tool imports as it starts (signal
# first, then argparse): it says where the import is, then waits for a signal (the tool's
# start, caught at a known point), then loads the real one.
SLOW_MODULE = """
import _signal, importlib.util, os, sysconfig
os.write(int(os.environ["READY_FD"]), b"importing")
_signal.pause()
spec = importlib.util.spec_from_file_location(__name__, sysconfig.get_path("stdlib") + f"/{__name__}.py")
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
globals().update(vars(module))
"""


@pytest.mark.parametrize("program", ["if_inject.py", "tools/if-inject"])
@pytest.mark.parametrize("module", ["signal", "argparse"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_while_the_tool_starts_ends_it_without_a_traceback(
        tmp_path: Path, program: str, module: str, signum: signal.Signals) -> None:
    """Before main() takes the signals over nothing is done: each ends the tool by its
    default action, SIGINT as SIGTERM, and never as Python's KeyboardInterrupt traceback
    (from the first import of the tool's own code on: Python's start is Python's)."""
    (tmp_path / f"{module}.py").write_text(SLOW_MODULE)
    ready, ready_w = os.pipe()
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}:{REPO}", READY_FD=str(ready_w))
    # with_signals: none of them ignored, as they would be under nohup or in a background job
    proc = subprocess.Popen(with_signals([sys.executable, str(REPO / program), "netns", "-pod", "p"]),
                            env=env, pass_fds=[ready_w], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    os.close(ready_w)
    try:
        assert os.read(ready, 100) == b"importing"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(ready)
        proc.kill()
        proc.wait()
    assert (proc.returncode, out, err) == (-signum, "", "")


def _literals_of(path: Path, found: Callable[[ast.AST], ast.expr | None]) -> list[object]:
    """The literal values of the expressions `found` picks out of the file's syntax tree."""
    picked = (found(node) for node in ast.walk(ast.parse(path.read_text())))
    return [ast.literal_eval(expr) for expr in picked if expr is not None]


def _gc_threshold(node: ast.AST) -> ast.expr | None:
    """X of a call `....set_threshold(X)`."""
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return None
    return node.args[0] if node.func.attr == "set_threshold" else None


def _version_forms(node: ast.AST) -> ast.expr | None:
    """The tuple T of a test `... in T` naming -version."""
    if isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In):
        forms = node.comparators[0]
        if isinstance(forms, ast.Tuple) and "-version" in ast.unparse(forms):
            return forms
    return None


def test_the_installed_command_starts_as_a_script_run_does() -> None:
    """tools/if-inject repeats, before it imports if_inject, what if_inject.py does
    at its top for a script run: the same -version forms answered early and the
    same cyclic GC threshold (_tune_gc's). Read from both files, so that neither
    drifts. (Their SIGINT reset: test_a_signal_while_the_tool_starts_... above.)"""
    module, script = REPO / "if_inject.py", REPO / "tools" / "if-inject"
    thresholds, forms = _literals_of(module, _gc_threshold), _literals_of(module, _version_forms)
    assert thresholds == _literals_of(script, _gc_threshold) and len(thresholds) == 1
    assert forms == _literals_of(script, _version_forms) and len(forms) == 1


# ---- many pods at once: for_each_pod ---------------------------------------------------------

def test_each_pod_is_yielded_as_it_finishes_with_its_own_error() -> None:
    def work(ns: str, name: str) -> str:
        if name == "b":
            raise ii.InjectError("b failed")
        return f"{ns}/{name} done"

    outcomes = [(ns, name, str(outcome)) for ns, name, outcome in
                ii.for_each_pod([("x", "a"), ("x", "b"), ("y", "c")], work, parallel=1)]
    assert outcomes == [("x", "a", "x/a done"), ("x", "b", "b failed"), ("y", "c", "y/c done")]


BATCH_SCRIPT = """
import os, signal, threading
import if_inject as ii

ii._signals.install()
both_started = threading.Barrier(2)  # p0 and p1, one on each worker
skipped = threading.Event()  # set once the batch has yielded a pod it did not start

def work(ns, name):
    both_started.wait(10)
    if name == "p0":
        os.kill(os.getpid(), signal.SIGTERM)  # the handler only records it
    skipped.wait(10)  # both workers busy: no other pod can start meanwhile
    return "done"

for ns, name, outcome in ii.for_each_pod([("ns", f"p{i}") for i in range(6)], work, parallel=2):
    print(name, outcome)
    skipped.set()
"""


def test_a_signal_skips_the_pods_not_started_and_lets_those_under_way_finish() -> None:
    proc = subprocess.run(with_signals([sys.executable, "-c", BATCH_SCRIPT]), capture_output=True, text=True,
                          timeout=30, cwd=REPO)
    assert (proc.returncode, proc.stderr) == (0, "")
    lines = proc.stdout.splitlines()
    assert lines[:4] == [f"p{i} not started: interrupted by SIGTERM" for i in range(2, 6)]
    assert sorted(lines[4:]) == ["p0 done", "p1 done"]


def test_an_error_no_check_foresaw_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bug, or an input nothing checks: the command's error line, code 999, no traceback."""
    import argparse

    def broken(args: argparse.Namespace, node: ii.Node) -> int:
        raise RuntimeError("boom")

    args = argparse.Namespace(command="netns", endpoint="/nonexistent", timeout=1.0, cni_path=None,
                              cache_dir=str(tmp_path), run=broken, stays="")
    with ii._cli_logging(0):
        assert ii._run_command(args) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert '"msg": "netns failed", "error": "internal error (RuntimeError): boom", "code": 999}' in line


def test_what_the_os_cannot_take_is_an_inject_error(tmp_path: Path) -> None:
    """A NUL or a lone surrogate from a cache entry or a runtime: refused in one error."""
    with pytest.raises(ii.InjectError, match=r"^network namespace '/a\\x00b': not a path$"):
        ii._netns_gone("/a\0b")
    assert not ii._is_node_netns("/a\0b")
    with pytest.raises(ii.InjectError, match=r"^plugin true could not be started: embedded null byte$"):
        ii._exec_plugin("/bin/true", {"CNI_ARGS": "K8S_POD_UID=u\0x"}, b"", 5)
    with pytest.raises(ii.InjectError, match=r"^invalid runtime endpoint 'unix:///a\\udcffb': not a path$"):
        ii._socket_path("unix:///a\udcffb")
    assert not ii._same_endpoint("unix:///a\0b", "unix:///run/x.sock")


def test_an_undone_add_names_the_error_no_check_foresaw() -> None:
    error = ii._undone(RecursionError("too deep"), "rolled back (DEL ran for ptp)")
    assert (str(error), error.code) == (
        "internal error (RecursionError): too deep; rolled back (DEL ran for ptp)", ii.CODE_INTERNAL)
    assert str(ii._undone(KeyboardInterrupt(), "x")) == "interrupted (KeyboardInterrupt); x"


def test_a_plugins_error_code_of_true_is_no_code() -> None:
    error = ii._plugin_error("p", 1, b'{"code": true, "msg": "m"}', b"")
    assert (str(error), error.code) == ("plugin p failed (code 999): m", ii.CODE_INTERNAL)


def test_crio_toml_past_the_digit_limit_is_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    monkeypatch.setattr(ii, "_crio_config", lambda client: "x = " + "9" * 5000)
    client = types.SimpleNamespace(version=types.SimpleNamespace(runtime_name="cri-o"))
    with pytest.raises(ii.InjectError, match=r"^cri-o's configuration is not TOML: "):
        ii._runtime_cni_conf(client, {})  # type: ignore[arg-type]
