"""Inject network interfaces into, and remove them from, running Kubernetes pods.

if-inject asks the node's container runtime (containerd, cri-o) over its CRI
socket for a pod's network namespace, then runs CNI plugins into that namespace
the way a container runtime does, with libcni's semantics: conflists, chained
prevResult, capability args, disableCheck, the result cache in
/var/lib/cni/results with cached results converted to the config's version,
and CNI 1.1 as libcni 1.3 has it (cniVersions, disableGC, STATUS, GC).

The module is a small library with a command line on top:

    with Node() as node:                      # the runtime found as crictl finds it
        network = read_network("ptp.json")    # a conf, conflist or NetworkAttachmentDefinition
        result = node.add("if-inject", "alpine-0", network, "net1")
        node.delete("if-inject", "alpine-0", network, "net1")
        stale = [a for a in node.attachments() if a.stale]

The API (__all__): Node, one node's runtime and CNI setup, and the operations
on it (pods, pod, add, check, delete, delete_cached, attachments, pod_network_status,
gc, add_veth, delete_veth); CNI, a network's plugins run as libcni runs them
(add, check, delete, status, gc); the records (Pod, Attachment, NetworkConfig,
CachedAttachment, GcAttachment, GcNetwork, Link, Veth, VethEnd; those printed
have json(), as the command prints them); specs (read_network, parse_spec,
parse_network_config); network_status; on a netns path, pod_links, add_veth and
delete_veth; for_each_pod; InjectError and the CNI error codes; main and cli,
the command line. add, check, delete and resolve_netns are one-line
conveniences on a Node of their own.

Sections, in this order; each uses only those above it (test/unit/test_sections.py):

    speed tricks          -version before the imports, the cyclic GC's pace, exit without teardown
    errors and logging    InjectError, CODE_*, the "if_inject" logger and the CLI's JSON lines;
                          signals held while a clean-up runs
    netns checks          a path is a network namespace, not the node's own; or it is gone
    CRI                   the runtime.v1 schema subset and its wire codec (_Message), the
                          connection, sandbox lookup (Pod)
    CNI: config           NetworkConfig; parse_network_config: a conf or conflist, as libcni reads it
    CNI: plugin execution Attachment; a plugin's stdin, environment and run
    CNI: result cache     entries (ours only, never through a link), CachedAttachment, result versions
    CNI: locks            one attachment, one network at a time (lock files in the cache dir)
    CNI: add, del, check  CNI: the verbs on a network list, and CNI 1.1's STATUS and GC
    specs, and Multus     read_network, parse_spec (NetworkAttachmentDefinitions), network_status
    netlink               work inside a netns; pod_links, add_veth, delete_veth
    pods                  a pod's attachments; the runtime that made one and the stale policy
                          (_staleness, GcAttachment); CNI 1.1's GC after gc (GcNetwork); the
                          runtime's own networks (a warning on add); Node; many pods at once
                          (for_each_pod)
    CLI                   the parser (one entry per subcommand), the run functions, main(), cli()

Where each subcommand starts (its run function, in the CLI section) and what does its work:

    netns add del check   _run_pod_command with _netns_work, _add_work, _del_work, _check_work:
                          Node.pod, Node.add, Node.delete, Node.check (for_each_pod for several)
    status                _run_status: CNI.status
    list                  _run_list: Node.attachments, Node.pod_network_status
    gc                    _run_gc: Node.gc
    pods                  _run_pods: Node.pods
    links                 _run_links: pod_links
    veth                  _run_veth: Node.add_veth, Node.delete_veth

Heavy modules (grpc, pyroute2, yaml) are imported where they are first
needed, so `if-inject -version` and `--help` stay fast.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing itself is imported below the early -version answer
if TYPE_CHECKING:
    import queue
    from concurrent.futures import Future, ThreadPoolExecutor
    from typing import NoReturn

__version__ = "unknown"

# The public API, as docs/api.md documents it; every other name is private.
__all__ = [
    "CNI", "CODE_DECODING", "CODE_INCOMPATIBLE_VERSION", "CODE_INTERNAL", "CODE_INVALID_CONFIG",
    "CODE_INVALID_ENV", "CODE_IO", "CODE_LIMITED_CONNECTIVITY", "CODE_NOT_AVAILABLE",
    "CODE_TRY_AGAIN_LATER", "CODE_UNKNOWN_CONTAINER", "CODE_UNSUPPORTED_FIELD", "Attachment",
    "CachedAttachment", "GcAttachment", "GcNetwork", "InjectError", "Link", "NetworkConfig",
    "Node", "Pod", "Veth", "VethEnd", "__version__", "add", "add_veth", "check", "cli", "delete",
    "delete_veth", "for_each_pod", "main", "network_status", "parse_network_config", "parse_spec",
    "pod_links", "read_network", "resolve_netns",
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
    print(__version__, flush=True)  # flushed: a full disk shows here, not at exit
    return 0


def _tune_gc() -> None:
    """Importing this module and grpc allocates much and frees little: at its
    default pace (every 700 allocations) the cyclic GC rescans it all, 4-6 ms
    of a call; every 100k will do. Set before this module's own imports when
    run as a program (here below, and by the installed `if-inject` script)."""
    import gc as cyclic_gc  # not the module's gc(), which it would shadow

    cyclic_gc.set_threshold(100_000)


def _exit_now(code: int) -> NoReturn:
    """End the command without the interpreter's teardown, which takes tens
    of ms once grpc is loaded (docs/bench.md). By now the work is done:
    plugins reaped, locks released, the channel closed; only the output
    buffers are left. Anything else still running (a thread that is not a
    daemon) gets the normal exit, which waits for it."""
    import os
    import threading

    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    try:
        sys.stdout.flush()
    except OSError:  # a closed pipe (`| head`): the normal exit reports it
        others.append(threading.current_thread())
    try:  # noqa: SIM105 (contextlib may not be imported yet)
        sys.stderr.flush()
    except OSError:  # a stderr that is gone is no error (_StderrHandler)
        pass
    if others:
        sys.exit(code)
    os._exit(code)


def _signals_end_us_until_main() -> None:
    """Until main() takes the signals over (_SignalGuard), each ends the program
    by its default action, SIGINT as SIGTERM does: nothing is done before
    then. (Python's own SIGINT handler would print a KeyboardInterrupt
    traceback from wherever the import is.) tools/if-inject does the same
    before it imports this module."""
    # signal's C part, loaded as Python starts: importing signal (and its
    # enum) would be a window for that traceback of its own.
    import _signal  # type: ignore[import-not-found]  # (it has no type stub)

    if _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler:
        _signal.signal(_signal.SIGINT, _signal.SIG_DFL)


# Run as a script, `-version` is answered here, before the imports and
# definitions below: they are two thirds of its run time (argparse, json,
# logging, typing). main() answers it before building its parser.
if __name__ == "__main__":
    if _only_version(sys.argv[1:]) and sys.stdout is not None:  # a closed one: main() says so
        try:  # noqa: SIM105 (contextlib is not imported yet)
            sys.exit(_print_version())
        except OSError:  # main() says why, in the log's words
            pass
    _signals_end_us_until_main()
    _tune_gc()

import argparse
import json
import logging
import os
import re
import threading  # logging imports it anyway
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, suppress
from types import MappingProxyType
from typing import Any, NamedTuple, NoReturn, Protocol, TypeVar

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
CODE_LIMITED_CONNECTIVITY = 51
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


# The library logs to the logger "if_inject" and, as a library should, shows
# nothing until its user configures logging (the NullHandler keeps Python's
# last-resort handler off). Each record carries its key/value pairs in
# `record.fields`. Verbosity as logr's V(n) in the original: V(0) is INFO,
# V(n) the level INFO - n ("debug"); errors are ERROR. The CLI installs
# _JSONFormatter on stderr (_cli_logging): one JSON object per line.
_logger = logging.getLogger("if_inject")
_logger.addHandler(logging.NullHandler())
# The level names of the original's zap lines.
_LOG_LEVELS = {"error": logging.ERROR, "warn": logging.WARNING, "info": logging.INFO}


def _log(msg: str, v: int = 0, level: str = "", **fields: Any) -> None:
    """Log `msg` with its key/value pairs at V(v), or at `level` ("error", "warn")."""
    number = _LOG_LEVELS[level] if level else max(1, logging.INFO - v)
    if _logger.isEnabledFor(number):
        _logger.log(number, msg, extra={"fields": fields})


class _JSONFormatter(logging.Formatter):
    """The original's log line (logr's JSON): level, time (local, ms), msg,
    then the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        number = record.levelno
        name = next((n for n, at in _LOG_LEVELS.items() if number >= at), "debug")
        from datetime import datetime  # a command that logs nothing never needs it

        stamp = datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")
        line = {"level": name, "time": stamp, "msg": record.getMessage()}
        line.update(getattr(record, "fields", {}))
        return json.dumps(line, default=str)


class _StderrHandler(logging.Handler):
    """Lines on the current sys.stderr; a stderr that is gone (a closed pipe,
    a hung-up terminal) is no error: the command goes on without it."""

    def emit(self, record: logging.LogRecord) -> None:
        text = self.format(record) + "\n"
        with suppress(OSError):
            sys.stderr.write(text)


@contextmanager
def _cli_logging(verbosity: int) -> Iterator[None]:
    """JSON lines on stderr up to V(verbosity) (none below 0), for one command."""
    handler = _StderrHandler()
    handler.setFormatter(_JSONFormatter())
    before = _logger.level, _logger.propagate
    _logger.setLevel(max(1, logging.INFO - verbosity) if verbosity >= 0 else logging.CRITICAL + 1)
    _logger.propagate = False  # the command's lines, once, whatever the caller's root logger does
    _logger.addHandler(handler)
    try:
        yield
    finally:
        _logger.removeHandler(handler)
        _logger.level, _logger.propagate = before


def _log_error(msg: str, error: object, **fields: Any) -> None:
    _log(msg, level="error", error=str(error), **fields)


def _undone(cause: BaseException, note: str) -> InjectError:
    """The error after a failed or interrupted change was undone: what went
    wrong, then what the undo did (e.g. "rolled back (DEL ran for ptp)")."""
    if isinstance(cause, InjectError):
        return InjectError(f"{cause}; {note}", cause.code)
    if isinstance(cause, KeyboardInterrupt) and cause.args:  # the CLI's: named after its signal
        return InjectError(f"interrupted by {cause.args[0]}; {note}", CODE_INTERNAL)
    if isinstance(cause, Exception):  # no check foresaw it (a result nested too deep to cache)
        return InjectError(f"internal error ({type(cause).__name__}): {cause}; {note}", CODE_INTERNAL)
    return InjectError(f"interrupted ({type(cause).__name__}); {note}", CODE_INTERNAL)


# ---- errors and logging: signals held while a clean-up runs -------------


class _SignalGuard:
    """The signals that would end the program (SIGINT, SIGTERM, SIGHUP, SIGQUIT,
    SIGUSR1, ... and the real-time ones: signals()), held in Python rather than
    by pthread_sigmask.

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

    # Each signal whose default action ends the process, but for the faults a
    # program raises on itself (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS,
    # SIGABRT): a stop asked from outside, which a rollback must outlast.
    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM",
               "SIGPROF", "SIGXCPU", "SIGXFSZ", "SIGIO", "SIGPWR", "SIGSTKFLT")

    def __init__(self) -> None:
        self.installed = False
        self.received: list[int] = []  # every signal, for the batch loop and the error
        self.pending: list[int] = []  # not yet acted on by raising
        self.modes: list[bool] = []  # the main thread's: True = interruptible

    def install(self) -> None:
        """Take the signals over for the CLI (a signal ignored by our parent, as
        SIGHUP under nohup, stays ignored)."""
        import signal

        for signum in self.signals():
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

    _numbers: tuple[int, ...] = ()  # signals(), once known

    @classmethod
    def signals(cls) -> tuple[int, ...]:
        if not cls._numbers:  # each held step of the library asks: found once
            import signal

            named = [int(getattr(signal, name)) for name in cls.SIGNALS if hasattr(signal, name)]
            cls._numbers = (*named, *range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
        return cls._numbers

    @staticmethod
    def name(signum: int) -> str:
        import signal

        try:
            return signal.Signals(signum).name
        except ValueError:  # a real-time signal has no name of its own
            return f"SIGRTMIN+{signum - signal.SIGRTMIN}"

    @contextmanager
    def mode(self, may_interrupt: bool) -> Iterator[None]:
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
        for signum in self.signals():
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
    """Hold the signals (SIGINT, SIGTERM, ...) while a rollback or clean-up runs to its end."""
    return _signals.mode(may_interrupt=False)


def _interruptible() -> AbstractContextManager[None]:
    """Let the signals (SIGINT, SIGTERM, ...) interrupt this step (KeyboardInterrupt),
    which is undone or changes nothing when cut short."""
    return _signals.mode(may_interrupt=True)


def _stop_if_asked() -> None:
    """Between two steps of a loop that holds the signals in each (gc's DELs,
    a del's from the cache): a signal that came meanwhile stops the loop here."""
    with _interruptible():
        pass


def _interrupted() -> str:
    """The name of the first signal that asked the CLI to stop, or ""."""
    return _signals.name(_signals.received[0]) if _signals.installed and _signals.received else ""


# ---- netns checks -------------------------------------------------------


def _is_os_text(value: str) -> bool:
    """Whether a path or name from outside can reach the OS as it is: no NUL,
    and valid UTF-8 (a JSON "\\ud800" or an argument's stray byte is not)."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return "\0" not in value


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


def _normal_path(path: str) -> str:
    """`path` without ".", "..", or repeated slashes ("//proc/1/ns/net" is
    "/proc/1/ns/net"), for the checks on paths read from files."""
    if not path:
        return ""
    normal = os.path.normpath(path)  # keeps a leading "//", which POSIX lets mean something else
    return "/" + normal.lstrip("/") if normal.startswith("/") else normal


def _is_proc_path(path: str) -> bool:
    """Whether `path` is in /proc, where a netns path follows a PID that can be reused."""
    return _normal_path(path).split("/")[:2] == ["", "proc"]


def _namespace_kind(fd: int) -> int:
    """The kind of namespace (CLONE_NEW*) the open file is; 0 when it is no nsfs file."""
    import fcntl

    try:
        return fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError:  # ENOTTY: not an nsfs file at all
        return 0


def _open_netns(path: str) -> int:
    """An fd of the network namespace at `path`, checked before and after it
    is opened: a namespace file (a device or FIFO is never opened) of the
    network kind, and not the node's own."""
    import stat

    if not path:
        raise InjectError("no network namespace path", CODE_INVALID_ENV)
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):  # nsfs files are regular; never open anything else
            raise InjectError(f"{path} is not a network namespace", CODE_INVALID_ENV)
        # O_NONBLOCK: should it have become a FIFO meanwhile, opening it must not hang us.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        raise InjectError(f"network namespace {path}: {e.strerror}", CODE_UNKNOWN_CONTAINER) from None
    try:
        st = os.fstat(fd)
        kind = _namespace_kind(fd)
        if kind != _CLONE_NEWNET or (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise InjectError(f"{path} is not a network namespace", CODE_INVALID_ENV)
        if (st.st_dev, st.st_ino) in _node_netns_ids():
            raise InjectError(f"{path} is the node's own network namespace: refusing to change the node",
                              CODE_INVALID_ENV)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_netns(path: str) -> tuple[int, int]:
    """Refuse anything that is not a network namespace, or that is the node's
    own; returns the namespace's (st_dev, st_ino)."""
    fd = _open_netns(path)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return st.st_dev, st.st_ino


def _is_node_netns(path: str) -> bool:
    """Whether `path` is the node's own network namespace (when _check_netns refused it)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: no path the OS takes (a NUL)
        return False
    return (st.st_dev, st.st_ino) in _node_netns_ids()


def _netns_gone(path: str) -> bool:
    """Whether the netns at `path` is gone: nothing is there, or something that
    is not a network namespace. Raises InjectError when that cannot be told
    (EACCES, EIO): gone is a verdict that lets gc delete."""
    import stat

    if not _is_os_text(path):  # a cache entry's: no path at all
        raise InjectError(f"network namespace {path!r}: not a path", CODE_DECODING)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # an nsfs file is a regular one; no device is opened
            return True
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError as e:
        raise InjectError(f"network namespace {path}: {e.strerror}", CODE_IO) from None
    try:
        return _namespace_kind(fd) != _CLONE_NEWNET
    finally:
        os.close(fd)


# ---- CRI: schema subset of k8s.io/cri-api runtime.v1 --------------------

# The messages if-inject uses, written like api.proto with its field numbers
# (fields it does not read are left out: they are skipped as unknown). No PyPI
# package ships runtime.v1 stubs; _message_types() reads this text, and the
# codec below encodes and decodes the messages. `map` means map<string, string>.
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


def _schema_blocks(schema: str, keyword: str) -> list[tuple[str, str]]:
    """(name, body) of each `keyword Name { body }` of a schema text. Read with
    str methods: compiling regular expressions for it cost every call ~0.4 ms."""
    blocks = []
    for block in schema.split("}"):
        head, _, body = block.partition("{")
        words = head.split()
        if words[-2:-1] == [keyword]:
            blocks.append((words[-1], body))
    return blocks


def _schema_statements(body: str) -> list[list[str]]:
    """The words of each `... NAME = NUMBER;` of a block's body, "=" left out."""
    return [statement.replace("=", " ").split() for statement in body.split(";") if statement.strip()]


def _schema_enums(schema: str) -> dict[str, dict[str, int]]:
    """{enum name: {value name: number}} of the enums in a schema text."""
    return {name: {value: int(number) for value, number in _schema_statements(body)}
            for name, body in _schema_blocks(schema, "enum")}


def _schema_messages(schema: str) -> list[tuple[str, str]]:
    """(message name, body) of the messages in a schema text."""
    return _schema_blocks(schema, "message")


def _schema_fields(body: str) -> list[tuple[bool, str, str, int]]:
    """(repeated, type, name, number) of the fields in a message's body."""
    return [(words[0] == "repeated", words[-3], words[-2], int(words[-1]))
            for words in _schema_statements(body)]


# The enums' numbers, read from the schema above (tests import them from here).
_CRI_ENUMS = _schema_enums(_CRI_SCHEMA)
_SANDBOX_READY = _CRI_ENUMS["PodSandboxState"]["SANDBOX_READY"]
_SANDBOX_NOTREADY = _CRI_ENUMS["PodSandboxState"]["SANDBOX_NOTREADY"]
_NAMESPACE_MODE = _CRI_ENUMS["NamespaceMode"]  # {"POD": 0, "CONTAINER": 1, "NODE": 2, "TARGET": 3}
_NAMESPACE_MODE_NAMES = {number: name for name, number in _NAMESPACE_MODE.items()}
_NODE_MODE = "NODE"  # the network mode of a hostNetwork pod

# The wire format (protobuf's encoding, proto3): each field a key (number and
# wire type) and a value; unset fields are left out, unknown ones skipped.
_WIRE_VARINT, _WIRE_FIXED64, _WIRE_LENGTH, _WIRE_FIXED32 = 0, 1, 2, 5
_WIRE_GROUP_START, _WIRE_GROUP_END = 3, 4  # proto2's groups
_LENGTH_KINDS = {"string", "bytes", "message", "map"}
_ZERO = {"string": "", "bytes": b"", "bool": False, "int32": 0, "int64": 0, "uint32": 0, "uint64": 0,
         "enum": 0}


class _Field(NamedTuple):  # not a frozen dataclass: making one costs every call ~1 ms
    """A field of a schema message: kind is a scalar type, "enum", "message"
    (then message names its type) or "map" (map<string, string>)."""

    name: str
    number: int
    kind: str
    repeated: bool = False
    message: str = ""


class _MessageType:
    """A message type of a schema: builds messages, decodes them from the wire.

    if-inject encodes the few CRI messages it uses itself, from the schema
    text, rather than through protobuf: importing protobuf's message machinery
    cost every call more than everything else it does (docs/bench.md); the
    tests hold this codec against protobuf's own."""

    def __init__(self, name: str, fields: list[_Field], types: dict[str, _MessageType]) -> None:
        self.name = name
        self.fields = {f.name: f for f in fields}
        self.numbers = {f.number: f for f in fields}
        self.types = types  # every type of the schema, by name, for the message fields

    def __call__(self, **values: Any) -> _Message:
        unknown = set(values) - set(self.fields)
        if unknown:
            raise TypeError(f"{self.name} has no field {', '.join(sorted(unknown))}")
        return _Message(self, {k: v for k, v in values.items() if v is not None})

    def default(self, f: _Field) -> Any:
        """What an unset field reads as."""
        if f.kind == "map":
            return {}
        if f.repeated:
            return []
        return self.types[f.message]() if f.kind == "message" else _ZERO[f.kind]

    def decode(self, data: bytes) -> _Message:
        """A message from its wire format. A malformed one raises ValueError."""
        values: dict[str, Any] = {}
        merged: dict[str, bytes] = {}  # a singular message field seen twice is merged, as protobuf does
        for number, wire, value in _wire_fields(data):
            f = self.numbers.get(number)
            # Unknown, or known with another wire type: skipped, as protobuf does.
            if f is None or wire != (_WIRE_LENGTH if f.kind in _LENGTH_KINDS else _WIRE_VARINT):
                continue
            if f.kind == "message" and not f.repeated:
                values[f.name] = self.types[f.message].decode(value)  # each part valid on its own
                if f.name in merged:  # and parts merged: their bytes joined are the merge
                    values[f.name] = self.types[f.message].decode(merged[f.name] + value)
                merged[f.name] = merged.get(f.name, b"") + value
            elif f.kind == "map":
                entry = _map_entry(value)
                if entry is not None:
                    values.setdefault(f.name, {}).__setitem__(*entry)
            elif f.repeated:
                values.setdefault(f.name, []).append(self._scalar(f, value))
            else:
                values[f.name] = self._scalar(f, value)
        return _Message(self, values)

    def _scalar(self, f: _Field, value: Any) -> Any:
        if f.kind == "message":
            return self.types[f.message].decode(value)
        if f.kind == "string":
            return value.decode()  # UnicodeDecodeError is a ValueError
        if f.kind == "bytes":
            return value
        if f.kind == "bool":
            return value != 0
        if f.kind in ("int32", "enum", "int64"):  # two's complement in 64 bits, int32 sign-extended
            value &= 0xFFFFFFFF if f.kind != "int64" else (1 << 64) - 1
            top = 1 << (31 if f.kind != "int64" else 63)
            return value - 2 * top if value & top else value
        return value & (0xFFFFFFFF if f.kind == "uint32" else (1 << 64) - 1)  # uint32, uint64


class _Message:
    """A message of a _MessageType: fields read as attributes (unset ones as
    their zero value, an empty message, [] or {}), written with encode()."""

    __slots__ = ("type", "values")

    def __init__(self, message_type: _MessageType, values: dict[str, Any]) -> None:
        self.type = message_type
        self.values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            pass
        try:
            return self.type.default(self.type.fields[name])
        except KeyError:
            raise AttributeError(f"{self.type.name} has no field {name}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Message) and (self.type, self.encode()) == (other.type, other.encode())

    __hash__ = None  # type: ignore[assignment]  # mutable, as protobuf's messages

    def __repr__(self) -> str:
        return f"{self.type.name}({', '.join(f'{k}={v!r}' for k, v in self.values.items())})"

    def encode(self) -> bytes:
        """The wire format, fields in number order, zero values left out (proto3)."""
        out = []
        for f in sorted((self.type.fields[k] for k in self.values), key=lambda f: f.number):
            value = self.values[f.name]
            if f.kind == "map":
                out += [_pb_bytes(f.number, _pb_bytes(1, k.encode()) + _pb_bytes(2, v.encode()))
                        for k, v in value.items()]
            else:
                out += [_pb_scalar(f, v) for v in (value if f.repeated else [value])]
        return b"".join(out)


def _map_entry(data: bytes) -> tuple[str, str] | None:
    """A map<string, string> entry's key and value. An entry with any other
    field is left out of the map, as protobuf leaves it (no runtime sends one)."""
    entry = {1: "", 2: ""}
    for number, wire, value in list(_wire_fields(data)):  # all of it checked first
        if number not in entry or wire != _WIRE_LENGTH:
            return None
        entry[number] = value.decode()
    return entry[1], entry[2]


def _pb_scalar(f: _Field, value: Any) -> bytes:
    """One value of a field, or nothing for a singular zero value."""
    if not f.repeated and f.kind != "message" and value == _ZERO[f.kind]:
        return b""
    if f.kind == "message":
        return _pb_bytes(f.number, value.encode())
    if f.kind in ("string", "bytes"):
        return _pb_bytes(f.number, value.encode() if f.kind == "string" else bytes(value))
    return _pb_key(f.number, _WIRE_VARINT) + _pb_varint(int(value) & ((1 << 64) - 1))


def _wire_fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field in a message's bytes:
    an int for a varint, bytes for a length-delimited value, None for the
    others (fixed-width and proto2's groups: no field if-inject reads has
    them, so they are only skipped). Malformed bytes raise ValueError."""
    pos = 0
    while pos < len(data):
        number, wire, value, pos = _wire_field(data, pos)
        if wire == _WIRE_GROUP_END:
            raise ValueError("a group's end outside a group")
        yield number, wire, value


def _wire_field(data: bytes, pos: int) -> tuple[int, int, Any, int]:
    """The field at pos (< len(data)), and the position after it."""
    # A varint of one byte read here: most are, and a call per varint was
    # most of the time a status answer took to decode.
    key, after = (data[pos], pos + 1) if data[pos] < 0x80 else _read_varint(data, pos)
    number, wire = key >> 3, key & 7
    if number == 0 or key >> 32 or after - pos > 5:  # a key is a 32-bit varint
        raise ValueError(f"field number {number}")
    pos = after
    value: Any = None
    if wire in (_WIRE_VARINT, _WIRE_LENGTH):
        if pos < len(data) and data[pos] < 0x80:
            value, pos = data[pos], pos + 1
        else:
            value, pos = _read_varint(data, pos)
        if wire == _WIRE_LENGTH:
            value, pos = data[pos:pos + value], pos + value
    elif wire in (_WIRE_FIXED64, _WIRE_FIXED32):
        pos += 8 if wire == _WIRE_FIXED64 else 4
    elif wire == _WIRE_GROUP_START:
        while True:  # to the group's own end
            if pos >= len(data):
                raise ValueError("truncated group")
            inner, inner_wire, _, pos = _wire_field(data, pos)
            if inner_wire == _WIRE_GROUP_END:
                if inner != number:
                    raise ValueError(f"group {number} ended as {inner}")
                break
    elif wire != _WIRE_GROUP_END:
        raise ValueError(f"wire type {wire}")
    if pos > len(data):
        raise ValueError("truncated")
    return number, wire, value, pos


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 70, 7):
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise ValueError("varint longer than 10 bytes")


def _pb_bytes(number: int, value: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _pb_key(number, _WIRE_LENGTH) + _pb_varint(len(value)) + value


def _pb_key(number: int, wire_type: int) -> bytes:
    return _pb_varint(number << 3 | wire_type)


def _pb_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _message_types(schema: str) -> dict[str, _MessageType]:
    """The schema's message types by name. Enum fields are plain ints."""
    enums = _schema_enums(schema)
    types: dict[str, _MessageType] = {}
    for name, body in _schema_messages(schema):
        fields = []
        for repeated, kind, fname, number in _schema_fields(body):
            message = "" if kind in _ZERO or kind in enums or kind == "map" else kind
            kind = "enum" if kind in enums else "message" if message else kind
            if repeated and kind not in _LENGTH_KINDS:
                raise ValueError(f"{name}.{fname}: repeated {kind} (packed) is not supported")
            fields.append(_Field(fname, number, kind, repeated, message))
        types[name] = _MessageType(name, fields, types)
    return types


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
    if not _is_os_text(endpoint):
        raise InjectError(f"invalid runtime endpoint {endpoint!r}: not a path", CODE_INVALID_CONFIG)
    if endpoint.startswith("unix://"):
        return endpoint[len("unix://"):]
    if endpoint.startswith("unix:"):  # unix:/run/x.sock, as grpc and kubelet take it too
        return endpoint[len("unix:"):]
    if "://" in endpoint:
        raise InjectError(f"unsupported runtime endpoint {endpoint}: only unix sockets are",
                          CODE_INVALID_CONFIG)
    return endpoint


def _endpoint_uri(endpoint: str) -> str:
    """An endpoint as the cache records it: unix:// and an absolute path, so
    that it names the same socket from any working directory."""
    return "unix://" + os.path.abspath(_socket_path(endpoint))


def _same_endpoint(a: str, b: str) -> bool:
    """Whether two endpoints name one socket (/var/run is /run on most nodes)."""
    try:
        return os.path.realpath(_socket_path(a)) == os.path.realpath(_socket_path(b))
    except InjectError:
        return a == b


class _RuntimeClient:
    """A CRI RuntimeService client on the first endpoint that answers Version."""

    def __init__(self, endpoint: str | None = None, timeout: float = 10.0) -> None:
        self.timeout = timeout
        self.messages = _cri_messages()
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
            runtime=self.version.runtime_name, runtimeVersion=self.version.runtime_version)

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

    def call(self, method: str, request: _Message) -> Any:
        """One unary RuntimeService call, its answer decoded; gRPC failures and
        malformed answers become InjectError."""
        import grpc

        response_type = self.messages[method + "Response"]
        rpc = self.channel.unary_unary(f"/{_CRI_SERVICE}/{method}")  # bytes in, bytes out
        try:
            with _interruptible():
                answer = rpc(request.encode(), timeout=self.timeout)
        except grpc.RpcError as e:
            # The raised object is also a grpc.Call with code() and details().
            code = e.code() if isinstance(e, grpc.Call) else grpc.StatusCode.UNKNOWN
            reasons = {grpc.StatusCode.DEADLINE_EXCEEDED: f"no answer within {self.timeout:g}s",
                       grpc.StatusCode.UNIMPLEMENTED: "the runtime does not serve CRI runtime.v1"}
            reason = reasons.get(code) or (e.details() if isinstance(e, grpc.Call) else "") or str(e)
            raise InjectError(f"{method}: {code.name}: {reason}", CODE_TRY_AGAIN_LATER) from None
        try:
            return response_type.decode(answer)
        except (ValueError, RecursionError) as e:  # RecursionError: groups nested too deep
            raise InjectError(f"{method}: the runtime's answer is not a {response_type.name}: {e}",
                              CODE_DECODING) from None

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def __enter__(self) -> _RuntimeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_cri_types: dict[str, _MessageType] = {}


def _cri_messages() -> dict[str, _MessageType]:
    """The CRI message types, built once, on the first call that needs them."""
    if not _cri_types:
        _cri_types.update(_message_types(_CRI_SCHEMA))
    return _cri_types


# ---- CRI: sandbox lookup ------------------------------------------------

_POD_NAME_LABEL = "io.kubernetes.pod.name"
_POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
_POD_UID_LABEL = "io.kubernetes.pod.uid"
_NO_LABELS: Mapping[str, str] = MappingProxyType({})


class Pod(NamedTuple):
    """A pod as the runtime sees it: its ready sandbox and network namespace."""

    namespace: str
    name: str
    uid: str = ""
    sandbox_id: str = ""
    netns: str = ""
    network_mode: str = "POD"
    ready: bool = True
    labels: Mapping[str, str] = _NO_LABELS
    status_ready: bool = True  # what PodSandboxStatus said, which can lag behind the list
    netns_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the netns once checked
    pid: int = 0  # the sandbox's process (the pause) as the runtime reports it; 0: none reported
    # The runtime that reported it: its endpoint (see _endpoint_uri) and Version's runtime_name.
    runtime_endpoint: str = ""
    runtime_name: str = ""

    @property
    def state(self) -> str:
        """Its sandbox's state, as crictl pods shows it."""
        return "READY" if self.ready else "NOTREADY"

    def json(self) -> dict[str, Any]:
        """As `pods -o json` prints it."""
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid, "sandboxId": self.sandbox_id,
                "state": self.state, "network": self.network_mode, "netns": self.netns,
                "labels": dict(self.labels)}


def _list_sandboxes(client: _RuntimeClient, labels: dict[str, str] | None = None,
                   ready_only: bool = False) -> list[Any]:
    """ListPodSandbox filtered by labels (and the READY state when asked)."""
    m = client.messages
    state = m["PodSandboxStateValue"](state=_SANDBOX_READY) if ready_only else None
    flt = m["PodSandboxFilter"](label_selector=labels or {}, state=state)
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


def _dig_list(obj: Any, *keys: str) -> list[Any]:
    """_dig's answer when it is a list, else [] (a result or answer from outside may hold anything)."""
    found = _dig(obj, *keys)
    return found if isinstance(found, list) else []


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
    pid = _info_pid(info)
    if pid:
        return f"/proc/{pid}/ns/net"
    raise InjectError("the runtime reports no network namespace for this sandbox", CODE_UNKNOWN_CONTAINER,
                      f"its info has {', '.join(sorted(info))}" if info else "its info is empty")


def _info_pid(info: dict[str, Any]) -> int:
    """The sandbox's process in a verbose PodSandboxStatus info; 0 when none is reported."""
    pid = info.get("pid")
    # A JSON true is an int to Python: it must not become /proc/True/ns/net.
    return pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else 0


def _netns_path(value: object) -> str:
    """A path from the runtime, taken only when absolute: a relative one would
    resolve against wherever if-inject happens to run."""
    if not isinstance(value, str) or not value.startswith("/") or not _is_os_text(value):
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
    meta = sandbox.metadata
    for what, value in (("namespace", meta.namespace), ("name", meta.name), ("UID", meta.uid)):
        if not _is_os_text(value):  # each goes to the plugins in CNI_ARGS
            raise InjectError(f"sandbox {sandbox.id}: the runtime reports a pod {what} with a NUL: {value!r}",
                              CODE_DECODING)
    mode = _NAMESPACE_MODE_NAMES.get(status.linux.namespaces.options.network, "?")
    netns = ""
    if mode != _NODE_MODE:
        try:
            netns = _netns_from_info(info)
        except InjectError:
            if netns_required:
                raise
    pod = Pod(namespace=sandbox.metadata.namespace, name=sandbox.metadata.name,
              uid=sandbox.metadata.uid, sandbox_id=sandbox.id, netns=netns, network_mode=mode,
              ready=sandbox.state == _SANDBOX_READY, labels=dict(sandbox.labels),
              status_ready=status.state == _SANDBOX_READY,
              runtime_endpoint=_endpoint_uri(client.endpoint), runtime_name=client.version.runtime_name,
              pid=_info_pid(info))
    _log("Pod", v=2, namespace=pod.namespace, pod=pod.name, sandbox=pod.sandbox_id,
        netns=pod.netns, network=mode)
    return pod


def _find_pod(client: _RuntimeClient, namespace: str, name: str,
             missing_ok: bool = False, listed: Any = None) -> Pod | None:
    """The pod's ready sandbox and its network namespace, checked to be safe to change.

    With missing_ok (for a delete), a pod that is gone, or going, is None.
    `listed`: its ready sandbox as a ListPodSandbox just gave it (a batch lists
    once); its PodSandboxStatus is still asked, and must say it is ready.
    """
    sandbox = listed or _ready_sandbox(client, namespace, name, missing_ok)
    if sandbox is None:
        return None
    try:
        pod = _sandbox_pod(client, sandbox)
    except InjectError:
        # Removed since the list (PodSandboxStatus NOT_FOUND): for a delete, a pod that is gone.
        if missing_ok and _ready_sandbox(client, namespace, name, missing_ok=True) is None:
            return None
        raise
    # Listed ready, but its own status says not (containerd 2.x once the
    # shim is gone): a dying sandbox, never a target; for a delete, gone.
    ready = pod.ready and pod.status_ready
    if not ready and missing_ok:
        return None
    if not ready:
        raise InjectError(f"pod {namespace}/{name} not found on this node (sandbox "
                          f"{sandbox.id} is no longer ready)", CODE_UNKNOWN_CONTAINER)
    if pod.network_mode == _NODE_MODE:
        raise InjectError(f"pod {namespace}/{name} uses the node's network (hostNetwork): "
                          "refusing to change the node", CODE_INVALID_CONFIG)
    try:
        netns_id = _check_netns(pod.netns)
    except InjectError as e:
        # A ready pod whose netns cannot be opened here (a netns dir this process
        # does not see, EACCES) is never taken for gone: a DEL without its netns
        # would free the lease of an interface that stays in the pod.
        if missing_ok:
            raise InjectError(f"pod {namespace}/{name} is running, but {e}: nothing deleted",
                              e.code) from None
        raise
    return pod._replace(netns_id=netns_id)


# Kubernetes label syntax: an optional DNS-subdomain prefix and "/", then a
# name of up to 63 characters; a value is empty or name-like.
_LABEL_NAME = r"(?=.{1,63}\Z)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_LABEL_PREFIX = r"(?=.{1,253}/)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/"
# Matched whole (fullmatch): re.match with "$" would take a trailing newline.
# Patterns are strings, compiled by re (and cached) when first used: compiling
# them all as the module loads would cost every call ~2 ms.
_LABEL_KEY = f"({_LABEL_PREFIX})?{_LABEL_NAME}"
_LABEL_VALUE = f"({_LABEL_NAME})?"


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
        if not re.fullmatch(_LABEL_KEY, key):
            raise InjectError(f"invalid label key {key!r} in selector {text!r}", CODE_INVALID_CONFIG)
        if not re.fullmatch(_LABEL_VALUE, value):
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
            pod = pod._replace(netns="")
        pods.append(pod)
    return sorted(pods, key=lambda p: (p.namespace, p.name, not p.ready))


def _select_pods(client: _RuntimeClient, namespace: str | None, names: list[str] | None = None,
                selector: dict[str, str] | None = None) -> dict[tuple[str, str], Any]:
    """{(namespace, name): its ready sandbox, or None when not listed} of the
    pods to work on, in order: the named ones, or the ready pods matching
    `selector`, in `namespace` (every namespace when None)."""
    if names and not selector and namespace is not None:
        return dict.fromkeys(((namespace, name) for name in names), None)
    labels = dict(selector or {})
    if namespace is not None:
        labels[_POD_NAMESPACE_LABEL] = namespace
    found: dict[tuple[str, str], list[Any]] = {}
    for sandbox in _list_sandboxes(client, labels, ready_only=True):
        found.setdefault((sandbox.metadata.namespace, sandbox.metadata.name), []).append(sandbox)
    # A pod with two ready sandboxes is looked up again, to fail as _ready_sandbox fails.
    return {pod: sandboxes[0] if len(sandboxes) == 1 else None
            for pod, sandboxes in sorted(found.items()) if not names or pod[1] in names}


# ---- CNI: config --------------------------------------------------------

_CNI_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
_DEFAULT_CNI_PATH = ("/opt/cni/bin", "/usr/libexec/cni", "/usr/lib/cni")
# libcni's cacheDir: results in its results/, our locks in its if-inject-locks/.
_DEFAULT_CACHE_DIR = "/var/lib/cni"
# The CNI spec's rules for container IDs and network names.
_NAME_PATTERN = r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*"  # matched whole (fullmatch)


class NetworkConfig(NamedTuple):
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
    disable_gc: bool = False  # a conflist's "disableGC" (CNI 1.1): GC then runs nothing

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


def parse_network_config(raw: bytes, source: str = "spec") -> NetworkConfig:
    """A plugin conf or conflist (JSON; never a NetworkAttachmentDefinition:
    see parse_spec), validated as libcni does, before any plugin runs."""
    if not raw.strip():
        raise InjectError(f"{source}: empty", CODE_INVALID_CONFIG)
    try:
        conf = _json_value(raw)
    except ValueError as e:
        raise InjectError(f"{source}: not JSON ({e})", CODE_DECODING) from None
    return _network_from_conf(conf, raw, source)


def _json_value(text: str | bytes) -> Any:
    """JSON as RFC 8259 has it: NaN and Infinity, which Python's json takes
    and writes, are refused (Go's encoding/json, libcni's and the plugins',
    reads neither: a cache entry holding one would be unreadable to them).
    Malformed, or nested too deep: ValueError."""
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")
    try:
        return json.loads(text, parse_constant=refuse)
    except RecursionError:
        raise ValueError("nested too deep") from None


def _network_from_conf(conf: Any, raw: bytes, source: str) -> NetworkConfig:
    def bad(why: str) -> InjectError:
        return InjectError(f"{source}: {why}", CODE_INVALID_CONFIG)
    if not isinstance(conf, dict):
        raise bad("not a JSON object")
    # libcni reads disableCheck, disableGC and cniVersions from a conflist only, and ignores them in a conf.
    disable_check = disable_gc = False
    version = conf.get("cniVersion")
    if "plugins" in conf:
        plugins = conf["plugins"]
        if not isinstance(plugins, list) or not plugins:
            raise bad("'plugins' must be a non-empty list")
        disable_check, disable_gc = _list_flag(conf, "disableCheck", bad), _list_flag(conf, "disableGC", bad)
        version = _list_version(conf, source)
    elif "type" in conf:
        plugins = [conf]
    else:
        raise bad("neither a plugin conf (no 'type') nor a conflist (no 'plugins')")
    name = conf.get("name")
    if not isinstance(name, str) or not re.fullmatch(_NAME_PATTERN, name):
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
    return NetworkConfig(name, version, plugins, raw, disable_check=disable_check, disable_gc=disable_gc)


def _list_flag(conf: dict[str, Any], key: str, bad: Callable[[str], InjectError]) -> bool:
    """A conflist's switch as libcni 1.3 reads it: true, false, or those words as a string in any case."""
    value = conf.get(key, False)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise bad(f"'{key}' must be true or false")
    return value


def _version_key(version: str) -> tuple[int, int, int] | None:
    """A CNI version as libcni's ParseVersion reads it ("" is 0.1.0, "1.1" is 1.1.0); None if it is none."""
    if version == "":
        return (0, 1, 0)
    parts = version.split(".")
    if len(parts) > 3 or not all(re.fullmatch(r"[+-]?[0-9]{1,18}", p) for p in parts):
        return None
    numbers = [int(p) for p in parts] + [0] * (3 - len(parts))
    return (numbers[0], numbers[1], numbers[2])


def _list_version(conf: dict[str, Any], source: str) -> Any:
    """The version a conflist runs at, as libcni 1.3 picks it (CNI 1.1 "cniVersions"):
    the highest of its cniVersions and its cniVersion, leaving out those above 1.1.0.
    Where libcni would go on with no usable version, and every plugin fail, this says why."""
    version = conf.get("cniVersion")
    if "cniVersions" not in conf:
        return version
    offered = conf["cniVersions"]
    if not isinstance(offered, list) or not all(isinstance(v, str) for v in offered):
        raise InjectError(f"{source}: 'cniVersions' must be a list of strings", CODE_INVALID_CONFIG)
    if version is not None and not isinstance(version, str):
        raise InjectError(f"{source}: 'cniVersion' must be a string", CODE_INVALID_CONFIG)
    candidates = [*offered, *([version] if version else [])]
    keys: dict[str, tuple[int, int, int]] = {}
    for v in candidates:
        key = _version_key(v)
        if key is None:
            raise InjectError(f"{source}: invalid CNI version {v!r} in cniVersions", CODE_INVALID_CONFIG)
        keys[v] = key
    usable = [v for v in candidates if keys[v] <= (1, 1, 0)]  # libcni's version.Current()
    if not usable:
        said = ", ".join(candidates) or "none"
        raise InjectError(f"{source}: no usable CNI version among those offered ({said}): "
                          f"if-inject speaks up to {_CNI_VERSIONS[-1]}", CODE_INCOMPATIBLE_VERSION)
    return max(usable, key=lambda v: keys[v])


# ---- CNI: plugin execution ----------------------------------------------


class Attachment:
    """One interface of one container, as libcni's RuntimeConf.

    Checked against the CNI spec's rules as it is made: once, where the CNI
    layer's input enters (a class of its own, as a NamedTuple cannot check
    itself, and dataclasses cost every call 2 ms to import and apply).
    """

    __slots__ = ("container_id", "netns", "ifname", "args", "capability_args", "pod")  # noqa: RUF023 (repr's order)

    def __init__(self, container_id: str, netns: str, ifname: str = "net1",
                 args: list[tuple[str, str]] | None = None,
                 capability_args: dict[str, Any] | None = None,
                 pod: Pod | None = None) -> None:
        _validate_container_id(container_id)
        _validate_ifname(ifname)
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args = [] if args is None else args
        self.capability_args = {} if capability_args is None else capability_args
        self.pod = pod  # recorded in the cache, to find the attachment later

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"Attachment({fields})"


def _validate_container_id(container_id: str) -> None:
    """The CNI spec's rule for container IDs."""
    if not re.fullmatch(_NAME_PATTERN, container_id):
        raise InjectError(f"invalid container ID {container_id!r}", CODE_INVALID_ENV)


def _validate_ifname(name: str) -> None:
    """The CNI spec's rules for interface names (the kernel's: 15 bytes, no '/', ':' or space)."""
    if not _is_os_text(name) or not 0 < len(name.encode()) <= 15 or name in (".", "..") \
            or any(c in name for c in "/:") or any(c.isspace() for c in name):
        raise InjectError(f"invalid interface name {name!r}: 1-15 bytes, not . or .., "
                          "no '/', ':' or whitespace", CODE_INVALID_ENV)


def _check_same_netns(att: Attachment) -> None:
    """Before each plugin runs: see _check_pod_netns."""
    if att.pod is not None:
        _check_pod_netns(att.pod, att.netns, "no plugin runs in it")


def _check_pod_netns(pod: Pod, netns: str, refusal: str) -> None:
    """A /proc/<pid>/ns/net path (cri-dockerd's) follows its PID: before
    anything is done in it, it must still be the namespace the pod had when checked."""
    if pod.netns_id is None or not netns or not _is_proc_path(netns):
        return
    try:
        st = os.stat(netns)
        now: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except OSError:
        now = None
    if now != pod.netns_id:
        raise InjectError(f"network namespace {netns} is no longer pod {pod.namespace}/{pod.name}'s "
                          f"(its process ended, or its PID was reused): {refusal}", CODE_UNKNOWN_CONTAINER)


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


def _plugin_env(command: str, att: Attachment | None, search_path: list[str]) -> dict[str, str]:
    """The environment of a plugin call; without an attachment (STATUS, GC: CNI 1.1's
    calls on the network) CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME and CNI_ARGS are
    empty, as libcni sets them."""
    env = _node_environ()
    env.update(CNI_COMMAND=command, CNI_CONTAINERID=att.container_id if att else "",
               CNI_NETNS=att.netns if att else "", CNI_IFNAME=att.ifname if att else "",
               CNI_PATH=":".join(search_path),
               CNI_ARGS=";".join(f"{k}={v}" for k, v in att.args) if att else "")
    return env


def _node_environ() -> dict[str, str]:
    """The environment we were started with, which plugins (the node's programs)
    get: not what the one-file executable's bootloader (PyInstaller) sets for
    itself, its _PYI_* variables and its library dir prepended to
    LD_LIBRARY_PATH (the user's value, if any, saved in LD_LIBRARY_PATH_ORIG)."""
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
    return env


def _exec_plugin(path: str, env: dict[str, str], stdin: bytes, timeout: float) -> bytes:
    """Run a plugin; return its stdout or raise with its CNI error."""
    import signal
    import subprocess

    name = os.path.basename(path)
    try:
        # Its own session: a Ctrl-C on the terminal reaches us, and we decide
        # what happens to the plugin (killed, then rolled back).
        proc = subprocess.Popen([path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=env, start_new_session=True)
    except OSError as e:  # found and executable, yet not startable: ENOEXEC, ETXTBSY, a missing interpreter
        raise InjectError(f"plugin {name} could not be started: {e.strerror}", CODE_NOT_AVAILABLE) from None
    except ValueError as e:  # a NUL or stray surrogate in its environment (CNI_ARGS from a cache entry)
        raise InjectError(f"plugin {name} could not be started: {e}", CODE_INVALID_ENV) from None
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except BaseException as e:
        # Only while it is unreaped: its group's ID cannot name anyone else's then.
        if proc.returncode is None:
            with suppress(ProcessLookupError):  # it may have ended on its own meanwhile
                os.killpg(proc.pid, signal.SIGKILL)
        try:
            proc.communicate(timeout=2)
        except subprocess.TimeoutExpired:  # a child of its own session holds its pipes open
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
            proc.wait()
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
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        error = None
    if isinstance(error, dict) and ("code" in error or "msg" in error):
        code = error["code"] if type(error.get("code")) is int else CODE_INTERNAL  # not a JSON true
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


def _libcni_cache_dirs(cache_dir: str) -> list[str]:
    """The cache dirs where libcni records what the node's CNI users attached:
    `cache_dir` (if-inject's) first; the node's default one, where the
    runtimes keep theirs whatever -cache-dir says; and in each, Multus' for its
    delegates (its cniDir, by default /var/lib/cni/multus, is their cacheDir).
    Those after the first only when they are there, each directory once
    (a -cache-dir may be one of them by another name). Multus' is held to
    the rules of a dir on the way."""
    found, seen = [cache_dir], {_dir_identity(cache_dir)}
    for top in (cache_dir, _DEFAULT_CACHE_DIR):
        for directory in (top, os.path.join(top, "multus")):
            identity = _dir_identity(directory)
            if identity is not None and identity not in seen:
                seen.add(identity)
                found.append(directory)
    return found


def _dir_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the directory at `path`; None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _results_dir(cache_dir: str) -> str:
    """Where libcni keeps its cached results under its cacheDir."""
    return os.path.join(cache_dir, "results")


def _cache_file(cache_dir: str, network: str, container_id: str, ifname: str) -> str:
    return os.path.join(_results_dir(cache_dir), f"{network}-{container_id}-{ifname}")


# ---- CNI: result cache: files that no one else can plant or change ------
# Everything under the cache dir is opened relative to a directory fd and
# never through a symbolic link; a directory or file is used only when it is
# ours (the euid's) and no one else can write it (or, for a file, read it).
# A planted symlink, another user's file or a loose mode is refused, naming it.

_LOCK_DIR = "if-inject-locks"
# A temporary file's name starts with ".": a libcni entry's starts with its
# network's name, which starts with a letter or digit.
_TMP_PREFIX = "."
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY  # a FIFO never blocks us


def _unsafe(path: str, why: str) -> InjectError:
    return InjectError(f"{path} {why}: refusing it (see docs/trust.md)", CODE_IO)


def _check_ours(st: os.stat_result, path: str, directory: bool, loose_bits: int) -> None:
    """Refuse what another user made or can change: the wrong type or owner,
    or any of `loose_bits` in its mode."""
    import stat

    if not (stat.S_ISDIR(st.st_mode) if directory else stat.S_ISREG(st.st_mode)):
        raise _unsafe(path, "is not a directory" if directory else "is not a regular file")
    if st.st_uid != os.geteuid():
        owner = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
        raise _unsafe(path, f"is owned by uid {st.st_uid}, not by {owner}")
    if st.st_mode & loose_bits:
        others = "others can write in it" if directory else "others can read or write it"
        raise _unsafe(path, f"has mode {stat.S_IMODE(st.st_mode):04o}: {others}")


def _is_link(name: str, dir_fd: int | None) -> bool:
    import stat

    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_nofollow(path: str, name: str, flags: int, dir_fd: int | None, mode: int = 0o600) -> int:
    """os.open of `name` (in `dir_fd`) that never follows a symbolic link; `path` names it in errors."""
    import errno

    try:
        return os.open(name, flags | _FILE_FLAGS, mode, dir_fd=dir_fd)
    except OSError as e:
        if e.errno == errno.ENOTDIR and flags & os.O_DIRECTORY:  # O_DIRECTORY's answer for a link too
            why = "is a symbolic link" if _is_link(name, dir_fd) else "is not a directory"
            raise _unsafe(path, why) from None
        if e.errno == errno.ELOOP:
            raise _unsafe(path, "is a symbolic link") from None
        raise


def _open_dir(path: str, name: str = "", dir_fd: int | None = None, create: bool = False,
              loose_bits: int = 0o022) -> int:
    """The fd of directory `name` in `dir_fd` (else of `path`), checked to be
    ours; made (0700) first when `create`. Raises OSError (FileNotFoundError
    when it is missing) or InjectError."""
    # normpath: with a trailing "/", even O_NOFOLLOW follows a symbolic link
    target, flags = name or os.path.normpath(path), os.O_RDONLY | os.O_DIRECTORY
    try:  # opened first, made only when missing: a batch opens these per pod
        fd = _open_nofollow(path, target, flags, dir_fd)
    except FileNotFoundError:
        if not create:
            raise
        if dir_fd is None:
            _make_dirs(target)
        else:
            with suppress(FileExistsError):
                os.mkdir(name, 0o700, dir_fd=dir_fd)
        fd = _open_nofollow(path, target, flags, dir_fd)
    try:
        _check_ours(os.fstat(fd), path, directory=True, loose_bits=loose_bits)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _make_dirs(path: str) -> None:
    """Make the absolute `path` (_cache_path's: its links resolved) and its
    missing parents: 0700 at its end, as libcni's MkdirAll(cacheDir, 0700),
    0755 on the way (a umask only takes bits away: never one that lets others
    change the way). Each is made and opened in its parent's fd, never through
    a symbolic link, and checked as the way is: a link or another's directory
    put there meanwhile (in /tmp, anyone can) is refused, not followed."""
    parts = [part for part in path.split("/") if part]
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        for end, name in enumerate(parts, 1):
            with suppress(FileExistsError):
                os.mkdir(name, 0o700 if end == len(parts) else 0o755, dir_fd=fd)
            here = "/" + "/".join(parts[:end])
            parent, fd = fd, -1
            try:
                fd = _open_nofollow(here, name, os.O_RDONLY | os.O_DIRECTORY, parent)
            finally:
                os.close(parent)
            why = _unsafe_on_the_way(os.fstat(fd), os.geteuid())
            if why:
                raise _unsafe(here, why)
    finally:
        if fd >= 0:
            os.close(fd)


def _unsafe_on_the_way(st: os.stat_result, me: int) -> str:
    """Why a directory on the way to the cache dir lets another user change
    what is below it ("" when it does not): owned by another user, or
    writable by group or others, but for a root-owned sticky one (/tmp), where
    nobody else can rename or remove what root made."""
    if st.st_uid not in (0, me):
        return f"is owned by uid {st.st_uid}"
    if st.st_mode & 0o022 and not (st.st_uid == 0 and st.st_mode & 0o1000):
        return "is writable by group or others"
    return ""


def _unsafe_link(st: os.stat_result, directory: os.stat_result, me: int) -> str:
    """Why a symbolic link on the way to the cache dir cannot be followed
    ("" when it can): another user's, or in a directory others can write."""
    if st.st_uid not in (0, me):
        return f"is a symbolic link owned by uid {st.st_uid}"
    if directory.st_mode & 0o022:
        return "is a symbolic link in a directory others can write"
    return ""


_CACHE_PATHS: dict[str, str] = {}  # a cache dir, absolute as given: the path its way was checked to


def _cache_path(cache_dir: str) -> str:
    """Where a cache dir is, its way checked by the rules the executable's
    launcher has for its own cache (docs/trust.md): the path is walked from /
    as given, each directory checked before its entry is looked at, a
    symbolic link on the way followed only when root's (or the euid's) in a
    directory nobody else can write (/var/run -> /run). Returns that path,
    links resolved, with the missing part (if-inject makes it) at its end:
    what is opened is what was checked. Once per process and path: only root
    (or the euid) can change what it passes through."""
    import stat

    given = cache_dir if os.path.isabs(cache_dir) else os.path.join(os.getcwd(), cache_dir)
    if given in _CACHE_PATHS:
        return _CACHE_PATHS[given]
    me, todo, links = os.geteuid(), given.split("/"), 0
    here, st_here = "/", os.stat("/")
    while todo:
        name = todo.pop(0)
        if name in ("", "."):
            continue
        if name == "..":  # `here` has no symbolic link in it: its parent is its dirname
            here = os.path.dirname(here)
            st_here = os.stat(here)
            continue
        why = _unsafe_on_the_way(st_here, me)  # also where a missing name would be made
        if why:
            raise _unsafe(cache_dir, f"goes through {here}, which {why}")
        entry = os.path.join(here, name)
        try:
            st = os.lstat(entry)
        except FileNotFoundError:
            here = os.path.normpath(os.path.join(entry, *todo))  # to be made
            break
        if stat.S_ISLNK(st.st_mode) and todo:
            why = _unsafe_link(st, st_here, me)
            links += 1
            if why or links > 40:
                raise _unsafe(cache_dir, f"goes through {entry}, which {why or 'is one link too many'}")
            target = os.readlink(entry)
            if target.startswith("/"):
                here, st_here = "/", os.stat("/")
            todo[:0] = target.split("/")
        elif stat.S_ISDIR(st.st_mode):
            here, st_here = entry, st
        else:  # the cache dir a link or a file: opening it says what it is
            here = os.path.join(entry, *todo)
            break
    _CACHE_PATHS[given] = here
    return here


def _open_cache_subdir(cache_dir: str, sub: str, create: bool) -> tuple[int, int]:
    """(fd of the cache dir, fd of its `sub`), both checked, as is the way to
    the cache dir. The cache dir itself may be writable by others (a sticky
    /tmp-like mount): what is in it is checked in turn."""
    try:
        where = _cache_path(cache_dir)
    except OSError as e:
        raise InjectError(f"cache dir {cache_dir}: {e.strerror}", CODE_IO) from None
    top = _open_dir(where, create=create, loose_bits=0)
    try:
        mode = os.fstat(top).st_mode
        if mode & 0o022 and not mode & 0o1000:  # others could rename results/ away and back
            raise _unsafe(where, f"has mode {mode & 0o7777:04o}: others can write in it, "
                                 "and it is not sticky")
        return top, _open_dir(os.path.join(where, sub), sub, top, create)
    except BaseException:
        os.close(top)
        raise


@contextmanager
def _results_fd(cache_dir: str, create: bool = False) -> Iterator[int | None]:
    """The checked fd of the cache dir's results/; None when it is missing and not `create`."""
    try:
        top, fd = _open_cache_subdir(cache_dir, "results", create)
    except FileNotFoundError:
        if create:
            raise
        fd = top = -1
    try:
        yield fd if fd >= 0 else None
    finally:
        for each in (fd, top):
            if each >= 0:
                os.close(each)


def _read_entry(dir_fd: int, name: str, path: str, quiet: bool = False) -> dict[str, Any] | None:
    """The cache entry `name` in results/ (`dir_fd`): None when missing,
    empty, corrupt or of another kind (never blocks a DEL; logged unless
    `quiet`: the caller says so); refused when it is not our own regular
    file, unreadable by others."""
    try:
        fd = _open_nofollow(path, name, os.O_RDONLY, dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        if not quiet:
            _log("Ignoring unreadable cache entry", path=path, error=e.strerror)
        return None
    with os.fdopen(fd, "rb") as f:
        _check_ours(os.fstat(f.fileno()), path, directory=False, loose_bits=0o077)
        try:
            entry = json.loads(f.read())
        except (OSError, ValueError, RecursionError) as e:
            if not quiet:
                _log("Ignoring unreadable cache entry", path=path, error=str(e))
            return None
    if not isinstance(entry, dict) or entry.get("kind") != _CACHE_KIND:
        if not quiet:
            _log("Ignoring cache entry of unknown kind", path=path)
        return None
    return entry


def _cache_exists(path: str) -> bool:
    """Whether results/ holds anything at `path` (a symbolic link too: reading it is refused)."""
    results, name = os.path.split(path)
    try:
        with _results_fd(os.path.dirname(results)) as fd:
            if fd is not None:
                os.stat(name, dir_fd=fd, follow_symlinks=False)
                return True
    except FileNotFoundError:
        pass
    except OSError as e:
        raise InjectError(f"result cache {results}: {e.strerror}", CODE_IO) from None
    return False


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
    if pod and pod.runtime_endpoint:  # which runtime to ask, for gc and list, whether it lives
        entry[_CACHE_MARK].update(runtimeEndpoint=pod.runtime_endpoint, runtimeName=pod.runtime_name)
    if network.nad_name:  # the network-status name, for list and gc
        entry[_CACHE_MARK]["netAttachDef"] = network.status_name(pod.namespace if pod else "")
    return entry


def _write_cache(cache_dir: str, network: NetworkConfig, att: Attachment,
                result: dict[str, Any] | None) -> None:
    """Write the cache entry (0600 in a 0700 dir, as libcni) to a new file of
    ours (O_EXCL, whatever was planted) renamed into place: libcni writes in
    place, but a reader (list, gc, a runtime) must never see half an entry.
    The first one of an add (no result yet) goes only where no entry is, or
    over if-inject's own of the same sandbox: two adds given one -containerid
    in two pods take two locks, and the second must not take the first's entry."""
    path = _cache_file(cache_dir, network.name, att.container_id, att.ifname)
    name = os.path.basename(path)
    tmp = f"{_TMP_PREFIX}{name}.tmp{os.getpid()}"
    try:
        with _results_fd(cache_dir, create=True) as results:
            assert results is not None
            with suppress(FileNotFoundError):  # what is there must be ours: a symlink is refused
                st = os.stat(name, dir_fd=results, follow_symlinks=False)
                _check_ours(st, path, directory=False, loose_bits=0o077)
            try:
                fd = _open_nofollow(tmp, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, results)
            except FileExistsError:
                raise _unsafe(os.path.join(os.path.dirname(path), tmp), "exists already") from None
            try:
                with os.fdopen(fd, "w") as f:  # dumps: json.dump encodes in pure Python, 3x slower
                    f.write(json.dumps(_cache_entry(network, att, result), separators=(",", ":")))
                if result is not None or not _linked_if_new(results, tmp, name):
                    if result is None:
                        _refuse_unless_ours(_read_entry(results, name, path), att, path)
                    os.replace(tmp, name, src_dir_fd=results, dst_dir_fd=results)
            except BaseException:
                with suppress(OSError):  # a full disk: no half-written file stays behind
                    os.unlink(tmp, dir_fd=results)
                raise
    except OSError as e:
        raise InjectError(f"result cache {cache_dir}: {e.strerror}", CODE_IO) from None


def _linked_if_new(dir_fd: int, tmp: str, name: str) -> bool:
    """Give `tmp` the name `name` if nothing has it (the link is atomic); False when taken.
    Where a file system has no hard links (vfat, some FUSE), a rename when nothing
    has the name a moment before: only another -containerid's add could race it."""
    import errno

    try:
        os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except FileExistsError:
        return False
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        with suppress(FileNotFoundError):
            os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            return False
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return True
    os.unlink(tmp, dir_fd=dir_fd)
    return True


def _refuse_unless_ours(entry: dict[str, Any] | None, att: Attachment, path: str) -> None:
    """An add may go over an entry only if it is if-inject's of the same sandbox."""
    mark = entry.get(_CACHE_MARK) if entry else None
    sandbox = att.pod.sandbox_id if att.pod else ""
    if not (isinstance(mark, dict) and _entry_sandbox(entry) == sandbox):
        whose = (f"pod {mark.get('namespace')}/{mark.get('pod')}'s" if isinstance(mark, dict)
                 else "not if-inject's")
        raise InjectError(f"cache entry {path} is {whose}: refusing to add over it "
                          "(another -containerid?)", CODE_INVALID_CONFIG)


def _entry_sandbox(entry: dict[str, Any] | None) -> str:
    """The pod sandbox that if-inject recorded in its cache entry ("" for another's, or none)."""
    mark = entry.get(_CACHE_MARK) if entry else None
    sandbox = mark.get("sandboxId") if isinstance(mark, dict) else ""
    return sandbox if isinstance(sandbox, str) else ""


def _read_cache(path: str, quiet: bool = False) -> dict[str, Any] | None:
    """The cache entry at `path` (in a cache dir's results/), or None when
    missing, empty or corrupt (never blocks a DEL); refused (InjectError) when
    it, or results/, could have been planted or changed by someone else."""
    results, name = os.path.split(path)
    try:
        with _results_fd(os.path.dirname(results)) as fd:
            return None if fd is None else _read_entry(fd, name, path, quiet)
    except OSError as e:
        raise InjectError(f"result cache {results}: {e.strerror}", CODE_IO) from None


def _remove_cache(cache_dir: str, network: str, container_id: str, ifname: str) -> None:
    name = os.path.basename(_cache_file(cache_dir, network, container_id, ifname))
    try:
        with _results_fd(cache_dir) as fd:
            if fd is not None:
                os.unlink(name, dir_fd=fd)  # a symbolic link itself, never its target
    except FileNotFoundError:
        pass
    except OSError as e:
        raise InjectError(f"result cache {cache_dir}: {e.strerror}", CODE_IO) from None


class CachedAttachment(NamedTuple):
    """One attachment if-inject made, as its cache entry records it: what
    list, gc and cache-only del share. `sandbox_state`, `stale` and
    `undecided` are the runtime's view, given by Node.attachments() (left
    empty in what the cache alone says)."""

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
    # The runtime that made it ("" in entries of if-inject before it recorded them).
    runtime_endpoint: str = ""
    runtime_name: str = ""
    sandbox_state: str = ""  # ready, notready, gone; unknown when it cannot be asked
    stale: bool = False
    undecided: str = ""  # why it cannot be told whether it is stale ("" when it can)

    @classmethod
    def from_entry(cls, path: str, entry: dict[str, Any]) -> CachedAttachment:
        mark = entry[_CACHE_MARK]
        result, capability_args = entry.get("result"), entry.get("capabilityArgs")
        return cls(path=path, namespace=str(mark.get("namespace", "")), pod=str(mark.get("pod", "")),
                   pod_uid=str(mark.get("podUid", "")), sandbox_id=_entry_sandbox(entry),
                   net_attach_def=str(mark.get("netAttachDef", "")), interface=str(entry.get("ifName", "")),
                   network=str(entry.get("networkName", "")), container_id=str(entry.get("containerId", "")),
                   netns=_normal_path(str(entry.get("netns") or "")), config=str(entry.get("config", "")),
                   cni_args=[(str(kv[0]), str(kv[1])) for kv in _dig_list(entry, "cniArgs")
                             if isinstance(kv, list) and len(kv) == 2],
                   capability_args=capability_args if isinstance(capability_args, dict) else {},
                   result=result if isinstance(result, dict) else None,
                   runtime_endpoint=str(mark.get("runtimeEndpoint") or ""),
                   runtime_name=str(mark.get("runtimeName") or ""))

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
        return parse_network_config(raw, "cached config")

    @property
    def lock_key(self) -> str:
        """What keys its attachment's lock, as add, check, del and veth take it: the
        sandbox, or the container ID in an API caller's entry that has none."""
        return self.sandbox_id or self.container_id

    def attachment(self, netns: str | None = None) -> Attachment:
        """The Attachment the entry records, in `netns` when given (the one the
        runtime reports now for a live pod, "" for one that is gone); else in
        the cached netns, checked (see checked_netns)."""
        if netns is None:
            netns = self.checked_netns()
        # A /proc/<pid>/ns/net path (cri-dockerd's, never a cached one) is the pod's
        # now: its namespace is pinned here, and each plugin's run checks it still is.
        netns_id = _check_netns(netns) if netns and _is_proc_path(netns) else None
        pod = Pod(namespace=self.namespace, name=self.pod, uid=self.pod_uid, sandbox_id=self.sandbox_id,
                  netns=netns, netns_id=netns_id)
        return Attachment(container_id=self.container_id, netns=netns, ifname=self.interface,
                          args=list(self.cni_args), capability_args=dict(self.capability_args), pod=pod)

    def checked_netns(self) -> str:
        """The entry's netns, checked as the runtime's is: the node's own (in
        any spelling, or through a symbolic link) or a relative path is
        refused; "" when it is gone (or no network namespace) or in /proc
        (that PID may be another process's by now), so that DEL runs without
        one, as the spec allows."""
        netns = self.netns  # normalised when read
        if not netns:
            return ""
        if not netns.startswith("/") or not _is_os_text(netns):
            raise InjectError(f"cache entry {self.path}: netns {netns!r} is not an absolute path: "
                              "refusing it", CODE_DECODING)
        if _is_node_netns(netns):
            raise InjectError(f"cache entry {self.path}: {netns} is the node's own network namespace: "
                              "refusing to change the node", CODE_INVALID_ENV)
        if _is_proc_path(netns):
            return ""
        try:
            _check_netns(netns)
        except InjectError as e:
            _log("The cached netns is gone: DEL runs without one", v=1, path=self.path, error=str(e))
            return ""
        return netns

    def json(self) -> dict[str, Any]:
        """What `list -o json` prints."""
        return {"namespace": self.namespace, "pod": self.pod, "interface": self.interface,
                "network": self.network, "netAttachDef": self.net_attach_def, "addresses": self.addresses,
                "containerId": self.container_id, "netns": self.netns, "sandboxId": self.sandbox_id,
                "sandboxState": self.sandbox_state, "stale": self.stale, "undecided": self.undecided,
                "runtimeName": self.runtime_name, "runtimeEndpoint": self.runtime_endpoint,
                "cacheFile": self.path}


def _cache_entries(cache_dir: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, entry) of every readable cache entry, whoever wrote it, by file
    name; an entry that is refused (see _read_entry) is logged as an error and
    left out."""
    return ((path, entry) for path, entry in _listed_entries(cache_dir) if entry)


def _listed_entries(cache_dir: str, ifname: str = "") -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(path, entry) of every file in results/ but our temporary ones, or with
    `ifname` only of those named as libcni names an entry of that interface
    (NETWORK-CONTAINERID-IFNAME: a node's cache holds one per pod and network,
    and the others are not read); the entry None when it cannot be read
    (empty, corrupt, refused)."""
    results = _results_dir(cache_dir)
    try:
        with _results_fd(cache_dir) as fd:
            if fd is None:
                return
            for name in sorted(os.listdir(fd)):
                if not (name[:1].isascii() and name[:1].isalnum()):  # our temporary files, not libcni's
                    continue
                if ifname and not name.endswith(f"-{ifname}"):
                    continue
                path = os.path.join(results, name)
                yield path, _listed_entry(fd, name, path)
    except OSError as e:
        raise InjectError(f"result cache {results}: {e.strerror}", CODE_IO) from None


def _cached_attachments(cache_dir: str) -> list[CachedAttachment]:
    """Every readable entry that if-inject wrote, at the file name its own
    fields give: a DEL reads and removes the entry by that name."""
    found = []
    for path, entry in _cache_entries(cache_dir):
        if not isinstance(entry.get(_CACHE_MARK), dict):
            continue
        cached = CachedAttachment.from_entry(path, entry)
        if not _at_its_own_name(cache_dir, cached):
            _log_error("Refusing cache entry", "its file name is not the one its network, "
                       "container ID and interface give (copied or renamed?)", path=path)
            continue
        found.append(cached)
    return found


def _at_its_own_name(cache_dir: str, cached: CachedAttachment) -> bool:
    """Whether an entry is at the file name its network, container ID and interface give."""
    return cached.path == _cache_file(cache_dir, cached.network, cached.container_id, cached.interface)


def _cached_network_attachments(cache_dir: str, network: str) -> list[tuple[str, str]]:
    """(container ID, interface) of every cache entry of `network`, whoever wrote
    it, as libcni's GetCachedAttachments reads them."""
    return _cached_attachments_by_network(cache_dir).get(network, [])


def _cached_attachments_by_network(cache_dir: str) -> dict[str, list[tuple[str, str]]]:
    """_cached_network_attachments of every network, in one read of the cache."""
    found: dict[str, list[tuple[str, str]]] = {}
    for _, entry in _cache_entries(cache_dir):
        network = entry.get("networkName")
        if isinstance(network, str) and entry.get("ifName") and entry.get("containerId"):
            found.setdefault(network, []).append((str(entry["containerId"]), str(entry["ifName"])))
    return found


def _listed_entry(dir_fd: int, name: str, path: str) -> dict[str, Any] | None:
    """A listed file's entry: None for a directory, or when refused (logged)."""
    import stat

    try:
        if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return None
        return _read_entry(dir_fd, name, path)
    except FileNotFoundError:  # removed while we look
        return None
    except InjectError as e:
        _log_error("Refusing cache entry", e, path=path)
        return None


# The result types of libcni's pkg/types (020, 040, 100) and the versions each
# reads; 1.1.0 is read as 1.0.0 is, as libcni does from 1.2.
_RESULT_TYPES = {"0.1.0": "020", "0.2.0": "020", "0.3.0": "040", "0.3.1": "040", "0.4.0": "040",
                "1.0.0": "100", "1.1.0": "100"}


def _convert_result(result: dict[str, Any], version: str) -> dict[str, Any]:
    """`result` as CNI `version`, as libcni's GetAsVersion converts a cached
    result to the config's version before it is any plugin's prevResult."""
    source = result.get("cniVersion") or "0.1.0"  # libcni's reading of a missing version
    if not isinstance(source, str):
        raise InjectError(f"cannot convert a result whose cniVersion is {source!r}", CODE_DECODING)
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
    out["routes"] = [_route(r) for r in result.get("routes") or []]
    return out


# A route as libcni's types.Route carries it across result versions (1.2+: CNI 1.1's
# mtu, advmss, priority, table, scope too); zero mtu, advmss and priority are left out.
_ROUTE_KEYS = ("dst", "gw", "mtu", "advmss", "priority", "table", "scope")


def _route(route: dict[str, Any]) -> dict[str, Any]:
    return {k: route[k] for k in _ROUTE_KEYS
            if route.get(k) or (k in ("table", "scope") and route.get(k) is not None) or k == "dst"}


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


def _result_addresses(result: Any) -> list[str]:
    """The addresses (CIDRs) in a CNI result of any version."""
    ips, _ = _result_ips_and_routes(result)
    return [str(ip["address"]) for ip in ips if ip.get("address")]


def _result_ips_and_routes(result: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The "ips" and "routes" of a CNI result of any version, as 1.0.0 has them."""
    if isinstance(_dig(result, "ips"), list) or isinstance(_dig(result, "routes"), list):
        ips, routes = _dig_list(result, "ips"), _dig_list(result, "routes")
    else:  # CNI 0.1.0 and 0.2.0: ip4 and ip6, each with its address and routes
        old = [_dig(result, key) or {} for key in ("ip4", "ip6")]
        ips = [{"address": o.get("ip")} for o in old if isinstance(o, dict) and o.get("ip")]
        routes = [r for o in old for r in _dig_list(o, "routes")]
    return ([ip for ip in ips if isinstance(ip, dict)], [r for r in routes if isinstance(r, dict)])



# ---- CNI: locks: one attachment, one network at a time -------------


class _attachment_lock:
    """An exclusive flock per pod sandbox and interface, so that two
    if-injects never work on the same interface of a pod at once (add, check,
    del and veth: one key, whatever -containerid says). The lock file is
    removed after use; a waiter that got the lock on a removed file tries
    again. Directory and file are opened as the cache's are (never through a
    symbolic link, ours only)."""

    shared = False  # _network_lock's ADDs and DELs share theirs

    def __init__(self, cache_dir: str, sandbox_id: str, ifname: str, timeout: float) -> None:
        if not re.fullmatch(_NAME_PATTERN, sandbox_id):  # it becomes a file name
            raise InjectError(f"invalid sandbox ID {sandbox_id!r}", CODE_INVALID_ENV)
        _validate_ifname(ifname)
        self._set_file(cache_dir, f"{sandbox_id}-{ifname}.lock", timeout)

    def _set_file(self, cache_dir: str, name: str, timeout: float) -> None:
        self.cache_dir = cache_dir
        self.name = name
        self.path = os.path.join(cache_dir, _LOCK_DIR, self.name)
        self.timeout = timeout
        self.fd = self.dir_fd = self.top_fd = -1

    def __enter__(self) -> _attachment_lock:
        deadline = time.monotonic() + self.timeout
        try:
            while not self._try_lock():
                if time.monotonic() > deadline:
                    raise InjectError(f"another if-inject works on {self.path}: "
                                      "gave up waiting", CODE_TRY_AGAIN_LATER) from None
                with _interruptible():
                    time.sleep(0.05)
        except OSError as e:
            raise InjectError(f"lock {self.path}: {e.strerror}", CODE_IO) from None
        return self

    def _try_lock(self) -> bool:
        """One attempt; True when the lock is ours (the fds then kept), False when held."""
        import fcntl

        try:
            top, locks = _open_cache_subdir(self.cache_dir, _LOCK_DIR, create=True)
        except FileNotFoundError:  # the last user removed the lock dir after we made sure of it
            return False
        fd, taken = -1, False
        try:
            # ENOENT: the last user removed the lock dir after we opened it
            with suppress(FileNotFoundError):
                fd = _open_nofollow(self.path, self.name, os.O_RDWR | os.O_CREAT, locks)
                _check_ours(os.fstat(fd), self.path, directory=False, loose_bits=0o077)
                fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                # Still linked there: the previous holder did not remove it meanwhile.
                if os.stat(self.name, dir_fd=locks, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                    self.fd, self.dir_fd, self.top_fd = fd, locks, top
                    taken = True
        except BlockingIOError:
            pass
        finally:
            if not taken:
                for each in (fd, locks, top):
                    if each >= 0:
                        os.close(each)
        return taken

    def __exit__(self, *exc: object) -> None:
        import fcntl

        with suppress(OSError):
            # A shared holder removes the file only when it can make its lock
            # exclusive: no one else holds it then.
            if self.shared:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(self.name, dir_fd=self.dir_fd)
        os.close(self.fd)
        with suppress(OSError):  # fails while another holder's lock is in it
            # Only the dir we locked in, not whatever has its name by now.
            if os.path.samestat(os.stat(_LOCK_DIR, dir_fd=self.top_fd, follow_symlinks=False),
                                os.fstat(self.dir_fd)):
                os.rmdir(_LOCK_DIR, dir_fd=self.top_fd)
        os.close(self.dir_fd)
        os.close(self.top_fd)
        self.fd = self.dir_fd = self.top_fd = -1


class _network_lock(_attachment_lock):
    """A lock per network: ADD and DEL hold it shared, GC alone (CNI 1.1: no
    ADD or DEL of a network while its GC runs). Its name has a ':', which no
    attachment's lock can have (container IDs and interface names have none)."""

    def __init__(self, cache_dir: str, network: str, timeout: float, shared: bool) -> None:
        self._set_file(cache_dir, f"network:{network}.lock", timeout)  # a NetworkConfig's name: checked
        self.shared = shared


# ---- CNI: add, del, check -----------------------------------------------


class CNI:
    """How plugins are found and run, as libcni's CNIConfig; knows nothing of the
    runtime (an Attachment may carry its Pod record, which the cache keeps).
    `timeout`: seconds, for each plugin and lock (and a Node's runtime calls)."""

    def __init__(self, path: list[str] | None = None, cache_dir: str = _DEFAULT_CACHE_DIR,
                 timeout: float = 10.0) -> None:
        if not 0 < timeout < 1e6:  # nan, inf and a deadline past any clock's range too
            raise InjectError(f"invalid timeout {timeout!r}: seconds, above 0 and below 1e6",
                              CODE_INVALID_CONFIG)
        if not cache_dir:  # "" would be wherever if-inject happens to run
            raise InjectError("the cache dir must not be empty", CODE_INVALID_CONFIG)
        self.path = list(_DEFAULT_CNI_PATH) if path is None else path
        self.cache_dir = cache_dir
        self.timeout = timeout

    def _invoke(self, command: str, network: NetworkConfig, plugin: dict[str, Any],
               att: Attachment, prev_result: dict[str, Any] | None) -> bytes:
        """One plugin call (ADD, DEL or CHECK); returns its stdout."""
        _check_same_netns(att)
        stdin = _plugin_stdin(network, plugin, att, prev_result)
        return self._run_plugin(command, plugin["type"], att, stdin)

    def _run_plugin(self, command: str, plugin_type: str, att: Attachment | None, stdin: bytes) -> bytes:
        """Find the plugin in the CNI path and run it (logged at -loglevel 2); its stdout."""
        binary = _find_plugin(plugin_type, self.path)
        env = _plugin_env(command, att, self.path)
        _log("Plugin", v=2, command=command, plugin=binary, stdin=stdin.decode(),
            env={k: v for k, v in env.items() if k.startswith("CNI_")})
        return _exec_plugin(binary, env, stdin, self.timeout)

    def _invoke_add(self, network: NetworkConfig, plugin: dict[str, Any], att: Attachment,
                   prev_result: dict[str, Any] | None) -> dict[str, Any]:
        """One plugin's ADD; returns its result."""
        out = self._invoke("ADD", network, plugin, att, prev_result)
        try:
            result = _json_value(out)  # cached, for libcni and the plugins to read
        except ValueError:
            result = None
        if not isinstance(result, dict):
            raise InjectError(f"plugin {plugin['type']} returned no valid result: "
                              f"{out[:200].decode(errors='replace')!r}", CODE_DECODING)
        if not isinstance(result.get("cniVersion"), str) or not result["cniVersion"]:
            result["cniVersion"] = network.cni_version  # as libcni: the conf's, when the plugin gave none
        return result

    def _prev_result_for_del(self, network: NetworkConfig,
                            result: dict[str, Any] | None) -> dict[str, Any] | None:
        # prevResult on DEL came with CNI 0.4.0; older plugins must not see it.
        if not isinstance(result, dict) or network.version_tuple < (0, 4, 0):
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
        with _network_lock(self.cache_dir, network.name, self.timeout, shared=True):
            return self._add(network, att)

    def _add(self, network: NetworkConfig, att: Attachment) -> dict[str, Any]:
        # The entry goes in first: if we are killed half-way, gc and del find it.
        _write_cache(self.cache_dir, network, att, None)
        result: dict[str, Any] | None = None
        ran: list[dict[str, Any]] = []
        try:
            with _interruptible():
                for plugin in network.plugins:
                    ran.append(plugin)
                    result = self._invoke_add(network, plugin, att, result)
            assert result is not None
            # A result that cannot be cached (a full disk) could never be
            # deleted with its prevResult: the ADD is undone instead.
            _write_cache(self.cache_dir, network, att, result)
        except BaseException as e:
            self._rollback(network, att, ran, result, e)
        return result

    def _rollback(self, network: NetworkConfig, att: Attachment, ran: list[dict[str, Any]],
                  result: dict[str, Any] | None, cause: BaseException) -> NoReturn:
        """DEL what ran, then raise the cause with what the rollback did."""
        with _signals_deferred():
            failures = self._delete_plugins(network, att, ran, result)
            if not failures:
                _remove_cache(self.cache_dir, network.name, att.container_id, att.ifname)
        names = ", ".join(p["type"] for p in reversed(ran))
        note = (f"rolled back (DEL ran for {names})" if not failures
                else f"rollback failed: {'; '.join(failures)}")
        _log("Add failed", v=1, rollback=note)
        raise _undone(cause, note) from None

    def _delete_plugins(self, network: NetworkConfig, att: Attachment,
                       plugins: list[dict[str, Any]], result: dict[str, Any] | None) -> list[str]:
        """DEL in reverse order, best effort: every plugin runs, errors are collected."""
        prev = self._prev_result_for_del(network, result)
        failures = []
        for plugin in reversed(plugins):
            try:
                self._invoke("DEL", network, plugin, att, prev)
            except InjectError as e:
                failures.append(str(e))
        return failures

    def delete(self, network: NetworkConfig, att: Attachment) -> None:
        """DEL with the cached result; the cache entry goes only when every plugin succeeded."""
        path = _cache_file(self.cache_dir, network.name, att.container_id, att.ifname)
        entry = _read_cache(path)
        other = _entry_sandbox(entry)
        if att.pod and att.pod.sandbox_id and other and other != att.pod.sandbox_id:
            # The same -containerid in a pod's next sandbox: that entry is its attachment, not this one.
            raise InjectError(f"cache entry {path} is sandbox {other}'s, not {att.pod.sandbox_id}'s: "
                              "not deleting it", CODE_INVALID_CONFIG)
        with _signals_deferred(), _network_lock(self.cache_dir, network.name, self.timeout, shared=True):
            # A DEL is a clean-up: it runs to its end.
            failures = self._delete_plugins(network, att, network.plugins,
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
                self._invoke("CHECK", network, plugin, att, prev)

    # CNI 1.1's STATUS and GC: calls on a network rather than on an attachment.

    def _invoke_on_network(self, command: str, network: NetworkConfig, plugin: dict[str, Any],
                          extra: dict[str, Any] | None = None) -> None:
        """One STATUS or GC call: the plugin's conf with the list's name and
        version (and `extra`), no runtimeConfig, and an empty CNI_CONTAINERID,
        CNI_NETNS, CNI_IFNAME and CNI_ARGS, as libcni calls it."""
        stdin = json.dumps(dict(plugin, name=network.name, cniVersion=network.cni_version,
                                **(extra or {}))).encode()
        self._run_plugin(command, plugin["type"], None, stdin)

    def status(self, network: NetworkConfig) -> bool:
        """STATUS to each plugin in order, as libcni's GetStatusNetworkList: the
        first that is not ready raises its error (50: not available, 51: limited
        connectivity). False when the network is below CNI 1.1.0: nothing is asked."""
        if network.version_tuple < (1, 1, 0):
            return False
        with _interruptible():
            for plugin in network.plugins:
                self._invoke_on_network("STATUS", network, plugin)
        return True

    def gc(self, network: NetworkConfig, valid_attachments: list[tuple[str, str]]) -> None:
        """GC a network, as libcni's GCNetworkList: DEL the attachments that
        if-inject cached for it and that `valid_attachments` (container ID,
        interface) leaves out, then, from CNI 1.1.0, send GC to every plugin
        with the attachments still valid, while no ADD or DEL of the network runs.
        Every plugin is asked when one fails; the failures are raised together."""
        if network.disable_gc:
            _log("GC disabled by the network's disableGC: nothing runs", v=1, network=network.name)
            return
        valid = list(dict.fromkeys(valid_attachments))
        failures = []
        for cached in _cached_attachments(self.cache_dir):
            if cached.network == network.name and (cached.container_id, cached.interface) not in valid:
                att = cached.attachment()
                try:
                    with _attachment_lock(self.cache_dir, cached.lock_key, att.ifname, self.timeout):
                        self.delete(network, att)
                except InjectError as e:
                    failures.append(f"stale attachment {att.container_id} {att.ifname}: {e}")
        if network.version_tuple >= (1, 1, 0):
            failures += self._gc_plugins(network, valid)
        if failures:
            raise InjectError(_gc_failed(failures), CODE_INTERNAL)

    def _gc_plugins(self, network: NetworkConfig, valid: list[tuple[str, str]]) -> list[str]:
        failures = []
        # Held, as a DEL: a GC cut short would leave a plugin's clean-up half-done.
        with _network_lock(self.cache_dir, network.name, self.timeout, shared=False), _signals_deferred():
            # What is cached now stays valid too: an attachment whose DEL failed, another
            # tool's (not ours to judge), one added since the caller looked.
            valid += [a for a in _cached_network_attachments(self.cache_dir, network.name) if a not in valid]
            listed = [{"containerID": container_id, "ifname": ifname} for container_id, ifname in valid]
            # libcni writes both keys: the spec first named it cni.dev/attachments.
            extra = {"cni.dev/valid-attachments": listed, "cni.dev/attachments": listed}
            for plugin in network.plugins:
                try:
                    self._invoke_on_network("GC", network, plugin, extra)
                except InjectError as e:
                    failures.append(f"plugin {plugin['type']}: {e}")
        return failures


def _gc_failed(failures: list[str]) -> str:
    """The error of a GC that failed in part: each failure, after the others had their turn."""
    return "GC failed: " + "; ".join(failures)


# ---- specs, and Multus: a spec's file, a NetworkAttachmentDefinition, network-status
# A spec is what users give -spec: a conf or conflist, or a Multus
# NetworkAttachmentDefinition that holds one; network-status is what Multus
# writes of each attachment in the pod's annotation.

# Multus' NetworkAttachmentDefinition (network-attachment-definition-client,
# pkg/apis/k8s.cni.cncf.io/v1): the CNI config is a JSON string in .spec.config.
_NAD_API_VERSION = "k8s.cni.cncf.io/v1"
_NAD_KIND = "NetworkAttachmentDefinition"
# Kubernetes object names: a DNS-1123 subdomain; namespaces: a DNS-1123 label.
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_OBJECT_NAME = rf"(?=.{{1,253}}\Z){_DNS_LABEL}(\.{_DNS_LABEL})*"  # matched whole (fullmatch)
_NAMESPACE = rf"(?=.{{1,63}}\Z){_DNS_LABEL}"


_SPEC_LIMIT = 4 << 20  # bytes: a spec is a few KB; /dev/zero or an endless pipe is none


def read_network(path: str) -> NetworkConfig:
    """The network spec (see parse_spec) in the file at `path`, or on stdin when `path` is "-"."""
    if path == "-":
        return parse_spec(_read_stdin(), "stdin")
    try:
        # Interruptible: a FIFO no one writes to (or `<(slow command)`) waits in open.
        with _interruptible(), open(path, "rb") as f:
            raw = _read_spec(f, path)
    except OSError as e:
        raise InjectError(f"spec {path}: {e.strerror}", CODE_IO) from None
    return parse_spec(raw, path)


def _read_stdin() -> bytes:
    if sys.stdin is None:
        raise InjectError("spec -: there is no standard input", CODE_IO)
    if sys.stdin.isatty():  # a pipe is what `-spec -` is for; a terminal would just wait
        raise InjectError("spec -: standard input is a terminal: pipe the spec in", CODE_INVALID_CONFIG)
    try:
        with _interruptible():
            return _read_spec(sys.stdin.buffer, "-")
    except OSError as e:
        raise InjectError(f"spec -: {e.strerror or e}", CODE_IO) from None


def _read_spec(f: Any, path: str) -> bytes:
    raw: bytes = f.read(_SPEC_LIMIT + 1)
    if len(raw) > _SPEC_LIMIT:
        raise InjectError(f"spec {path}: larger than {_SPEC_LIMIT >> 20} MiB: not a network spec",
                          CODE_INVALID_CONFIG)
    return raw


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
        return _json_value(raw)
    except ValueError as e:
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


def _shown(value: Any, as_text: Callable[[str], str]) -> str:
    """A value of a spec in an error: a string as `as_text` shows it, anything
    else by its type alone (the text of a YAML alias bomb would never end)."""
    return as_text(value) if isinstance(value, str) else f"of type {type(value).__name__}"


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
        found = (f"kind {_shown(kind, str)}" if kind else "no kind") + " and " + \
                (f"apiVersion {_shown(api_version, str)}" if api_version else "no apiVersion")
        raise InjectError(f"{source}: a document of {found}, not a {_NAD_KIND} of {_NAD_API_VERSION}",
                          CODE_INVALID_CONFIG)
    name, namespace = _dig(document, "metadata", "name"), _dig(document, "metadata", "namespace") or ""
    if not isinstance(name, str) or not re.fullmatch(_OBJECT_NAME, name):
        raise InjectError(f"{source}: {_NAD_KIND} with an invalid metadata.name {_shown(name, repr)}",
                          CODE_INVALID_CONFIG)
    if not isinstance(namespace, str) or (namespace and not re.fullmatch(_NAMESPACE, namespace)):
        raise InjectError(f"{source}: {_NAD_KIND} {name} with an invalid metadata.namespace "
                          f"{_shown(namespace, repr)}", CODE_INVALID_CONFIG)
    what = f"{source}: {_NAD_KIND} {namespace}/{name}" if namespace else f"{source}: {_NAD_KIND} {name}"
    config = _dig(document, "spec", "config")
    if config is None or config == "":
        raise InjectError(f"{what} has no spec.config (Multus then reads the network from a file "
                          "on the node: give that file as -spec)", CODE_INVALID_CONFIG)
    if not isinstance(config, str):
        raise InjectError(f"{what}: spec.config is a {type(config).__name__}, not a string of JSON",
                          CODE_INVALID_CONFIG)
    try:
        conf = _json_value(config)
    except ValueError as e:
        raise InjectError(f"{what}: spec.config is not JSON ({e})", CODE_DECODING) from None
    raw = config.encode()
    if isinstance(conf, dict) and conf.get("name", "") == "":
        conf["name"] = name
        raw = json.dumps(conf).encode()
    network = _network_from_conf(conf, raw, f"{what}: spec.config")
    return network._replace(nad_namespace=namespace, nad_name=name)


def network_status(result: Any, name: str, ifname: str) -> dict[str, Any]:
    """The entry Multus writes for an attachment in the pod's
    k8s.v1.cni.cncf.io/network-status annotation, from its CNI result (as
    network-attachment-definition-client's CreateNetworkStatuses and the JSON
    of its NetworkStatus: empty fields are left out, "default" among them, as
    it is false for every network but the cluster's; "dns" is always there).

    The entry is the result's pod interface named `ifname`; when the result
    names none (CNI before 0.3.0), it still names `ifname`."""
    interfaces = [i if isinstance(i, dict) else {} for i in _dig_list(result, "interfaces")]
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
    if interface.get("pciID"):
        # Multus takes device-info from the device plugin's file; with none here, the
        # CNI 1.1 result's PCI id fills in the same shape (its DeviceInfo, type pci).
        entry["device-info"] = {"type": "pci", "version": "1.1.0", "pci": {"pci-address": interface["pciID"]}}
    gateways = [str(r["gw"]) for r in routes if r.get("gw") and _is_default_route(r.get("dst"))]
    if gateways:
        entry["gateway"] = gateways
    return entry


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



# ---- netlink: links, veth pairs -----------------------------------------


def _in_netns(path: str, func: Callable[[], _T]) -> _T:
    """Run func in a thread that has entered the netns at `path`.

    setns() changes only the calling thread, and the thread ends right after,
    so the rest of the process never leaves the node's netns. (os.setns comes
    with Python 3.12; libc's is used here.)
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            fd = _open_netns(path)
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


def _interface_names(netns: str, pid: int = 0) -> set[str]:
    """Names of the interfaces in a netns (no pyroute2 needed for this). With
    `pid`, a process the runtime says is in it (a pod's pause), they are read
    from its /proc entry when that is the netns: no ctypes and no thread, ~4 ms
    of a call."""
    names = _interface_names_of_process(netns, pid) if pid else None
    if names is not None:
        return names
    import socket

    return _in_netns(netns, lambda: {name for _, name in socket.if_nameindex()})


def _interface_names_of_process(netns: str, pid: int) -> set[str] | None:
    """The names in /proc/PID/net/dev when PID is in the netns at `netns`;
    None when it is not, or is gone. A PID can be reused: all is read through
    one open /proc/PID, which stays that process's (a reused PID is another
    entry, and the gone process's lookups fail)."""
    try:
        proc = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        theirs, wanted = os.stat("ns/net", dir_fd=proc), os.stat(netns)
        if (theirs.st_dev, theirs.st_ino) != (wanted.st_dev, wanted.st_ino):
            return None
        with open(os.open("net/dev", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc), "rb") as dev:
            lines = dev.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    finally:
        os.close(proc)
    # Two header lines, then "  name: counters"; a name never has a ':'.
    return {line.split(":", 1)[0].strip() for line in lines[2:] if ":" in line}


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


class Link(NamedTuple):
    """An interface as `ip -br addr` shows it, with its MAC and MTU."""

    name: str
    index: int  # type: ignore[assignment]  # the kernel's ifindex, hiding tuple.index
    state: str  # operstate
    mac: str
    mtu: int
    kind: str  # "" when the kernel names none
    link: str  # parent or veth peer: a name here, "ifN" in another netns
    addresses: list[str]  # CIDRs

    def json(self) -> dict[str, Any]:
        """What `links -o json` prints."""
        return self._asdict()


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


class VethEnd(NamedTuple):
    """One end of a veth pair as made: its name, MAC, MTU and the addresses given."""

    name: str
    mac: str
    mtu: int
    addresses: list[str]


class Veth(NamedTuple):
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
    pod_cidrs, host_cidrs = _veth_input((ifname, host_ifname), address, host_address, mtu)
    return _make_veth(netns, ifname, host_ifname, pod_cidrs, host_cidrs, mtu, timeout)


def _veth_input(names: tuple[str, ...], address: str | list[str] | None = None,
                host_address: str | list[str] | None = None,
                mtu: int | None = None) -> tuple[list[Any], list[Any]]:
    """A veth's input, checked in one place before anything is asked or made:
    its interface names, its MTU; returns the addresses of the pod's and the
    node's end, parsed."""
    for name in names:
        _validate_ifname(name)
    pod_cidrs, host_cidrs = _parse_cidrs(address), _parse_cidrs(host_address)
    if mtu is not None and not 68 <= mtu <= 65535:
        raise InjectError(f"invalid MTU {mtu}: 68 to 65535", CODE_INVALID_CONFIG)
    return pod_cidrs, host_cidrs


def _make_veth(netns: str, ifname: str, host_ifname: str, pod_cidrs: list[Any], host_cidrs: list[Any],
              mtu: int | None, timeout: float) -> Veth:
    """add_veth once its input is checked (see _veth_input)."""
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
    _log("Veth added", v=1, netns=netns, interface=ifname, hostInterface=host_ifname)
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
    fd = _open_netns(netns)
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
        fd = _open_netns(netns)
        try:
            return host_end, ipr.get_netnsid(fd=fd)["nsid"]
        finally:
            os.close(fd)

    with _netlink_step(f"reading {host_ifname} on the node"):
        host_end, nsid = _netlink(None, read_node_end)
    if host_end is None or nsid is None or host_end.get_attr("IFLA_LINK_NETNSID") != nsid:
        return pod_end, host_end, 0
    return pod_end, host_end, int(host_end.get_attr("IFLA_LINK") or 0)


def _peer_name_in(netns: str, host_ifname: str) -> str:
    """The name in `netns` of the veth peer of `host_ifname` on the node; "" when it
    has none there (delete_veth then says why it deletes nothing)."""
    _, _, index = _veth_ends(netns, None, host_ifname)
    if not index:
        return ""
    with _netlink_step(f"reading the peer of {host_ifname} in {netns}"):
        links = _netlink(netns, lambda ipr: ipr.get_links(index))
    return str(links[0].get_attr("IFLA_IFNAME") or "") if links else ""


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
    _log("Veth deleted", v=1, netns=netns, interface=ifname, hostInterface=host_ifname)


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


# ---- pods: a pod's attachments ------------------------------------------


def _kubelet_args(pod: Pod) -> list[tuple[str, str]]:
    """CNI_ARGS as kubelet passes them; IgnoreUnknown keeps host-local happy."""
    return [("IgnoreUnknown", "1"), ("K8S_POD_NAMESPACE", pod.namespace),
            ("K8S_POD_NAME", pod.name), ("K8S_POD_INFRA_CONTAINER_ID", pod.sandbox_id),
            ("K8S_POD_UID", pod.uid)]


def _default_container_id(pod: Pod) -> str:
    """The netns file's name, as the original; /proc/<pid>/ns/net would make
    every pod "net", so the sandbox ID stands in there."""
    base = os.path.basename(pod.netns)
    return pod.sandbox_id if base == "net" or not re.fullmatch(_NAME_PATTERN, base) else base


def _pod_attachment(pod: Pod, ifname: str = "net1", container_id: str = "",
                   args: list[tuple[str, str]] | None = None,
                   capability_args: dict[str, Any] | None = None) -> Attachment:
    return Attachment(container_id or _default_container_id(pod), pod.netns, ifname,
                      _kubelet_args(pod) + list(args or []), dict(capability_args or {}), pod)


def _matching_attachments(cache_dir: str, namespace: str, pod: str, ifname: str,
                         network: str = "") -> list[CachedAttachment]:
    """Our cached attachments of a pod's interface (of one network, if given)."""
    return [cached for cached in _cached_attachments(cache_dir)
            if _of_pods_interface(cached, namespace, pod, ifname, network)]


def _of_pods_interface(cached: CachedAttachment, namespace: str, pod: str, ifname: str,
                       network: str = "") -> bool:
    """Whether a cached attachment is of a pod's interface (and network, if given).
    Never one made outside any pod (through the API's CNI class: its caller's),
    whose empty namespace and pod an empty -ns and -pod would match."""
    return ((cached.namespace, cached.pod, cached.interface) == (namespace, pod, ifname)
            and bool(cached.sandbox_id) and (not network or cached.network == network))


def _cni_records(cache_dir: str, pod: Pod, ifname: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(path, entry) of each libcni cache entry that records an ADD of the pod's
    `ifname`, whoever made it (the runtime's eth0, Multus' delegates', if-inject's),
    in every cache dir of the node (_libcni_cache_dirs), among those named as
    libcni names them (NETWORK-CONTAINERID-IFNAME); entry None for one named
    with the pod's container ID that cannot be read."""
    ids = {pod.sandbox_id, _default_container_id(pod)} - {""}
    for directory in _libcni_cache_dirs(cache_dir):
        for path, entry in _listed_entries(directory, ifname):
            if entry is None:
                if any(os.path.basename(path).endswith(f"-{id_}-{ifname}") for id_ in ids):
                    yield path, None
            elif entry.get("ifName") == ifname and (entry.get("containerId") in ids
                                                    or _entry_sandbox(entry) == pod.sandbox_id):
                yield path, entry


@contextmanager
def _about_pod(pod: Pod) -> Iterator[None]:
    """Errors inside the block name the pod."""
    try:
        yield
    except InjectError as e:
        raise InjectError(f"pod {pod.namespace}/{pod.name}: {e.msg}", e.code, e.details) from None


class _NotOurs(InjectError):
    """An interface a batch `del` leaves alone: the cache does not show that if-inject added it."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, CODE_UNKNOWN_CONTAINER)


# ---- pods: the runtime that made an attachment, and the stale policy -----


class _RuntimeView:
    """What one runtime says now, for the stale policy: every sandbox it
    lists, and (read on first need) the netns of its live ones."""

    def __init__(self, client: _RuntimeClient) -> None:
        self.client = client
        self.sandboxes = {s.id: s for s in _list_sandboxes(client)}
        self._live_netns: list[str] | None = None

    def state(self, sandbox_id: str) -> str:
        sandbox = self.sandboxes.get(sandbox_id)
        if sandbox is None:
            return "gone"
        return "ready" if sandbox.state == _SANDBOX_READY else "notready"

    def live_netns(self) -> list[str]:
        """The netns paths it reports for its ready sandboxes."""
        if self._live_netns is None:
            self._live_netns = []
            for sandbox in self.sandboxes.values():
                if sandbox.state != _SANDBOX_READY:
                    continue
                with suppress(InjectError):  # gone meanwhile: it shows nothing either way
                    pod = _sandbox_pod(self.client, sandbox, netns_required=False)
                    self._live_netns += [pod.netns] if pod.netns else []
        return self._live_netns


class _RuntimeViews:
    """The runtimes that attachments are judged by, each asked once: the
    node's own (which must answer), and each other one an entry records."""

    def __init__(self, client: _RuntimeClient, timeout: float) -> None:
        self.timeout = timeout
        self.own = _RuntimeView(client)
        self.others: dict[str, _RuntimeView | str] = {}

    def close(self) -> None:
        for view in self.others.values():
            if isinstance(view, _RuntimeView):
                view.client.close()

    def __enter__(self) -> _RuntimeViews:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def of(self, cached: CachedAttachment) -> _RuntimeView | str:
        """The runtime that made `cached`, or why it cannot be asked."""
        if not cached.runtime_endpoint:
            # An entry of an if-inject that did not record its runtime: only a
            # runtime that lists its sandbox (a random 64-hex ID) is surely the
            # one that made it; any other would call every pod of its peer gone.
            if cached.sandbox_id in self.own.sandboxes:
                return self.own
            return (f"its cache entry does not say which runtime made it (an older if-inject), and "
                    f"{self.own.client.endpoint} does not know its sandbox: it cannot be proven stale "
                    f"(`del -ns {cached.namespace} -pod {cached.pod} -interface {cached.interface}` "
                    "deletes it)")
        endpoint = cached.runtime_endpoint
        if _same_endpoint(endpoint, self.own.client.endpoint):
            view: _RuntimeView | str = self.own
        else:
            view = self.others.get(endpoint) or self._connect(endpoint)
            self.others[endpoint] = view
        if isinstance(view, _RuntimeView) and cached.runtime_name \
                and view.client.version.runtime_name != cached.runtime_name:
            return (f"the runtime that made it ({cached.runtime_name} on {endpoint}) is gone: "
                    f"{view.client.version.runtime_name} answers there now")
        return view

    def _connect(self, endpoint: str) -> _RuntimeView | str:
        client = None
        try:
            client = _RuntimeClient(endpoint, self.timeout)
            return _RuntimeView(client)
        except InjectError as e:
            if client is not None:
                client.close()
            return f"cannot reach the runtime that made it ({endpoint}): {e}"


def _netns_place(path: str) -> str:
    """Where a netns path's namespace files are: its directory, or /proc for /proc/<pid>/ns/net."""
    return "/proc" if _is_proc_path(path) else os.path.realpath(os.path.dirname(path))


def _netns_unseen(view: _RuntimeView, path: str) -> str:
    """Why the netns at `path` cannot be seen from here ("" when it can): its
    directory is missing, or the netns the runtime reports for its live pods
    there are not there either (gc in a pod without the directory mounted, in
    another mount namespace with something over it, or in another PID namespace)."""
    place = _netns_place(path)
    if not os.path.isdir(place):
        return f"the netns directory {place} is not visible here"
    theirs = [p for p in view.live_netns() if _netns_place(p) == place]

    def seen(live: str) -> bool:
        try:
            return not _netns_gone(live)
        except InjectError:
            return False

    if theirs and not any(seen(live) for live in theirs):
        return (f"the netns of live pods in {place} are not visible here either "
                "(another mount or PID namespace?): the directory here is not the runtime's")
    return ""


def _judged(cached: CachedAttachment, views: _RuntimeViews) -> CachedAttachment:
    """`cached` with the runtime's view of it (see _staleness). Without a
    sandbox (an API caller's own attachment) no runtime tells: it is the caller's."""
    if not cached.sandbox_id:
        return cached
    state, stale, undecided = _staleness(cached, views.of(cached))
    return cached._replace(sandbox_state=state, stale=stale, undecided=undecided)


def _staleness(cached: CachedAttachment, view: _RuntimeView | str) -> tuple[str, bool, str]:
    """The stale policy, in one place: (sandbox state, stale, why it cannot be told).

    An attachment is stale only when the runtime that made it answers that its
    sandbox is gone or stopped (a stopped sandbox never runs again: a restart
    makes a new one) and its netns is gone (nothing at its path, or not a
    network namespace), looked at from where that runtime's netns are seen.
    `view` is that runtime, or why it cannot be asked. Everything else is left
    alone: a live pod, a netns still there, and what cannot be told."""
    if isinstance(view, str):
        return "unknown", False, view
    state = view.state(cached.sandbox_id)
    if state == "ready":
        return state, False, ""
    try:
        if cached.netns and not _netns_gone(cached.netns):
            return state, False, ""
    except InjectError as e:
        return state, False, f"cannot tell whether its netns is gone: {e}"
    unseen = _netns_unseen(view, cached.netns) if cached.netns else ""
    return state, not unseen, unseen


class GcAttachment(NamedTuple):
    """What gc did with one attachment: "deleted", "gone meanwhile", "would
    delete" (-dry-run), "failed" (with the error), or "skipped" when whether it
    is stale cannot be told (with the reason)."""

    attachment: CachedAttachment
    action: str
    reason: str = ""
    error: str = ""

    def json(self) -> dict[str, Any]:
        """What `gc` prints (for "skipped", the fields of its error line on
        stderr): the attachment as `list -o json` has it, less what only a
        listing needs, then the action."""
        record = {k: v for k, v in self.attachment.json().items()
                  if k not in ("netns", "stale", "undecided", "cacheFile")}
        return _with_action(record, self.action, self.reason, self.error)


def _with_action(record: dict[str, Any], action: str, reason: str, error: str) -> dict[str, Any]:
    """A line of gc's: the record's keys, then the action, then its reason or error if any."""
    return {**record, "action": action, **({"reason": reason} if reason else {}),
            **({"error": error} if error else {})}


# ---- pods: CNI 1.1's GC verb at the end of gc, apart from gc's stale policy

def _gc_networks(cni: CNI) -> dict[str, NetworkConfig]:
    """The networks of if-inject's cache entries, by name (the last entry's config)."""
    networks = {}
    for cached in _cached_attachments(cni.cache_dir):
        try:
            network = cached.network_config()
        except InjectError:  # an entry without a usable config: its DEL says why
            continue
        if network.name == cached.network:  # else another network's GC would list this one's attachments
            networks[cached.network] = network
        else:
            _log_error("Refusing cache entry", f"its config is network {network.name!r}, "
                       f"not {cached.network!r}", path=cached.path)
    return networks


def _shared_networks(cache_dir: str, networks: list[str]) -> dict[str, str]:
    """Why the GC of each of `networks` could release what another holds (none
    for a network whose every attachment in the cache is if-inject's): an entry
    of it that another program wrote (a runtime's, Multus' delegates' in their
    own cache dir), or one that cannot be read. Another user of a network may
    be adding to it right now, unseen: a GC listing only what if-inject knows
    would have its plugins release that."""
    reasons: dict[str, str] = {}
    for directory in _libcni_cache_dirs(cache_dir):
        results, elsewhere = _results_dir(directory), directory != cache_dir
        try:
            with _results_fd(directory) as fd:
                if fd is None:
                    continue
                for name in sorted(os.listdir(fd)):
                    # libcni names an entry NETWORK-CONTAINERID-IFNAME
                    named = [n for n in networks if name.startswith(f"{n}-") and n not in reasons]
                    if named:
                        path = os.path.join(results, name)
                        entry = _listed_entry(fd, name, path)
                        reasons.update((n, why) for n in named
                                       if (why := _not_only_ours(entry, n, path, elsewhere)))
        except (OSError, InjectError) as e:
            for network in networks:
                reasons.setdefault(network, f"the cache {results} cannot be read ({e})")
    return reasons


def _not_only_ours(entry: dict[str, Any] | None, network: str, path: str, elsewhere: bool) -> str:
    """Why an entry named as `network`'s keeps if-inject's GC from it, or "".
    One `elsewhere` than the cache dir GC works on is never among its valid
    attachments: if-inject's own there counts as another user's too."""
    if entry is None:  # named as the network's: may be one of its
        return f"a cache entry that may be its, {path}, cannot be read"
    if entry.get("networkName") != network:
        return ""
    if not isinstance(entry.get(_CACHE_MARK), dict):
        return f"another program attaches pods to it too ({path})"
    return f"if-inject attaches pods to it with another cache dir too ({path})" if elsewhere else ""


class GcNetwork(NamedTuple):
    """What gc did with one network's CNI 1.1 GC: "gc", "would gc" (-dry-run),
    "gc disabled" (its disableGC), "gc not sent" (another program uses it
    too: the reason), or "failed" (with the error)."""

    network: NetworkConfig
    valid_attachments: list[tuple[str, str]]  # (container ID, interface), as sent
    action: str
    reason: str = ""
    error: str = ""

    def json(self) -> dict[str, Any]:
        """What `gc` prints for it."""
        valid = [{"containerId": c, "interface": i} for c, i in self.valid_attachments]
        record = {"network": self.network.name, "cniVersion": self.network.cni_version,
                  "validAttachments": valid}
        return _with_action(record, self.action, self.reason, self.error)


def _gc_verb(cni: CNI, networks: dict[str, NetworkConfig], dry_run: bool) -> Iterator[GcNetwork]:
    """GC to each network at CNI 1.1.0 or later that only if-inject uses, with
    the attachments still alive (every cache entry of that network that is
    left); one record per network. Only the plugins' GC: the stale attachments
    had their DEL by gc's own policy, and an entry that appeared since (an add
    under way) is alive, not stale."""
    names = sorted(name for name, network in networks.items() if network.version_tuple >= (1, 1, 0))
    if not names:
        return
    cached = _cached_attachments_by_network(cni.cache_dir)
    shared_networks = _shared_networks(cni.cache_dir, names)
    for name in names:
        network, alive = networks[name], cached.get(name, [])
        shared = shared_networks.get(name, "")
        if network.disable_gc:
            yield GcNetwork(network, alive, "gc disabled")
        elif shared:
            yield GcNetwork(network, alive, "gc not sent",
                            reason=f"{shared}: only if-inject's networks get its GC")
        elif dry_run:
            yield GcNetwork(network, alive, "would gc")
        else:
            _stop_if_asked()
            try:
                failures = cni._gc_plugins(network, alive)
            except InjectError as e:  # the network's lock not taken
                failures = [str(e)]
            if failures:
                yield GcNetwork(network, alive, "failed", error=_gc_failed(failures))
            else:
                yield GcNetwork(network, alive, "gc")


# ---- pods: the runtime's own CNI networks, warned of on add --------------


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
    with suppress(OSError, ValueError):  # ValueError: a NUL in the dir the runtime names
        for entry in sorted(os.listdir(conf_dir)) if conf_dir else []:
            if entry.endswith((".conf", ".conflist", ".json")):
                path = os.path.join(conf_dir, entry)
                with suppress(OSError, ValueError, AttributeError, RecursionError):
                    files.setdefault(str(_read_conf_file(path).get("name")), path)
    chosen = names if names is not None else set(files)
    return {name: files.get(name, conf_dir) for name in chosen}


def _read_conf_file(path: str) -> Any:
    """A runtime's CNI conf file, parsed; only a regular file is read (opening a
    FIFO planted there must not hang us)."""
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise ValueError("not a regular file")
        return json.load(f)


def _runtime_cni_conf(client: _RuntimeClient, info: Any) -> tuple[str, set[str] | None]:
    """(conf dir, the names of the networks in use; None: all in the dir) of the runtime."""
    try:
        cni = json.loads(info.get("cniconfig") or "null")
    except (ValueError, RecursionError):  # RecursionError: nested too deep
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
    except (ValueError, RecursionError) as e:  # TOMLDecodeError, or an integer past int's digit limit
        raise InjectError(f"cri-o's configuration is not TOML: {e}", CODE_DECODING) from None
    return (conf_dir, None) if isinstance(conf_dir, str) and conf_dir else ("", set())


def _crio_config(client: _RuntimeClient) -> str:
    """cri-o's configuration (TOML), as `crio status config` reads it: GET /config
    from the HTTP API cri-o serves beside CRI on its socket. Plain HTTP/1.0 by hand:
    http.client is not in the built executable."""
    import socket

    deadline = time.monotonic() + client.timeout  # for the whole answer, however it trickles in
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(client.timeout)
            sock.connect(_socket_path(client.endpoint))
            sock.sendall(b"GET /config HTTP/1.0\r\nHost: localhost\r\n\r\n")
            answer = b""
            while len(answer) < 1 << 20 and (chunk := sock.recv(65536)):
                answer += chunk
                sock.settimeout(max(0.001, deadline - time.monotonic()))
    except OSError as e:
        raise InjectError(f"cri-o's configuration: {e}", CODE_IO) from None
    head, _, body = answer.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if status[1:2] != [b"200"]:
        raise InjectError(f"cri-o's configuration: {head[:80].decode(errors='replace')!r}", CODE_IO)
    return body.decode(errors="replace")


def _warn_of_runtime_network(client: _RuntimeClient, own: dict[str, str], network: NetworkConfig) -> None:
    """An injected interface on a network the runtime runs itself (`own`, see
    _runtime_networks) is in the same cache under the same name: the runtime
    may take it for its own."""
    conf_file = own.get(network.name)
    if conf_file is not None:
        runtime = client.version.runtime_name
        _log(f"network {network.name} is also {runtime}'s own network ({conf_file}): "
             f"{runtime} may take this interface for its own (cri-o's CNI GC at start-up "
             "deletes it, with its own config); give it another name", level="warn",
             network=network.name, runtime=runtime, confFile=conf_file)


# ---- pods: Node, the public API ------------------------------------------


class Node:
    """This node's runtime and CNI setup; the API's entry point.

    The runtime connection is opened on first use and shared by every call
    (and thread) until close(); threads asking for it at once get one.
    """

    def __init__(self, endpoint: str | None = None, timeout: float = 10.0,
                 cni_path: list[str] | None = None, cache_dir: str = _DEFAULT_CACHE_DIR) -> None:
        self.endpoint, self.timeout = endpoint, timeout
        self.cni = CNI(list(cni_path or _DEFAULT_CNI_PATH), cache_dir, timeout)
        self._client: _RuntimeClient | None = None
        self._client_lock = threading.Lock()
        # The runtime's own networks, asked once per Node (a batch adds to many pods),
        # and the networks warned of already: one warning per network, not per pod.
        self._own_networks: dict[str, str] | None = None
        self._warned: set[str] = set()
        # The pods a batch selected, with their ready sandboxes as listed then: each
        # pod's first lookup takes its sandbox from here instead of listing again.
        self._listed: dict[tuple[str, str], Any] = {}

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
            self._own_networks = None

    def _warn_if_runtime_network(self, network: NetworkConfig) -> None:
        client = self.client
        with self._client_lock:
            if self._own_networks is None:
                self._own_networks = _runtime_networks(client)
            first = network.name not in self._warned
            self._warned.add(network.name)
        if first:
            _warn_of_runtime_network(client, self._own_networks, network)

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def pods(self, namespace: str | None = None, selector: dict[str, str] | None = None) -> list[Pod]:
        """Every pod sandbox on this node, READY and NOTREADY, in `namespace` (all
        when None) with the labels of `selector`; a netns that is gone shows as ""."""
        return _list_pods(self.client, namespace, selector)

    def pod(self, namespace: str, name: str) -> Pod:
        """A running pod on this node, checked to be safe to change."""
        pod = self._lookup(namespace, name)
        assert pod is not None
        return pod

    def _lookup(self, namespace: str, name: str, missing_ok: bool = False) -> Pod | None:
        listed = self._listed.pop((namespace, name), None)
        if listed is not None:
            with suppress(InjectError):  # gone or replaced since the batch listed it: look again
                return _find_pod(self.client, namespace, name, missing_ok, listed)
        return _find_pod(self.client, namespace, name, missing_ok)

    def _select_pods(self, namespace: str | None, names: list[str] | None,
                     selector: dict[str, str]) -> list[tuple[str, str]]:
        """The pods a batch works on (see _select_pods), their sandboxes remembered."""
        selected = _select_pods(self.client, namespace, names, selector)
        self._listed.update((pod, sandbox) for pod, sandbox in selected.items() if sandbox is not None)
        return list(selected)

    def add(self, namespace: str, pod: str, network: NetworkConfig, ifname: str = "net1",
            container_id: str = "", args: list[tuple[str, str]] | None = None,
            capability_args: dict[str, Any] | None = None) -> dict[str, Any]:
        """ADD `network` as `ifname` in a running pod; returns the CNI result.
        `container_id` defaults to the netns file's name; `args` go to
        CNI_ARGS after kubelet's; `capability_args` become runtimeConfig."""
        found = self.pod(namespace, pod)
        att = _pod_attachment(found, ifname, container_id, args, capability_args)
        self._warn_if_runtime_network(network)
        with _attachment_lock(self.cni.cache_dir, found.sandbox_id, ifname, self.timeout):
            self._refuse_existing_interface(att)
            self._refuse_other_record(network, att)
            self._release_interrupted_add(network, att)
            return self.cni.add(network, att)

    @staticmethod
    def _refuse_existing_interface(att: Attachment) -> None:
        """Never ADD over an existing interface: a rollback would delete it."""
        assert att.pod is not None
        if att.ifname in _interface_names(att.netns, att.pod.pid):
            raise InjectError(f"interface {att.ifname} already exists in pod "
                              f"{att.pod.namespace}/{att.pod.name}", CODE_INVALID_CONFIG)

    def _refuse_other_record(self, network: NetworkConfig, att: Attachment) -> None:
        """Never ADD where the interface is gone but another record of an ADD of
        it is left (_other_record): its owner's DEL would take down what this add
        makes, and what that ADD took stays taken. This network's own entry is
        _release_interrupted_add's."""
        this = _cache_file(self.cni.cache_dir, network.name, att.container_id, att.ifname)
        other = self._other_record(att, this)
        if other:
            raise InjectError(f"{other}: not adding over it", CODE_INVALID_CONFIG)

    def _release_interrupted_add(self, network: NetworkConfig, att: Attachment) -> None:
        """A cache entry of this very attachment was left by an add killed
        half-way (the interface is not there): release what it took first.
        Only if-inject's own entry of this pod's sandbox: the same file name can
        be another tool's (Multus', a runtime's) or another pod's (one
        -containerid given twice), whose lease a DEL would free."""
        path = _cache_file(self.cni.cache_dir, network.name, att.container_id, att.ifname)
        if not _cache_exists(path):
            return
        _refuse_unless_ours(_read_cache(path), att, path)
        _log("Cleaning up an earlier interrupted add", path=path)
        self.cni.delete(network, att)

    def check(self, namespace: str, pod: str, network: NetworkConfig, ifname: str = "net1",
              container_id: str = "", args: list[tuple[str, str]] | None = None,
              capability_args: dict[str, Any] | None = None) -> None:
        """CHECK an interface against the cached ADD result (see add for the parameters)."""
        found = self.pod(namespace, pod)
        att = _pod_attachment(found, ifname, container_id, args, capability_args)
        with _attachment_lock(self.cni.cache_dir, found.sandbox_id, ifname, self.timeout):
            self.cni.check(network, att)

    def delete(self, namespace: str, pod: str, network: NetworkConfig | None = None,
               ifname: str = "net1", only_ours: bool = False, container_id: str = "",
               args: list[tuple[str, str]] | None = None,
               capability_args: dict[str, Any] | None = None, force: bool = False) -> int:
        """DEL an interface; works from the cache when the pod is gone or no
        network is given. Returns how many attachments were deleted.

        With `only_ours` (a batch), an interface of a running pod that the
        cache does not show if-inject added is left alone: _NotOurs is raised.
        Without it, DEL runs where the cache has no entry, as libcni's does,
        with a warning; another record of the interface (an entry another
        program wrote, if-inject's own of another network, container ID or
        cache dir: _other_record), or one that cannot be read, is refused
        unless `force`."""
        found = self._lookup(namespace, pod, missing_ok=True)
        if found is not None and network is not None:
            att = _pod_attachment(found, ifname, container_id, args, capability_args)
            self._delete_from_pod(found, network, att, only_ours, force)
            return 1
        return self._delete_from_cache(namespace, pod, network, ifname, found, only_ours)

    def _delete_from_pod(self, pod: Pod, network: NetworkConfig, att: Attachment, only_ours: bool,
                         force: bool = False) -> None:
        """DEL in a running pod, with the network given."""
        ifname = att.ifname
        with _attachment_lock(self.cni.cache_dir, pod.sandbox_id, ifname, self.timeout):
            why, recorded_otherwise = self._not_added_by_us(network, att)
            if why and only_ours:
                raise _NotOurs(f"{why}: left alone (-force deletes it)")
            if recorded_otherwise and not force:
                raise InjectError(f"{why}: not deleting it (-force deletes it)", CODE_INVALID_CONFIG)
            if why and ifname in _interface_names(att.netns, pod.pid):
                _log("Deleting an interface if-inject has no record of adding, as libcni would",
                    level="warn", pod=f"{pod.namespace}/{pod.name}", interface=ifname, reason=why)
            self.cni.delete(network, att)

    def _not_added_by_us(self, network: NetworkConfig, att: Attachment) -> tuple[str, bool]:
        """Why the cache does not show that if-inject added this attachment ("" when it
        does), and whether another record of the interface is there, which a DEL
        must not run over (_other_record), or one that cannot be read."""
        path = _cache_file(self.cni.cache_dir, network.name, att.container_id, att.ifname)
        entry = _read_cache(path, quiet=True)  # one that cannot be read is this one's error
        if entry is None and _cache_exists(path):
            return f"the cache entry {path} of {att.ifname} of network {network.name} cannot be read", True
        if entry is None:
            other = self._other_record(att)
            return (other, True) if other else (f"if-inject did not add {att.ifname} of network "
                                                f"{network.name} (no cache entry {path})", False)
        if not isinstance(entry.get(_CACHE_MARK), dict):
            return (f"{att.ifname} of network {network.name} was added by another program "
                    f"(its cache entry {path} is not if-inject's)"), True
        return "", False

    def _other_record(self, att: Attachment, this: str = "") -> str:
        """Another record of an ADD of this interface than the entry `this`
        (a del looks when there is no entry at its network's name; an add, beside
        this network's own): another program's (the runtime's eth0, Multus' net1,
        in any of the node's cache dirs), named first, or if-inject's own of
        another network, container ID or cache dir (a del given the wrong -spec
        or -cache-dir). A DEL with this network would take that interface down
        without releasing what its ADD took; that ADD's owner's DEL would take
        down the interface an add makes. "" when there is none."""
        own: tuple[str, dict[str, Any]] | None = None
        try:
            for path, entry in _cni_records(self.cni.cache_dir, att.pod, att.ifname) if att.pod else ():
                if path == this:
                    continue
                if entry is None or not isinstance(entry.get(_CACHE_MARK), dict):
                    unread = " cannot be read" if entry is None else " is not if-inject's"
                    return f"{att.ifname} was added by another program (its cache entry {path}{unread})"
                own = own or (path, entry)
        except InjectError as e:  # a cache dir not to be read (refused, or an I/O error): cannot tell
            return f"another program's record of {att.ifname} cannot be looked for ({e})"
        return self._own_other_record(att, *own) if own else ""

    def _own_other_record(self, att: Attachment, path: str, entry: dict[str, Any]) -> str:
        """Why if-inject's own entry of this interface (another network's, container
        ID's or cache dir's) stops a del or an add, and the del that deletes the
        interface as it was added: the one from that cache dir, when it finds the entry."""
        assert att.pod is not None
        cache_dir = os.path.dirname(os.path.dirname(path))  # path is <cache dir>/results/<entry>
        cached = CachedAttachment.from_entry(path, entry)
        if not (_at_its_own_name(cache_dir, cached)  # as _matching_attachments of cache_dir takes it
                and _of_pods_interface(cached, att.pod.namespace, att.pod.name, att.ifname)):
            # of no pod (the API's CNI class), another pod's, or renamed
            return (f"{att.ifname} is recorded by an entry of if-inject's that no del of this pod finds "
                    f"(its cache entry {path})")
        same_dir = _dir_identity(cache_dir) == _dir_identity(self.cni.cache_dir)
        how = "del without -spec" if same_dir else f"del -cache-dir {cache_dir} without -spec"
        return (f"{att.ifname} was added by if-inject as network {cached.network}, container ID "
                f"{cached.container_id} (its cache entry {path}; {how} deletes it)")

    def _delete_from_cache(self, namespace: str, pod: str, network: NetworkConfig | None,
                           ifname: str, live: Pod | None = None, only_ours: bool = False) -> int:
        """DEL what the cache records of a pod's interface: the pod is gone, or
        no network was given. In the `live` pod's sandbox, DEL runs in the netns
        the runtime reports now (a /proc/<pid> path may have changed)."""
        found = _matching_attachments(self.cni.cache_dir, namespace, pod, ifname,
                                     network.name if network else "")
        if not found and only_ours:
            raise _NotOurs(f"if-inject has no cached attachment {ifname} in pod {namespace}/{pod}: "
                           "nothing of its own to delete")
        if not found:
            if network is None:
                raise InjectError(f"no cached attachment {ifname} for pod {namespace}/{pod}: "
                                  "give -spec", CODE_UNKNOWN_CONTAINER)
            _log("Pod not found and nothing cached for it: nothing to delete",
                pod=f"{namespace}/{pod}", interface=ifname)
        deleted = 0
        for cached in found:
            _stop_if_asked()
            in_live = live is not None and cached.sandbox_id == live.sandbox_id
            netns = live.netns if live is not None and in_live else self._netns_elsewhere(cached)
            if self.delete_cached(cached, network, netns):
                deleted += 1
            else:
                _log("Left alone: its cache entry went, or another sandbox's replaced it, meanwhile",
                    path=cached.path)
        return deleted

    def _netns_elsewhere(self, cached: CachedAttachment) -> str | None:
        """The netns that the runtime that made `cached`, when it is not this
        node's (two runtimes, a mistyped -r), reports now for its sandbox if
        that is live there; None (the cached netns) otherwise."""
        endpoint = cached.runtime_endpoint
        if not endpoint or not cached.sandbox_id or _same_endpoint(endpoint, self.client.endpoint):
            return None
        try:
            with _RuntimeClient(endpoint, self.timeout) as client:
                ready = [s for s in _list_sandboxes(client, ready_only=True) if s.id == cached.sandbox_id]
                pod = _sandbox_pod(client, ready[0]) if ready else None
        except InjectError as e:
            # Its netns still here: the DEL there is whole, whether the pod lives or not.
            # Gone, unseen or a /proc path: a DEL without it would free the lease of an
            # interface that may live on in the pod, and only that runtime can tell.
            if cached.netns and cached.checked_netns() != cached.netns:
                raise InjectError(f"cannot tell whether pod {cached.namespace}/{cached.pod} still runs: "
                                  f"the runtime that made it ({endpoint}) cannot be asked ({e}), and its "
                                  f"netns {cached.netns} is not here to DEL in: nothing deleted",
                                  CODE_TRY_AGAIN_LATER) from None
            _log("The runtime that made it cannot be asked: DEL runs in the cached netns", level="warn",
                pod=f"{cached.namespace}/{cached.pod}", interface=cached.interface, error=str(e))
            return None
        if pod is None or not pod.status_ready or pod.network_mode == _NODE_MODE:
            return None
        _check_netns(pod.netns)
        return pod.netns

    def delete_cached(self, cached: CachedAttachment, network: NetworkConfig | None = None,
                      netns: str | None = None) -> bool:
        """DEL a cached attachment with its cached config (or `network`), in
        `netns` when given (see CachedAttachment.attachment); False when its
        entry went meanwhile (another del or gc)."""
        att = cached.attachment(netns)
        network = network or cached.network_config()
        if network.name != cached.network:  # the DEL would read and remove another entry
            raise InjectError(f"cache entry {cached.path}: its config is network {network.name!r}, "
                              f"not {cached.network!r}: refusing it", CODE_DECODING)
        with _attachment_lock(self.cni.cache_dir, cached.lock_key, att.ifname, self.timeout):
            # Gone meanwhile (another del or gc), or replaced by another sandbox's (a pod's
            # next one, given the same -containerid): what was judged is not there.
            now = _read_cache(cached.path)
            if now is None or _entry_sandbox(now) != cached.sandbox_id:
                return False
            self.cni.delete(network, att)
        return True


    # The lifecycle of attachments: what the cache records, judged by the runtime that made each.

    def attachments(self, namespace: str | None = None, pod: str | None = None) -> list[CachedAttachment]:
        """Every attachment if-inject made on this node (of `namespace`, of
        `pod`, when given), from the result cache, with the state of its pod's
        sandbox as the runtime that made it reports it now, and whether it is
        stale (see _staleness)."""
        with _RuntimeViews(self.client, self.timeout) as views:
            return [_judged(cached, views) for cached in _cached_attachments(self.cni.cache_dir)
                    if (not namespace or cached.namespace == namespace) and (not pod or cached.pod == pod)]

    def pod_network_status(self, namespace: str, pod: str) -> list[dict[str, Any]]:
        """The network-status entries of everything if-inject attached to a pod's
        ready sandbox, by interface name: what to merge into its annotation."""
        return [network_status(cached.result, cached.net_attach_def or cached.network, cached.interface)
                for cached in sorted(self.attachments(namespace, pod), key=lambda c: c.interface)
                if cached.sandbox_state == "ready" and cached.result is not None]  # not an add under way

    def gc(self, dry_run: bool = False) -> Iterator[GcAttachment | GcNetwork]:
        """DEL every stale attachment (see _staleness) from its cached config;
        live pods, and attachments whose state cannot be told, are never touched.
        Yields a GcAttachment per stale attachment (what was done, or what
        failed), and one per attachment left alone because its state cannot be
        told (action "skipped", with the reason). Then CNI 1.1's GC goes to the
        networks at 1.1.0 or later (a GcNetwork each)."""
        networks = _gc_networks(self.cni)  # before the stale DELs take their entries
        for cached in self.attachments():
            if cached.undecided:
                yield GcAttachment(cached, "skipped", reason=cached.undecided)
                continue
            if not cached.stale:
                continue
            if dry_run:
                yield GcAttachment(cached, "would delete")
                continue
            _stop_if_asked()
            try:
                deleted = self.delete_cached(cached, netns="")  # stale: its netns is gone
                # Its entry gone, or another sandbox's at its name now (a del, an add meanwhile).
                yield GcAttachment(cached, "deleted" if deleted else "gone meanwhile")
            except InjectError as e:
                yield GcAttachment(cached, "failed", error=str(e))
        yield from _gc_verb(self.cni, networks, dry_run)

    # veth pairs: the manual injection, under the lock of a CNI add or del on the same interface.

    def add_veth(self, namespace: str, pod: str, ifname: str = "net1", host_ifname: str = "",
                 address: str | list[str] | None = None, host_address: str | list[str] | None = None,
                 mtu: int | None = None) -> Veth:
        """A veth pair between the node and a running pod (see add_veth), its
        input checked before the runtime is asked. `host_ifname` defaults to
        veth + 8 hex digits of the pod's sandbox and `ifname`: the same name
        each time, so that delete_veth finds it again."""
        names = (ifname, host_ifname) if host_ifname else (ifname,)  # the default one is made valid
        pod_cidrs, host_cidrs = _veth_input(names, address, host_address, mtu)
        found = self.pod(namespace, pod)
        host_ifname = host_ifname or _host_veth_name(found.sandbox_id, ifname)
        with _attachment_lock(self.cni.cache_dir, found.sandbox_id, ifname, self.timeout), _about_pod(found):
            _check_pod_netns(found, found.netns, "no veth is made in it")
            return _make_veth(found.netns, ifname, host_ifname, pod_cidrs, host_cidrs, mtu, self.timeout)

    def delete_veth(self, namespace: str, pod: str, ifname: str = "", host_ifname: str = "") -> None:
        """Delete the veth pair of `ifname` in a running pod, or of `host_ifname`
        on the node, or of both (see delete_veth); of net1 when neither is given."""
        _veth_input(tuple(filter(None, (ifname, host_ifname))))
        found = self.pod(namespace, pod)
        ifname = ifname or ("" if host_ifname else "net1")
        with _about_pod(found):
            # The lock is the pod end's, as an add or del of that interface takes it.
            pod_ifname = ifname or _peer_name_in(found.netns, host_ifname)
        with _attachment_lock(self.cni.cache_dir, found.sandbox_id, pod_ifname or "net1", self.timeout), \
                _about_pod(found):
            _check_pod_netns(found, found.netns, "nothing is deleted in it")
            if not ifname and _peer_name_in(found.netns, host_ifname) != pod_ifname:
                raise InjectError(f"the peer of {host_ifname} changed while waiting for its lock: "
                                  "not deleting it", CODE_TRY_AGAIN_LATER)
            if pod_ifname:
                self._refuse_cni_interface(found, pod_ifname)
            delete_veth(found.netns, ifname, host_ifname)

    def _refuse_cni_interface(self, pod: Pod, ifname: str) -> None:
        """veth -delete is for pairs made without CNI: an interface that a CNI ADD
        made (the runtime's eth0, Multus' delegates', if-inject's own add), as the
        caches record it, goes only by its DEL, which also frees its lease."""
        for path, entry in _cni_records(self.cni.cache_dir, pod, ifname):
            if entry is None:
                raise InjectError(f"{ifname} may have been made by a CNI ADD (cache entry {path} "
                                  "cannot be read): not deleting it", CODE_INVALID_CONFIG)
            raise InjectError(f"{ifname} was made by a CNI ADD (cache entry {path}): not deleting it; "
                              "a DEL releases it (`if-inject del` for if-inject's own)", CODE_INVALID_CONFIG)


@contextmanager
def _node(node: Node | None) -> Iterator[Node]:
    if node is not None:
        yield node
    else:
        with Node() as fresh:
            yield fresh


def _network(spec: str | NetworkConfig) -> NetworkConfig:
    return spec if isinstance(spec, NetworkConfig) else read_network(spec)


def add(namespace: str, pod: str, spec: str | NetworkConfig, ifname: str = "net1",
        node: Node | None = None, container_id: str = "", args: list[tuple[str, str]] | None = None,
        capability_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """Node.add with the network in file `spec`, on `node` or a Node of its own."""
    with _node(node) as n:
        return n.add(namespace, pod, _network(spec), ifname, container_id, args, capability_args)


def delete(namespace: str, pod: str, spec: str | NetworkConfig | None = None,
           ifname: str = "net1", node: Node | None = None, container_id: str = "",
           args: list[tuple[str, str]] | None = None, capability_args: dict[str, Any] | None = None,
           force: bool = False) -> int:
    """Node.delete with the network in file `spec` (or the cached one), on `node` or a Node of its own."""
    with _node(node) as n:
        return n.delete(namespace, pod, _network(spec) if spec else None, ifname,
                        container_id=container_id, args=args, capability_args=capability_args, force=force)


def check(namespace: str, pod: str, spec: str | NetworkConfig, ifname: str = "net1",
          node: Node | None = None, container_id: str = "", args: list[tuple[str, str]] | None = None,
          capability_args: dict[str, Any] | None = None) -> None:
    """Node.check with the network in file `spec`, on `node` or a Node of its own."""
    with _node(node) as n:
        n.check(namespace, pod, _network(spec), ifname, container_id, args, capability_args)


def resolve_netns(namespace: str, pod: str, endpoint: str | None = None,
                  timeout: float = 10.0) -> str:
    """Node.pod(namespace, pod).netns: the path `if-inject netns` prints."""
    with Node(endpoint, timeout) as node:
        return node.pod(namespace, pod).netns


# ---- pods: many at once ---------------------------------------------------


def _default_parallel() -> int:
    """Pods worked on at once by default: twice the CPUs (a pod's time is
    mostly its plugins' processes and the runtime's answers, while Python's
    share holds the GIL), at most 8. `make bench` shows the scaling."""
    return max(1, min(8, 2 * (os.cpu_count() or 1)))


def for_each_pod(pods: list[tuple[str, str]], work: Callable[[str, str], _T],
                 parallel: int | None = None) -> Iterator[tuple[str, str, _T | InjectError]]:
    """Run work(namespace, name) for every pod on a bounded pool of threads
    (`parallel` at once, by default _default_parallel());
    yields (namespace, name, result or error) as each finishes. One pod's
    failure is its own (its ADD is rolled back alone); the others go on.
    Once the CLI is asked to stop (SIGINT, SIGTERM, ...), the pods not
    started yet are yielded with an error, and those under way finish whole."""
    import queue
    from concurrent.futures import ThreadPoolExecutor

    workers = _default_parallel() if parallel is None else max(1, parallel)
    # Each pod's future, as it finishes or is cancelled, comes through one
    # queue: waiting on all the futures at once costs O(pods) per pod.
    finished: queue.SimpleQueue[Future[_T]] = queue.SimpleQueue()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures: dict[Future[_T], tuple[str, str]] = {}
        for ns, name in pods:
            future = pool.submit(work, ns, name)
            futures[future] = ns, name
            future.add_done_callback(finished.put)
        try:
            for _ in futures:
                future = _next_finished(finished, pool)
                ns, name = futures[future]
                yield ns, name, _outcome(future)
        except BaseException:
            # Interrupted: pods not started yet are skipped, those under way
            # finish whole (an ADD either completes or is rolled back).
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _next_finished(finished: queue.SimpleQueue[Future[_T]], pool: ThreadPoolExecutor) -> Future[_T]:
    """The next future from `finished`. The CLI's handler only records a
    signal: look for one every 0.1 s, and once there is, cancel the pods not
    started yet (each then comes through `finished` too)."""
    import queue

    while True:
        try:
            future: Future[_T] | None = finished.get(timeout=0.1 if _signals.installed else None)
        except queue.Empty:
            future = None
        if _interrupted():
            pool.shutdown(wait=False, cancel_futures=True)
        if future is not None:
            return future


_NOT_STARTED = "not started: interrupted by"


def _outcome(future: Any) -> Any:
    """A finished pod's result or InjectError; a cancelled one's error."""
    if future.cancelled():
        return InjectError(f"{_NOT_STARTED} {_interrupted()}", CODE_TRY_AGAIN_LATER)
    try:
        return future.result()
    except InjectError as e:
        return e


# ---- CLI ----------------------------------------------------------------
# Each subcommand is one entry, in _cni_subcommands or _node_subcommands: its
# flags and, by set_defaults(run=...), the function that runs it (as the
# original's map of commands). Adding a subcommand touches that entry and its
# run function only.


class _UsageError(Exception):
    """A command line that cannot be run as given (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_abbrev=False, formatter_class=_HelpFormatter, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)

    def _print_message(self, message: str, file: Any = None) -> None:
        """argparse's, but a help that cannot be written (`-h > /dev/full`)
        fails: argparse would drop it and exit 0."""
        if message:
            (file or sys.stderr).write(message)


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's, as wide as shutil.get_terminal_size() says, without
    importing shutil (~4 ms of a call: argparse makes a formatter for each
    flag it adds, to check it)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=_terminal_columns() - 2)


def _terminal_columns() -> int:
    """$COLUMNS, else stdout's terminal, else 80: shutil.get_terminal_size's order."""
    with suppress(ValueError):
        if int(os.environ.get("COLUMNS", "0")) > 0:
            return int(os.environ["COLUMNS"])
    try:
        return os.get_terminal_size(1).columns or 80
    except OSError:  # not a terminal, or closed
        return 80


class _Flags(Protocol):
    """What a subcommand's entry adds its flags to: its parser, or _NoFlags."""

    def add_argument(self, *args: Any, **kwargs: Any) -> Any: ...

    def set_defaults(self, **kwargs: Any) -> None: ...


class _NoFlags:
    """Takes the flags of a subcommand that the command line does not run.
    They would never be parsed, and building every subcommand's parser costs
    a call ~8 ms (argparse checks each flag as it is added, and looks up its
    texts' translations on disk for each parser)."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        pass

    def set_defaults(self, **kwargs: Any) -> None:
        pass


def _global_flags(parser: argparse.ArgumentParser, default: Any) -> list[str]:
    """Flags taken before or after the subcommand (after it, they must not
    reset what was given before: hence SUPPRESS as their default there).
    Returns their spellings (each takes a value)."""
    def d(value: Any) -> Any:
        return value if default is None else default
    flags = [
        parser.add_argument("-loglevel", "--loglevel", type=int, default=d(0), metavar="N",
                            help="log detail on stderr: 0 info and errors, up to 4 everything"),
        parser.add_argument("-runtime-endpoint", "--runtime-endpoint", "-r", dest="endpoint",
                            default=d(None), metavar="URI",
                            help="CRI socket (default: $CONTAINER_RUNTIME_ENDPOINT, else search)"),
        parser.add_argument("-timeout", "--timeout", type=float, default=d(10.0), metavar="SECONDS",
                            help="limit for runtime calls and for each plugin (default 10)"),
        parser.add_argument("-cni-path", "--cni-path", default=d(None), metavar="DIRS",
                            help="plugin dirs, ':'-separated (default: $CNI_PATH, else "
                                 + ":".join(_DEFAULT_CNI_PATH) + ")"),
        parser.add_argument("-cache-dir", "--cache-dir", default=d(_DEFAULT_CACHE_DIR), metavar="DIR",
                            help="libcni's cache dir: results in its results/, as a runtime's "
                                 f"(default {_DEFAULT_CACHE_DIR})"),
    ]
    return [spelling for flag in flags for spelling in flag.option_strings]


def _namespace_flag(parser: _Flags, listing: bool) -> None:
    """-ns, one value everywhere: a namespace, or None for every namespace.
    Listings (pods, list) show every namespace unless -ns is given, as
    `crictl pods`; commands on a pod default to "default", as kubectl."""
    if listing:
        parser.add_argument("-ns", "--ns", default=None, metavar="NAMESPACE",
                            help="only this namespace (default: every namespace)")
    else:
        parser.add_argument("-ns", "--ns", default="default", metavar="NAMESPACE",
                            help="the pod's namespace (default: default)")


def _pod_flags(parser: _Flags) -> None:
    """The pods of netns, add, del and check: one, several, or selected by labels."""
    _namespace_flag(parser, listing=False)
    parser.add_argument("-pod", "--pod", action="append", dest="pods", metavar="POD",
                        help="the pod's name; repeat it for several pods")
    parser.add_argument("-l", "-selector", "--selector", default="", metavar="SELECTOR",
                        help="all ready pods with these labels, as kubectl's -l app=alpine")
    parser.add_argument("-A", "-all-namespaces", "--all-namespaces", action="store_true",
                        help="pods of every namespace, instead of -ns (with -l or -pod)")
    parser.add_argument("-parallel", "--parallel", type=int, default=None, metavar="N",
                        help="pods worked on at once with several pods (default: twice the CPUs, "
                             f"at most 8; here {_default_parallel()})")


def _one_pod_flags(parser: _Flags) -> None:
    _namespace_flag(parser, listing=False)
    parser.add_argument("-pod", "--pod", required=True, help="the pod's name")


def _cni_flags(parser: _Flags, spec_required: bool = True) -> None:
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


def _output_flag(parser: _Flags, network_status: bool = False) -> None:
    more = ("network-status",) if network_status else ()
    parser.add_argument("-o", "-output", "--output", choices=("text", "json", *more), default="text",
                        help="a table (default) or JSON" + (", or the pod's network-status entries "
                                                            "(with -ns and -pod)" if more else ""))


def _veth_flags(parser: _Flags) -> None:
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


class _PodWork(NamedTuple):  # not a dataclass: making one costs every call ~0.5 ms
    """What one of netns/add/del/check does for one pod (returning what to
    print), and the network of its -spec, read once for every pod."""

    one: Callable[[str, str], Any]
    network: NetworkConfig | None = None


def _build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given the command line, with the flags of its subcommand only."""
    parser = _Parser(prog="if-inject",
                     description="Inject interfaces into, and remove them from, running pods. "
                                 "-ns: commands on a pod default to namespace default; listings "
                                 "(pods, list) show every namespace unless -ns is given.")
    parser.add_argument("-version", "--version", action="store_true", help="print the version")
    value_flags = _global_flags(parser, None)
    chosen = None if argv is None else _subcommand_in(argv, value_flags)
    commands = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=_Parser)

    def command(name: str, text: str, run: _Run) -> _Flags:
        if chosen not in (None, name):
            return _NoFlags()
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(run=run, stays="")  # stays: what a closed stdout leaves done (_output_lost)
        _global_flags(sub, argparse.SUPPRESS)
        return sub

    _cni_subcommands(command)
    _node_subcommands(command)
    if chosen is not None and not commands.choices:  # no such subcommand: argparse names them all
        return _build_parser()
    parser.set_defaults(subcommands=list(commands.choices))
    return parser


def _subcommand_in(argv: list[str], value_flags: list[str]) -> str | None:
    """The subcommand, as argparse will find it: the first word that is
    neither a flag nor a global flag's value. None if there is none, or
    after "--" (argparse has its own ways with that)."""
    after_flag = False
    for word in argv:
        if word == "--":
            return None
        if after_flag or word.startswith("-"):
            after_flag = not after_flag and word in value_flags
            continue
        return word
    return None


# command(name, help, run function) -> where the subcommand's flags go.
_Command = Callable[[str, str, _Run], _Flags]


def _cni_subcommands(command: _Command) -> None:
    """netns, add, del, check, status: one entry each, in the order --help lists them."""
    _pod_flags(command("netns", "print the pod's network namespace path", _on_pods(_netns_work)))

    sub = command("add", "add an interface with CNI; prints the result", _on_pods(_add_work))
    sub.set_defaults(stays="; what was added stays (see `if-inject list`, undo it with `del`)")
    _pod_flags(sub)
    _cni_flags(sub)
    sub.add_argument("-o", "-output", "--output", choices=("json", "network-status"), default="json",
                     help="the CNI result (default), or the entry Multus would put in the pod's "
                          "k8s.v1.cni.cncf.io/network-status")

    sub = command("del", "delete an interface with CNI (also after the pod is gone)", _on_pods(_del_work))
    sub.set_defaults(stays="; what was deleted stays deleted")
    _pod_flags(sub)
    _cni_flags(sub, spec_required=False)
    sub.add_argument("-force", "--force", action="store_true",
                     help="DEL also where another record of the interface is cached (another "
                          "program's entry, or if-inject's own of another network, container ID or "
                          "cache dir), "
                          "and with several pods also where if-inject has no record of adding it "
                          "(by default those are refused or skipped)")

    sub = command("check", "check an interface with CNI", _on_pods(_check_work))
    _pod_flags(sub)
    _cni_flags(sub)

    sub = command("status", "ask a network's plugins if they are ready (CNI 1.1 STATUS; no pod needed)",
                  _run_status)
    sub.add_argument("-spec", "--spec", required=True, metavar="FILE",
                     help="CNI network: a conflist or plugin conf, or a Multus "
                          "NetworkAttachmentDefinition (JSON or YAML) holding one; - reads stdin")


def _node_subcommands(command: _Command) -> None:
    """list, gc, pods, links, veth: one entry each, in the order --help lists them."""
    sub = command("list", "list the attachments if-inject made, with their pods' state", _run_list)
    _namespace_flag(sub, listing=True)
    sub.add_argument("-pod", "--pod", default=None, help="only this pod")
    _output_flag(sub, network_status=True)

    sub = command("gc", "delete the attachments of pods that are gone", _run_gc)
    sub.set_defaults(stays="; what was deleted stays deleted")
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
    sub.set_defaults(stays="; the veth pair stays (undo it with `veth -delete`)")
    _one_pod_flags(sub)
    _veth_flags(sub)


def _search_path(flag: str | None) -> list[str]:
    text = flag or os.environ.get("CNI_PATH", "")
    return [d for d in text.split(":") if d] or list(_DEFAULT_CNI_PATH)


@contextmanager
def _usage_errors() -> Iterator[None]:
    """A bad input found inside the block is a usage error (exit code 2)."""
    try:
        yield
    except InjectError as e:
        raise _UsageError(str(e)) from None


def _attachment_options(args: argparse.Namespace) -> tuple[str, list[tuple[str, str]], dict[str, Any]]:
    """-interface, -containerid, -args, -capability-args, validated before anything runs."""
    if args.containerid and _several_pods(args):
        raise _UsageError("-containerid goes with a single pod")
    with _usage_errors():
        _validate_ifname(args.interface)
        if args.containerid:
            _validate_container_id(args.containerid)
        pairs = _parse_cni_args(args.args)
    capability_args: Any = {}
    if args.capability_args:
        try:
            capability_args = _json_value(args.capability_args)
        except ValueError as e:
            raise _UsageError(f"-capability-args is not JSON: {e}") from None
        if not isinstance(capability_args, dict):
            raise _UsageError("-capability-args must be a JSON object")
    return args.containerid, pairs, capability_args  # Node.add's container_id, args, capability_args


def _netns_work(args: argparse.Namespace, node: Node) -> _PodWork:
    return _PodWork(lambda ns, pod: node.pod(ns, pod).netns)


def _add_work(args: argparse.Namespace, node: Node) -> _PodWork:
    options = _attachment_options(args)
    network = read_network(args.spec)

    def add_one(ns: str, pod: str) -> Any:
        result = node.add(ns, pod, network, args.interface, *options)
        if args.output == "network-status":
            return network_status(result, network.status_name(ns), args.interface)
        return result
    return _PodWork(add_one, network)


def _del_work(args: argparse.Namespace, node: Node) -> _PodWork:
    options = _attachment_options(args)
    network = read_network(args.spec) if args.spec else None
    # A batch selects pods, not interfaces: only those if-inject added (not
    # Multus' net1, say) are deleted, unless -force.
    only_ours = _several_pods(args) and not args.force

    def delete_one(ns: str, pod: str) -> None:
        node.delete(ns, pod, network, args.interface, only_ours, *options, force=args.force)
    return _PodWork(delete_one, network)


def _check_work(args: argparse.Namespace, node: Node) -> _PodWork:
    options = _attachment_options(args)
    network = read_network(args.spec)
    return _PodWork(lambda ns, pod: node.check(ns, pod, network, args.interface, *options), network)


def _on_pods(make_work: Callable[[argparse.Namespace, Node], _PodWork]) -> _Run:
    """The run function of a command on pods (netns, add, del, check)."""
    return lambda args, node: _run_pod_command(args, node, make_work)


def _run_pod_command(args: argparse.Namespace, node: Node,
                     make_work: Callable[[argparse.Namespace, Node], _PodWork]) -> int:
    """netns/add/del/check on one pod (plain output) or on several (JSON lines)."""
    if not (args.pods or args.selector or args.all_namespaces):
        raise _UsageError("the following arguments are required: -pod (or -l, -A)")
    with _usage_errors():
        selector = _parse_selector(args.selector)
    work = make_work(args, node)
    if not _several_pods(args):
        output = work.one(args.ns, args.pods[0])
        if output is not None:
            print(output if isinstance(output, str) else json.dumps(output, indent=4))
        return 0
    pods = node._select_pods(None if args.all_namespaces else args.ns, args.pods, selector)
    return _run_batch(pods, work, args.parallel)


def _several_pods(args: argparse.Namespace) -> bool:
    """Whether a command on pods works on a batch (-l, -A, several -pod): JSON lines, one per pod."""
    return bool(args.selector or args.all_namespaces or len(args.pods or []) > 1)


def _run_batch(pods: list[tuple[str, str]], work: _PodWork, parallel: int | None) -> int:
    """One JSON line per pod, a progress line on a terminal; exit code 1 if any pod failed."""
    failed = not_started = 0
    network = work.network
    for done, (ns, pod, outcome) in enumerate(for_each_pod(pods, work.one, parallel), 1):
        line: dict[str, Any] = {"namespace": ns, "pod": pod}
        if network is not None and network.nad_name:
            line["netAttachDef"] = network.status_name(ns)
        if isinstance(outcome, _NotOurs):
            line["skipped"] = str(outcome)
        elif isinstance(outcome, InjectError):
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


def _printable(text: str) -> str:
    """`text` with what is not printable (control characters, terminal escapes,
    bidi overrides) as Python escapes: names from pods and runtimes are theirs."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = [header, *[tuple(_printable(cell) for cell in row) for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _run_list(args: argparse.Namespace, node: Node) -> int:
    if args.output == "network-status":
        if not (args.ns and args.pod):
            raise _UsageError("-o network-status lists one pod's attachments: give -ns and -pod")
        print(json.dumps(node.pod_network_status(args.ns, args.pod), indent=4))
        return 0
    found = node.attachments(args.ns or None, args.pod or None)
    if args.output == "json":
        print(json.dumps([a.json() for a in found], indent=4))
        return 0
    _print_table(("NAMESPACE", "POD", "INTERFACE", "NETWORK", "ADDRESSES", "SANDBOX", "STATE"),
                 [(a.namespace, a.pod, a.interface, a.network, ",".join(a.addresses) or "-",
                   a.sandbox_id[:13] or "-", "stale" if a.stale else a.sandbox_state) for a in found])
    return 0


# What `status` says of a network, by the code of the plugin that answered (CNI 1.1).
_STATUS_WORDS = {CODE_NOT_AVAILABLE: "not available", CODE_LIMITED_CONNECTIVITY: "limited connectivity"}


def _run_status(args: argparse.Namespace, node: Node) -> int:
    """One JSON line: ready (exit 0), not asked below CNI 1.1.0 (exit 0, as
    libcni counts it ready), or the first plugin's error with its code (exit 1)."""
    network = read_network(args.spec)
    line: dict[str, Any] = {"network": network.name, "cniVersion": network.cni_version}
    if network.nad_name:
        line["netAttachDef"] = network.status_name("")
    try:
        asked = node.cni.status(network)
    except InjectError as e:
        print(json.dumps(dict(line, status=_STATUS_WORDS.get(e.code, "failed"), code=e.code, error=str(e))))
        _log_error("status: not ready", e, code=e.code)
        return 1
    if not asked:
        _log("STATUS not sent: it exists from CNI 1.1.0, and the network is older", level="warn",
            network=network.name, cniVersion=network.cni_version)
    print(json.dumps(dict(line, status="ready" if asked else "not asked")))
    return 0


def _run_gc(args: argparse.Namespace, node: Node) -> int:
    """What gc did on stdout, one JSON line each; what it left alone as it could
    not tell whether it is stale, one JSON error line each on stderr."""
    failed = 0
    for record in node.gc(args.dry_run):
        failed += record.action in ("failed", "skipped")
        line = record.json()
        if record.action == "skipped":
            fields = {k: v for k, v in line.items() if k not in ("action", "reason")}
            _log_error("Left alone: cannot tell whether it is stale", record.reason, **fields)
            continue
        print(json.dumps(line), flush=True)
    return 1 if failed else 0


def _run_pods(args: argparse.Namespace, node: Node) -> int:
    with _usage_errors():
        selector = _parse_selector(args.selector)
    pods = node.pods(args.ns, selector)
    if args.output == "json":
        print(json.dumps([pod.json() for pod in pods], indent=4))
        return 0
    _print_table(("NAMESPACE", "NAME", "SANDBOX", "STATE", "NETWORK", "NETNS"),
                 [(p.namespace, p.name, p.sandbox_id[:13], p.state, p.network_mode, p.netns or "-")
                  for p in pods])
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
    """veth: the manual injection of docs/manual.md (ip link add ... veth) in one command."""
    names = tuple(filter(None, (args.interface, args.host_interface)))
    with _usage_errors():  # Node's veth methods check them too; from the command line they are usage errors
        _veth_input(names, args.address, args.host_address, None if args.delete else args.mtu)
    if args.delete and (args.address or args.host_address or args.mtu):
        raise _UsageError("-delete takes no -address, -host-address or -mtu")
    if args.delete:
        node.delete_veth(args.ns, args.pod, args.interface or "", args.host_interface)
        return 0
    made = node.add_veth(args.ns, args.pod, args.interface or "net1", args.host_interface,
                         args.address, args.host_address, args.mtu)
    print(json.dumps({"pod": f"{args.ns}/{args.pod}", **made.json()}, indent=4))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The if-inject command; returns the exit code (0 ok, 1 failed, 2 usage)."""
    words = sys.argv[1:] if argv is None else argv
    _closed_streams_fail()
    if _only_version(words):  # before the parser is built
        return _version()
    _signals.install()  # SIGINT, SIGTERM, ...: held, or an ADD under way is rolled back
    try:
        args = _build_parser(words).parse_args(words)
        _check_text(args)
        if not args.command and not args.version:
            print("Subcommands:", *args.subcommands, sep="\n   ", file=sys.stderr)
            raise _UsageError("no subcommand: give one of those above")
    except _UsageError as e:
        with _cli_logging(0):
            _log_error("Invalid command line", e)
        return 2
    except SystemExit as e:  # -h: argparse ends so, its help printed
        return _flushed("-h", e.code if isinstance(e.code, int) else 0)
    except OSError as e:  # -h: its help could not be written
        return _unwritten("-h", e)
    if args.version:
        return _version()
    with _cli_logging(args.loglevel):
        return _run_command(args)


_FILE_NAME_FLAGS = ("spec", "cache_dir", "cni_path")  # a file's name need not be UTF-8


def _check_text(args: argparse.Namespace) -> None:
    """Names go to the runtime, the plugins and the cache as UTF-8: a stray
    byte in one (a surrogate here) is a usage error, not a traceback later."""
    for flag, value in vars(args).items():
        for word in value if isinstance(value, list) else [value]:
            if isinstance(word, str) and flag not in _FILE_NAME_FLAGS and not _is_os_text(word):
                raise _UsageError(f"{word!r} is not valid UTF-8 text (only file names may be other bytes)")


def _closed_streams_fail() -> None:
    """A stdout or stderr closed by the caller (`>&-`) becomes a descriptor
    that cannot be written: a write fails as to a closed pipe, and is reported
    so (a closed stderr loses the log, as ever). A closed stdin stays without
    a sys.stdin. Nothing the command opens takes their numbers."""
    for number, name in ((0, ""), (1, "stdout"), (2, "stderr")):
        if not _fd_open(number):
            with suppress(OSError):
                fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)  # the lowest free: `number`
                if name and fd == number:
                    # Line-buffered: each write fails at once, not a buffer at exit.
                    setattr(sys, name, open(fd, "w", buffering=1, closefd=False))  # noqa: SIM115


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _version() -> int:
    try:
        return _print_version()
    except OSError as e:  # `> /dev/full`, `>&-`
        return _unwritten("-version", e)


def _flushed(what: str, code: int) -> int:
    """`code`, once stdout is flushed (-h, printed by argparse)."""
    try:
        sys.stdout.flush()
    except OSError as e:
        return _unwritten(what, e)
    return code


def _unwritten(what: str, error: OSError) -> int:
    """Output of `what` that could not be written, as one error line; exit code 1."""
    with _cli_logging(0):
        _log_error(f"{what} failed", _output_lost(error, ""), code=CODE_IO)
    return 1


def _run_command(args: argparse.Namespace) -> int:
    """The parsed command, its failures as the log's error line and the exit code."""
    _log("Start", v=1, version=__version__, command=args.command)
    node = None
    try:
        with _usage_errors():  # -timeout, -cache-dir
            node = Node(args.endpoint, args.timeout, _search_path(args.cni_path), args.cache_dir)
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
    except OSError as e:  # the library's own become InjectError: this is stdout's
        _log_error(f"{args.command} failed", _output_lost(e, args.stays), code=CODE_IO)
        return 1
    except Exception as e:  # a bug, or an input no check foresaw: one line all the same
        _log_error(f"{args.command} failed", f"internal error ({type(e).__name__}): {e}", code=CODE_INTERNAL)
        return 1
    finally:
        if node is not None:
            node.close()


def _output_lost(error: OSError, stays: str) -> str:
    """A reader that went away (`| head -c 10`), or a stdout on a full disk, is
    no reason to undo work that is done: an ADD stays, cached, as `ip addr add`
    would. Only its report is lost, and the exit code says so. `stays` is the
    subcommand's own note of what stays done (set by its entry in the parser;
    "" for a read-only one)."""
    with suppress(OSError):  # nothing more reaches stdout, nor fails at exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    why = "was closed (broken pipe)" if isinstance(error, BrokenPipeError) else \
        f"could not be written ({error.strerror})"
    return f"stdout {why}: the output was not fully written{stays}"


def cli() -> NoReturn:
    """The `if-inject` program: main() in a short-lived process (see the speed tricks at the top)."""
    _tune_gc()
    _exit_now(main())


if __name__ == "__main__":
    cli()
