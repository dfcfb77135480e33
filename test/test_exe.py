"""The one-file executable (tools/build_exe.py): no Python needed, unpacked once, safely.

The session builds it once into build/test-exe/ (reused while the sources are
unchanged), or takes $IF_INJECT_EXE. Runs use a private unpack cache
(IF_INJECT_EXE_CACHE) and a clean environment: `env -i` with a PATH that has
no Python. It carries its own C library and loader: it runs in a root with no
libc at all, and in a Debian 11 root (glibc 2.31, older than the build's).
The lab tests run it on the node, in those roots (chroot, in a private mount
namespace), and inside a privileged pod as examples/if-inject-pod.yaml does,
injecting into another pod.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import build_exe
import if_inject
import stamp
import support.node
from support.node import need_root, pod_addrs
from support.toolrun import Run, args_for, fake_plugin

REPO = Path(__file__).resolve().parent.parent

TEST_VERSION = "0.0.1-test"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"  # found on our PATH, not the clean env's




@dataclass
class Exe:
    path: Path
    version: str


@pytest.fixture(scope="session")
def exe() -> Exe:
    given = os.environ.get("IF_INJECT_EXE")
    if given:
        trailer = build_exe.read_trailer(Path(given))
        assert trailer, f"{given} is not an executable built by tools/build_exe.py"
        return Exe(Path(given), str(trailer.version))
    output = REPO / "build" / "test-exe" / "if-inject"
    subprocess.run([sys.executable, str(REPO / "tools" / "build_exe.py"), "--output", str(output)],
                   check=True, env=dict(os.environ, __version=TEST_VERSION))
    return Exe(output, TEST_VERSION)


@pytest.fixture(scope="session")
def empty_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH with nothing in it: no python, no pip, no virtualenv."""
    return str(tmp_path_factory.mktemp("empty-path"))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "exe-cache"


def clean_env(empty_path: str, cache: Path, **extra: str) -> dict[str, str]:
    return {"PATH": empty_path, "IF_INJECT_EXE_CACHE": str(cache), **extra}


def run(argv: list[str], env: dict[str, str], timeout: float = 60) -> Run:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def own_dir(cache: Path) -> Path:
    """The launcher's own dir in the cache dir `cache`: where it unpacks."""
    return cache / build_exe.OWN_DIR


def entries(cache: Path) -> list[str]:
    """What the launcher keeps in its own dir of `cache`, its marker aside."""
    own = own_dir(cache)
    return sorted(set(os.listdir(own)) - {build_exe.MARKER}) if own.exists() else []


def cache_key(exe: Path) -> str:
    trailer = build_exe.read_trailer(exe)
    assert trailer
    return str(trailer.cache_key)


@pytest.fixture(scope="session")
def bundle(exe: Exe, empty_path: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unpacked one-folder build (a cache entry of the executable)."""
    cache = tmp_path_factory.mktemp("bundle") / "cache"
    assert run([str(exe.path), "-version"], clean_env(empty_path, cache)).code == 0
    return own_dir(cache) / cache_key(exe.path)


# ---- the version stamp ---------------------------------------------------------------

def test_build_version_is_dollar_version_else_utc_build_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(stamp.VERSION_ENV, "")
    assert stamp.build_version(datetime(2026, 3, 4, 5, 6, tzinfo=UTC)) == "2026.3.4+05.06"
    assert re.fullmatch(r"20\d\d\.\d{1,2}\.\d{1,2}\+\d\d\.\d\d", stamp.build_version())
    monkeypatch.setenv(stamp.VERSION_ENV, "0.0.1-local")
    assert stamp.build_version() == "0.0.1-local"
    for bad in ('1"; import os', "a b", "-x", "x" * 64):  # it goes between quotes, and into names
        monkeypatch.setenv(stamp.VERSION_ENV, bad)
        with pytest.raises(ValueError):
            stamp.build_version()


def test_stamp_changes_only_the_version_line_of_a_copy() -> None:
    source = (REPO / "if_inject.py").read_text()
    assert stamp.source_version(source) == stamp.UNSTAMPED  # the work tree is never stamped
    stamped = stamp.stamp(source, "1.2.3")
    assert stamp.source_version(stamped) == "1.2.3"
    assert [a for a, b in zip(source.splitlines(), stamped.splitlines(), strict=True) if a != b] == \
        ['__version__ = "unknown"']
    with pytest.raises(ValueError):
        stamp.stamp("no version line here", "1.2.3")


def test_package_versions_in_pep440_form() -> None:
    assert stamp.pep440("2026.11.8+09.05", lambda v: True) == "2026.11.8+09.05"
    assert stamp.pep440("0.0.1-local") == "0.0.1+local"
    assert stamp.pep440("dev-build_7") == "0+dev.build.7"
    assert stamp.pep440("1.2") == "1.2"
    assert stamp.date_version_from_pep440("2026.11.8+9.5") == "2026.11.8+09.05"
    assert stamp.date_version_from_pep440("0.0.1+local") is None


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip install .` builds, with $__version=0.0.1-local."""
    out = tmp_path_factory.mktemp("wheel")
    env = dict(os.environ, __version="0.0.1-local", PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(REPO)],
                   check=True, env=env, capture_output=True)
    [built] = out.glob("if_inject-*.whl")
    return built


def test_pip_wheel_carries_the_stamped_version(wheel: Path) -> None:
    """`pip install .` builds this wheel: its module and metadata get $__version."""
    assert wheel.name.startswith("if_inject-0.0.1+local-")
    with zipfile.ZipFile(wheel) as z:
        assert stamp.source_version(z.read("if_inject.py").decode()) == "0.0.1-local"
        metadata = z.read("if_inject-0.0.1+local.dist-info/METADATA").decode()
    assert "\nVersion: 0.0.1+local\n" in metadata
    assert stamp.source_version((REPO / "if_inject.py").read_text()) == stamp.UNSTAMPED


def test_pip_command_answers_version_before_importing_the_module(wheel: Path, tmp_path: Path) -> None:
    """The wheel's command (a script pip puts on the PATH) reads the stamped version from
    the installed module's text; anything else runs the module's cli()."""
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path / "site")
    script = tmp_path / "site" / "if_inject-0.0.1+local.data" / "scripts" / "if-inject"
    assert script.read_text().startswith("#!python\n")  # pip puts the venv's interpreter there
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
    for flag in ("-version", "--version"):
        run = subprocess.run([sys.executable, "-X", "importtime", str(script), flag], capture_output=True,
                             text=True, env=env, cwd=tmp_path)
        assert (run.returncode, run.stdout) == (0, "0.0.1-local\n")
        imported = [line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()]
        assert "if_inject" not in imported and "argparse" not in imported
    usage = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, env=env)
    assert usage.returncode == 0 and usage.stdout.startswith("usage: if-inject")
    bad = subprocess.run([sys.executable, str(script), "-version", "x"], capture_output=True, text=True,
                         env=env)
    assert bad.returncode == 2 and '"msg": "Invalid command line"' in bad.stderr


# ---- the executable on its own ---------------------------------------------------------

def test_version_in_a_clean_environment_without_python(exe: Exe, empty_path: str, cache: Path) -> None:
    first = run([str(exe.path), "-version"], clean_env(empty_path, cache))
    assert (first.code, first.out, first.err) == (0, exe.version + "\n", "")
    key = cache_key(exe.path)
    assert entries(cache) == [key]
    assert (cache.stat().st_mode & 0o7777, cache.stat().st_uid) == (0o700, os.geteuid())
    assert (own_dir(cache).stat().st_mode & 0o7777, own_dir(cache).stat().st_uid) == (0o700, os.geteuid())
    assert (own_dir(cache) / build_exe.MARKER).read_text() == build_exe.MARKER_TEXT
    unpacked = (own_dir(cache) / key / "if-inject").stat()
    for _ in range(5):
        again = run([str(exe.path), "-version"], clean_env(empty_path, cache))
        assert (again.code, again.out) == (0, exe.version + "\n")
    # Unpacked once: the same file (how much quicker a warm start is: make bench).
    assert (own_dir(cache) / key / "if-inject").stat().st_ino == unpacked.st_ino


def without_times(text: str) -> str:
    return re.sub(r'"time": "[^"]*"', '"time": "T"', text)


@pytest.mark.parametrize("args", [[], ["--help"], ["netns", "-bogus"], ["add", "-pod", "x"],
                                  ["-loglevel", "x", "netns"],
                                  # YAML: PyYAML must be in the bundle.
                                  ["-r", "/nonexistent.sock", "add", "-pod", "x", "-spec",
                                   str(REPO / "examples" / "ptp-nad.yaml")]])
def test_it_answers_as_the_module_does(exe: Exe, empty_path: str, cache: Path, args: list[str]) -> None:
    module = subprocess.run([sys.executable, str(REPO / "if_inject.py"), *args],
                            capture_output=True, text=True)
    frozen = run([str(exe.path), *args], clean_env(empty_path, cache))
    assert (frozen.code, frozen.out, without_times(frozen.err)) == \
        (module.returncode, module.stdout, without_times(module.stderr))


def test_runs_in_a_chroot_with_nothing_else(exe: Exe, tmp_path: Path) -> None:
    """A root filesystem with the executable only: no libc, no loader, no Python, no /proc."""
    need_root()
    root = tmp_path / "rootfs"
    (root / "usr/local/bin").mkdir(parents=True)
    shutil.copy(exe.path, root / "usr/local/bin/if-inject")
    for args, out in ((["-version"], exe.version + "\n"), (["--help"], "usage: if-inject")):
        proc = subprocess.run([CHROOT, str(root), "/usr/local/bin/if-inject", *args], capture_output=True,
                              text=True, env={"PATH": "/usr/local/bin"})
        assert proc.returncode == 0 and proc.stdout.startswith(out), proc.stderr
    assert entries(root / "var/cache/if-inject") == [cache_key(exe.path)]


@contextlib.contextmanager
def hanging_runtime(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    """A CRI socket that accepts and never answers: a run against it lasts."""
    path = tmp_path / "hang.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(8)
    server.settimeout(20)
    try:
        yield f"unix://{path}", server
    finally:
        server.close()


@contextlib.contextmanager
def a_run_in_use(exe: Exe, env: dict[str, str], tmp_path: Path) -> Iterator[int]:
    """The executable running `netns` against a runtime that never answers: all is
    loaded and its entry in use while the block runs. Yields its PID."""
    with hanging_runtime(tmp_path) as (endpoint, server):
        proc = subprocess.Popen([str(exe.path), "-r", endpoint, "-timeout", "30", "netns", "-pod", "x"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            connection, _ = server.accept()  # all is loaded: it waits for the runtime
            try:
                yield proc.pid
            finally:
                connection.close()
        finally:
            proc.kill()
            proc.wait(30)


def test_it_runs_on_its_own_loader_and_libraries(exe: Exe, empty_path: str, cache: Path,
                                                 tmp_path: Path) -> None:
    """The kernel starts the unpacked program with the bundled loader, which maps
    no library from the node, not even with the user's LD_LIBRARY_PATH."""
    entry = own_dir(cache) / cache_key(exe.path)
    with a_run_in_use(exe, clean_env(empty_path, cache, LD_LIBRARY_PATH="/opt/mine"), tmp_path) as pid:
        exe_link = os.readlink(f"/proc/{pid}/exe")
        maps = Path(f"/proc/{pid}/maps").read_text().split("\n")
    assert exe_link == str(entry / "if-inject")  # /proc/self/exe is the program, not a loader
    libraries = {line.split()[-1] for line in maps if ".so" in line and "/" in line}
    assert {str(entry / "_internal" / name) for name in ("ld-linux-x86-64.so.2", "libc.so.6",
                                                          "libpython3.11.so.1.0")} <= libraries
    assert [lib for lib in libraries if not lib.startswith(f"{entry}/")] == []


def test_its_loader_searches_nothing_of_the_node(bundle: Path, empty_path: str) -> None:
    """No /etc/ld.so.cache or /etc/ld.so.preload, no default dirs for what libc loads
    (NSS modules), no gconv modules: the node's libraries are never even looked at."""
    loader = (bundle / "_internal" / "ld-linux-x86-64.so.2").read_bytes()
    assert b"\0/etc/ld.so.cache\0" not in loader and b"\0/etc/ld.so.preload\0" not in loader
    libc = (bundle / "_internal" / "libc.so.6").read_bytes()
    assert not re.search(rb"\0/[^\0]*/gconv\0", libc)
    dynamic = subprocess.run(["readelf", "-d", str(bundle / "_internal" / "libc.so.6")],
                             capture_output=True, text=True, check=True).stdout
    assert re.search(r"\(FLAGS_1\)\s+Flags: .*NODEFLIB", dynamic), dynamic
    # The loader's own account of every search, the program started directly.
    proc = subprocess.run([str(bundle / "if-inject"), "-version"], capture_output=True, text=True,
                          env={"PATH": empty_path, "LD_DEBUG": "libs"})
    searched = re.findall(r"trying file=(\S+)|search cache=(\S+)", proc.stderr)
    assert proc.returncode == 0 and searched
    assert [path for pair in searched for path in pair if path and not path.startswith(f"{bundle}/")] == []


def test_a_moved_cache_dir_is_unpacked_again(exe: Exe, empty_path: str, tmp_path: Path) -> None:
    """An entry's program names its loader by absolute path: moved, it is unpacked anew."""
    key = cache_key(exe.path)
    assert run([str(exe.path), "-version"], clean_env(empty_path, tmp_path / "before")).code == 0
    (tmp_path / "before").rename(tmp_path / "after")
    old = (own_dir(tmp_path / "after") / key / "if-inject").stat().st_ino
    again = run([str(exe.path), "-version"], clean_env(empty_path, tmp_path / "after"))
    assert (again.code, again.out, again.err) == (0, exe.version + "\n", "")
    assert entries(tmp_path / "after") == [key]
    assert (own_dir(tmp_path / "after") / key / "if-inject").stat().st_ino != old


def test_an_entry_in_use_under_another_path_is_left_alone(exe: Exe, empty_path: str,
                                                          tmp_path: Path) -> None:
    """The same cache dir seen at another path (a bind mount; here, a rename) while a
    run uses it: an error, not the entry pulled from under that run."""
    key = cache_key(exe.path)
    with a_run_in_use(exe, clean_env(empty_path, tmp_path / "before"), tmp_path):
        (tmp_path / "before").rename(tmp_path / "after")
        busy = run([str(exe.path), "-version"], clean_env(empty_path, tmp_path / "after"))
    assert (busy.code, busy.out) == (1, "")
    assert busy.error == (f"cache entry {key} is in use by a run that sees the cache dir at another "
                          "path: set IF_INJECT_EXE_CACHE to a dir of its own")
    assert entries(tmp_path / "after") == [key]


def test_an_entry_in_use_that_looks_damaged_is_left_alone(exe: Exe, empty_path: str, cache: Path,
                                                          tmp_path: Path) -> None:
    """An entry a run uses that does not match what another run checks it against
    (a damaged copy of the executable has the same key; a check can fail for want
    of fds): an error, not the entry pulled from under the run that uses it."""
    entry = own_dir(cache) / cache_key(exe.path)
    planted = entry / "_internal" / "sitecustomize.pyc"
    with a_run_in_use(exe, clean_env(empty_path, cache), tmp_path):
        planted.write_bytes(b"")  # now not as the list says
        busy = run([str(exe.path), "-version"], clean_env(empty_path, cache))
    assert (busy.code, busy.out) == (1, "")
    assert busy.error == (f"cache entry {cache_key(exe.path)} does not match this executable, and a run "
                          "uses it: not touching it (a damaged copy of the executable? copy it again)")
    assert entries(cache) == [cache_key(exe.path)] and planted.exists()


def test_a_signal_during_the_first_run_leaves_no_half_unpack(exe: Exe, empty_path: str,
                                                             tmp_path: Path) -> None:
    """SIGTERM at points of a first run's unpack (about 0.4 s): it is held until the
    entry is whole, then ends the run; nothing half unpacked is left."""
    key = cache_key(exe.path)
    for i, delay in enumerate((0.05, 0.15, 0.25)):
        cache = tmp_path / f"cache{i}"
        proc = subprocess.Popen([str(exe.path), "-version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=clean_env(empty_path, cache))
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        ended = (proc.returncode, out, err)
        assert ended in ((-signal.SIGTERM, b"", b""), (0, exe.version.encode() + b"\n", b"")), (delay, ended)
        assert entries(cache) in ([], [key]), (delay, entries(cache))
        if entries(cache):
            again = run([str(exe.path), "-version"], clean_env(empty_path, cache))
            assert (again.code, again.out) == (0, exe.version + "\n")


@pytest.mark.parametrize("name, shown", [(b"\xff", rb"\udcff"), (b"\xe0\x80\xaf", rb"\udce0\udc80\udcaf"),
                                         ("é".encode(), "é".encode())])
def test_an_error_naming_a_path_that_is_not_utf8_is_one_json_line(exe: Exe, empty_path: str, tmp_path: Path,
                                                                    name: bytes, shown: bytes) -> None:
    """A byte that is not UTF-8 in a path (an overlong form too) shows as Python's
    surrogateescape does, so that the line is JSON; UTF-8 stays as it is."""
    parent = tmp_path / "open"
    parent.mkdir(mode=0o777)
    parent.chmod(0o777)  # others can write: the cache dir below it is refused
    cache = os.fsencode(parent) + b"/cache" + name
    os.mkdir(cache, 0o700)
    proc = subprocess.run([str(exe.path), "-version"], capture_output=True, timeout=60,
                          env={b"PATH": os.fsencode(empty_path), b"IF_INJECT_EXE_CACHE": cache})
    assert proc.returncode == 1 and proc.stdout == b"" and proc.stderr.count(b"\n") == 1
    assert b"cache" + shown + b": " in proc.stderr
    line = json.loads(proc.stderr)
    assert line["msg"] == "Executable failed to start"
    assert line["error"] == f"unsafe cache dir {os.fsdecode(cache)}: {parent} is writable by group or others"
    assert os.listdir(cache) == []


def test_what_a_killed_first_run_left_in_the_named_dir_goes(exe: Exe, empty_path: str,
                                                            tmp_path: Path) -> None:
    """The temporary own dir of a first run killed by SIGKILL: the next run that makes
    the own dir removes it when it is ours (by name and marker) and a minute old."""
    cache = tmp_path / "named"
    cache.mkdir(mode=0o700)
    new = f".{build_exe.OWN_DIR}-new-"
    planted = ((f"{new}12345", True, 120), (f"{new}23456", True, 0), (f"{new}34567", False, 120),
               (f"{new}x", True, 120))  # (name, with our marker, age in s): only the first is ours and old
    for name, marker, age in planted:
        (cache / name).mkdir(mode=0o700)
        if marker:
            (cache / name / build_exe.MARKER).write_text(build_exe.MARKER_TEXT)
            (cache / name / build_exe.MARKER).chmod(0o600)
        os.utime(cache / name, (time.time() - age, time.time() - age))
    assert run([str(exe.path), "-version"], clean_env(empty_path, cache)).code == 0
    assert sorted(os.listdir(cache)) == sorted([build_exe.OWN_DIR, f"{new}23456", f"{new}34567", f"{new}x"])


def test_no_space_in_the_cache_dir_is_one_error_line(exe: Exe, empty_path: str, tmp_path: Path) -> None:
    need_root()
    small = tmp_path / "small"
    small.mkdir(mode=0o700)
    # A 1 MB tmpfs, in a mount namespace of its own that goes with the run.
    script = 'mount -t tmpfs -o size=1m,mode=0700 tmpfs "$0" && "$1" -version; echo "exit $?"; cd "$0"; find'
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
                           str(small), str(exe.path)], capture_output=True, text=True, timeout=60,
                          env=clean_env(empty_path, small, PATH="/usr/bin:/bin"))
    # Nothing left in the cache dir but the launcher's own dir, with only its marker.
    assert proc.stdout == f"exit 1\n.\n./{build_exe.OWN_DIR}\n./{build_exe.OWN_DIR}/{build_exe.MARKER}\n"
    assert re.fullmatch(r"unpacking \S+: No space left on device", Run(1, "", proc.stderr).error)


def test_plugins_get_the_users_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Not the one-file executable's: its bootloader's variables, or its library dir."""
    att = if_inject.Attachment("c1", "/run/netns/x")
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    monkeypatch.setenv("_PYI_APPLICATION_HOME_DIR", str(tmp_path))
    monkeypatch.setenv("_PYI_PARENT_PROCESS_LEVEL", "0")
    monkeypatch.setenv("LD_LIBRARY_PATH", f"{tmp_path}:/opt/mine")
    env = if_inject._plugin_env("ADD", att, ["/opt/cni/bin"])
    assert env["LD_LIBRARY_PATH"] == "/opt/mine" and not [k for k in env if k.startswith("_PYI")]
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    assert "LD_LIBRARY_PATH" not in if_inject._plugin_env("ADD", att, [])
    monkeypatch.setenv("LD_LIBRARY_PATH_ORIG", "/opt/yours")  # the user's, saved by the bootloader
    env = if_inject._plugin_env("DEL", att, [])
    assert env["LD_LIBRARY_PATH"] == "/opt/yours" and "LD_LIBRARY_PATH_ORIG" not in env
    monkeypatch.delattr(sys, "_MEIPASS")  # the pip-installed command: as it is
    monkeypatch.delenv("LD_LIBRARY_PATH_ORIG")
    assert if_inject._plugin_env("DEL", att, [])["LD_LIBRARY_PATH"] == str(tmp_path)


def test_first_runs_at_once_unpack_once(exe: Exe, empty_path: str, cache: Path) -> None:
    procs = [subprocess.Popen([str(exe.path), "-version"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=clean_env(empty_path, cache)) for _ in range(6)]
    results = [(p.wait(60), *p.communicate()) for p in procs]
    assert results == [(0, exe.version + "\n", "")] * 6
    assert entries(cache) == [cache_key(exe.path)]  # no half-unpacked copies left


@pytest.mark.parametrize("setup, message", [
    ("chmod 0770 cache", "unsafe cache dir {cache}: writable by group or others"),
    ("chown nobody cache", "unsafe cache dir {cache}: owned by another user"),
    ("chmod 0777 parent", "unsafe cache dir {cache}: {parent} is writable by group or others"),
    ("symlink into 0777", "unsafe cache dir {target}: {parent} is writable by group or others"),
    ("relative", "IF_INJECT_EXE_CACHE must be an absolute path: relative/cache"),
])
def test_unsafe_cache_dirs_are_refused(exe: Exe, empty_path: str, tmp_path: Path, setup: str,
                                        message: str) -> None:
    need_root()
    parent = tmp_path / "parent"
    cache = parent / "cache"
    cache.mkdir(parents=True, mode=0o700)
    target = str(cache)
    if setup == "chmod 0770 cache":
        cache.chmod(0o770)
    elif setup == "chown nobody cache":
        os.chown(cache, 65534, 65534)
    elif setup == "chmod 0777 parent":
        parent.chmod(0o777)
    elif setup == "symlink into 0777":
        parent.chmod(0o777)
        (tmp_path / "link").symlink_to(parent)
        target = str(tmp_path / "link" / "cache")
    else:
        target = "relative/cache"
    proc = run([str(exe.path), "-version"], {"PATH": empty_path, "IF_INJECT_EXE_CACHE": target})
    assert proc.code == 1 and proc.out == ""
    assert proc.error == message.format(cache=cache, parent=parent, target=target)
    assert proc.err.count("\n") == 1 and os.listdir(cache) == []


def test_a_broken_entry_is_unpacked_again(exe: Exe, empty_path: str, cache: Path) -> None:
    key = cache_key(exe.path)
    assert run([str(exe.path), "-version"], clean_env(empty_path, cache)).code == 0
    (own_dir(cache) / key / "if-inject").unlink()
    again = run([str(exe.path), "-version"], clean_env(empty_path, cache))
    assert (again.code, again.out) == (0, exe.version + "\n")
    assert entries(cache) == [key] and (own_dir(cache) / key / "if-inject").is_file()


@pytest.mark.parametrize("damage, message", [
    ("truncate", r"this file has no if-inject payload \(truncated or not built by build_exe\.py\)"),
    ("flip a bit of the checksum",
     r"payload is corrupt \(zlib: incorrect data check\): copy the executable again"),
    ("flip a bit in the middle", r"payload is corrupt.*"),
])
def test_a_damaged_executable_is_refused(exe: Exe, empty_path: str, cache: Path, tmp_path: Path,
                                         damage: str, message: str) -> None:
    data = bytearray(exe.path.read_bytes())
    trailer = build_exe.read_trailer(exe.path)
    assert trailer
    if damage == "truncate":
        data = data[:len(data) // 2]
    elif damage == "flip a bit of the checksum":  # the zlib stream's last 4 bytes: Adler-32 of all
        data[trailer.payload_offset + trailer.payload_size - 2] ^= 1
    else:
        data[trailer.payload_offset + trailer.payload_size // 2] ^= 1
    bad = tmp_path / "if-inject"
    bad.write_bytes(bytes(data))
    bad.chmod(0o755)
    proc = run([str(bad), "-version"], clean_env(empty_path, cache))
    assert (proc.code, proc.out) == (1, "") and re.fullmatch(message, proc.error)
    assert entries(cache) == []  # the half-unpacked copy is gone


def rebuilt(exe: Exe, bundle: Path, tmp_path: Path, tag: str) -> Path:
    """Another build: the same bundle with one more file, so another cache key."""
    folder = tmp_path / f"bundle-{tag}"
    shutil.copytree(bundle, folder)
    (folder / "_internal" / f"extra-{tag}").write_text(tag)
    data = exe.path.read_bytes()
    trailer = build_exe.read_trailer(exe.path)
    assert trailer
    slots = (trailer.interp_offset, trailer.rpath_offset)
    with open(folder / "if-inject", "r+b") as program:  # empty the slots the unpack filled
        for offset, placeholder in zip(slots, (build_exe.INTERP_PLACEHOLDER, build_exe.RPATH_PLACEHOLDER),
                                       strict=True):
            program.seek(offset)
            program.write(placeholder)
    output = tmp_path / f"if-inject-{tag}"
    build_exe.write_exe(output, data[:trailer.payload_offset], build_exe.pack(folder), slots, "test", tag)
    shutil.rmtree(folder)
    return output


def test_a_new_build_prunes_old_entries_not_in_use(exe: Exe, bundle: Path, empty_path: str,
                                                   cache: Path, tmp_path: Path) -> None:
    # A run of the first build that lasts: its runtime accepts but never answers.
    hang = tmp_path / "hang.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(hang))
    server.listen(8)
    first = subprocess.Popen([str(exe.path), "-r", f"unix://{hang}", "-timeout", "30", "netns", "-pod", "x"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=clean_env(empty_path, cache))
    try:
        server.settimeout(20)
        connection, _ = server.accept()  # the first build runs, from its cache entry
        second, third = rebuilt(exe, bundle, tmp_path, "second"), rebuilt(exe, bundle, tmp_path, "third")
        # The launcher answers -version from the trailer (the tag), once its entry is unpacked.
        assert run([str(second), "-version"], clean_env(empty_path, cache)).out == "second\n"
        assert first.poll() is None
        assert entries(cache) == sorted([cache_key(exe.path), cache_key(second)])  # the first is in use
    finally:
        first.kill()
        first.wait(30)
        server.close()
    connection.close()
    assert run([str(third), "-version"], clean_env(empty_path, cache)).code == 0
    assert entries(cache) == [cache_key(third)]


# ---- the cache dir on a shared node: only what the launcher made is its own --------------

NOBODY = 65534


def snapshot(path: Path) -> list[tuple[str, int, int, int]]:
    """Every name under `path` (itself included) with its mode, owner and size, symlinks unfollowed."""
    found = []
    for name in [path, *sorted(path.rglob("*"))]:
        st = name.lstat()
        found.append((str(name.relative_to(path)), st.st_mode, st.st_uid, st.st_size))
    return found


def make_own_dir(cache: Path, mode: int = 0o700, marker: str | None = build_exe.MARKER_TEXT) -> Path:
    """The launcher's own dir, made here as the launcher makes it (or not quite)."""
    own = own_dir(cache)
    own.mkdir(parents=True)
    own.chmod(mode)
    if marker is not None:
        (own / build_exe.MARKER).write_text(marker)
    return own


def test_the_launcher_and_build_exe_agree_on_names() -> None:
    source = build_exe.LAUNCHER.read_text()
    for define, value in (("MAGIC", build_exe.MAGIC.rstrip(b"\0").decode()), ("OWN_DIR", build_exe.OWN_DIR),
                          ("MARKER", build_exe.MARKER), ("MARKER_TEXT", build_exe.MARKER_TEXT)):
        assert re.search(rf"^#define {define} {re.escape(json.dumps(value))}", source, re.MULTILINE), define


def test_whatever_else_is_in_the_cache_dir_survives_a_new_build(exe: Exe, empty_path: str,
                                                                 tmp_path: Path) -> None:
    """IF_INJECT_EXE_CACHE=/opt: /opt/cni (here a temporary stand-in) is not the launcher's,
    even with a name like an entry's; and /opt is not chmodded."""
    named = tmp_path / "opt"
    (named / "cni" / "bin").mkdir(parents=True)
    (named / "cni" / "bin" / "ptp").write_text("a plugin")
    (named / ("0" * 64)).mkdir()  # an old launcher's entry, or anyone's
    (named / ".unpack-0123456789abcdef-1").mkdir()
    named.chmod(0o755)
    before = snapshot(named)
    first = run([str(exe.path), "-version"], clean_env(empty_path, named))  # a new build's first run
    assert (first.code, first.out, first.err) == (0, exe.version + "\n", "")
    assert entries(named) == [cache_key(exe.path)]
    assert [row for row in snapshot(named) if not row[0].startswith(build_exe.OWN_DIR)] == before


@pytest.mark.parametrize("planted", ["by nobody, in a sticky dir", "by root, in a sticky dir",
                                     "by nobody, inside the path"])
def test_a_planted_symlink_is_refused(exe: Exe, empty_path: str, tmp_path: Path, planted: str) -> None:
    """/tmp/x -> /opt, planted by another user (or in a dir others write): refused, not taken
    as its target, and the target is left as it was."""
    need_root()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # as /tmp
    target = tmp_path / "opt"
    (target / "cni").mkdir(parents=True)
    target.chmod(0o755)
    link = shared / "x"
    link.symlink_to(target)
    if planted.startswith("by nobody"):
        os.lchown(link, NOBODY, NOBODY)
    given = link / "if-inject" if planted.endswith("inside the path") else link
    before = snapshot(target)
    proc = run([str(exe.path), "-version"], {"PATH": empty_path, "IF_INJECT_EXE_CACHE": str(given)})
    assert (proc.code, proc.out, proc.err.count("\n")) == (1, "", 1)
    why = "a symlink owned by uid 65534" if planted.startswith("by nobody") else \
        "a symlink in a directory others can write"
    assert proc.error == f"unsafe cache dir {given}: {link} is {why}"
    assert snapshot(target) == before


@pytest.mark.parametrize("target", ["absolute", "relative with .."])
def test_a_root_owned_symlink_in_a_root_only_dir_is_followed(exe: Exe, empty_path: str, tmp_path: Path,
                                                             target: str) -> None:
    """As /var/run -> /run (or -> ../run): the entry is unpacked in the real dir, and its
    program names its loader there."""
    need_root()
    real = tmp_path / "run"
    real.mkdir()
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "run").symlink_to(real if target == "absolute" else Path("..") / "run")
    proc = run([str(exe.path), "-version"], clean_env(empty_path, tmp_path / "var" / "run" / "if-inject"))
    assert (proc.code, proc.out, proc.err) == (0, exe.version + "\n", "")
    entry = own_dir(real / "if-inject") / cache_key(exe.path)
    assert entries(real / "if-inject") == [cache_key(exe.path)]
    assert f"{entry}/_internal/ld-linux-x86-64.so.2".encode() in (entry / "if-inject").read_bytes()


@pytest.mark.parametrize("setup, why", [
    ("mode 0755", "mode 0755, not 0700 as if-inject makes it (it changes nothing it did not make)"),
    ("owned by nobody",
     "owned by uid 65534, not 0 as if-inject makes it (it changes nothing it did not make)"),
    ("no marker", f"it has no {build_exe.MARKER} marker, so if-inject did not make it "
                  "(remove it, or set IF_INJECT_EXE_CACHE to another dir)"),
    ("another marker", f"it has no {build_exe.MARKER} marker, so if-inject did not make it "
                       "(remove it, or set IF_INJECT_EXE_CACHE to another dir)"),
    ("a symlink", "Not a directory (if-inject did not make it; remove it, or set IF_INJECT_EXE_CACHE "
                  "to another dir)"),
])
def test_a_wrong_own_dir_is_refused_and_left_as_it_is(exe: Exe, empty_path: str, tmp_path: Path,
                                                      setup: str, why: str) -> None:
    """A dir by the launcher's name that is not as it makes it: refused with one error line,
    nothing in it removed, nothing chmodded or chowned."""
    need_root()
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    own = make_own_dir(tmp_path / "elsewhere" if setup == "a symlink" else cache,
                       0o755 if setup == "mode 0755" else 0o700,
                       None if setup == "no marker" else "mine\n" if setup == "another marker"
                       else build_exe.MARKER_TEXT)
    (own / ("1" * 64)).mkdir()  # names the launcher would take for its own
    (own / ("1" * 64) / "data").write_text("not yours")
    if setup == "owned by nobody":
        os.chown(own, NOBODY, NOBODY)
    elif setup == "a symlink":
        own_dir(cache).symlink_to(own)
    before = snapshot(tmp_path)
    proc = run([str(exe.path), "-version"], clean_env(empty_path, cache))
    assert (proc.code, proc.out, proc.err.count("\n")) == (1, "", 1)
    assert proc.error == f"refusing cache dir {cache}/{build_exe.OWN_DIR}: {why}"
    assert snapshot(tmp_path) == before


def test_the_named_dir_is_checked_not_changed(exe: Exe, empty_path: str, tmp_path: Path) -> None:
    """An existing cache dir readable by others is used as it is (the launcher's own dir
    inside is 0700); one writable by others is refused, one error line, unchanged."""
    need_root()
    named = tmp_path / "named"
    named.mkdir()
    named.chmod(0o755)
    assert run([str(exe.path), "-version"], clean_env(empty_path, named)).code == 0
    assert named.stat().st_mode & 0o7777 == 0o755
    named.chmod(0o775)
    before = snapshot(named)
    proc = run([str(exe.path), "-version"], clean_env(empty_path, named))
    assert (proc.code, proc.out, proc.err.count("\n")) == (1, "", 1)
    assert proc.error == f"unsafe cache dir {named}: writable by group or others"
    assert snapshot(named) == before


@pytest.mark.parametrize("tamper", ["truncate a library", "remove a module", "add a module",
                                    "chmod a library"])
def test_a_tampered_entry_is_not_run_but_unpacked_anew(exe: Exe, bundle: Path, empty_path: str,
                                                       cache: Path, tamper: str) -> None:
    """Checked against the payload's own list: every file with its size, mode and owner,
    every directory, and no other name. One that differs is set aside and removed, and a
    fresh entry is unpacked and run."""
    assert run([str(exe.path), "-version"], clean_env(empty_path, cache)).code == 0
    entry = own_dir(cache) / cache_key(exe.path)
    program = (entry / "if-inject").stat().st_ino
    library = entry / "_internal" / "libpython3.11.so.1.0"
    module = entry / "_internal" / "json" / "__init__.pyc"
    planted = entry / "_internal" / "sitecustomize.pyc"
    if tamper == "truncate a library":
        os.truncate(library, library.stat().st_size - 1)
    elif tamper == "remove a module":
        module.unlink()
    elif tamper == "add a module":
        planted.write_bytes(b"")
    else:
        library.chmod(0o777)
    again = run([str(exe.path), "-version"], clean_env(empty_path, cache))
    assert (again.code, again.out, again.err) == (0, exe.version + "\n", "")
    assert entries(cache) == [cache_key(exe.path)]
    assert (entry / "if-inject").stat().st_ino != program  # not the tampered one
    assert snapshot(entry)[1:] == snapshot(bundle)[1:]  # all as unpacked, the entry's own mode aside
    assert not planted.exists()


def test_a_mount_point_in_an_entry_is_not_crossed(exe: Exe, empty_path: str, cache: Path) -> None:
    """Pruning an old entry removes what is on the cache's own mount, never what is mounted
    inside it (in a mount namespace of its own that goes with the run)."""
    need_root()
    old = make_own_dir(cache) / ("a" * 64)
    (old / "_internal").mkdir(parents=True)
    (old / "_internal" / "old.so").write_text("old")
    (old / "mnt").mkdir()
    script = ('mount -t tmpfs tmpfs "$0" && cd "$0" && echo kept > file && "$1" -version && cat file'
              ' && cd / && find "$2" -mindepth 1')
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
                           str(old / "mnt"), str(exe.path), str(own_dir(cache))],
                          capture_output=True, text=True, timeout=60,
                          env=clean_env(empty_path, cache, PATH="/usr/bin:/bin"))
    assert proc.returncode == 0, proc.stderr
    version, kept, *left = proc.stdout.splitlines()
    assert (version, kept) == (exe.version, "kept")
    # The old entry set aside, all of it removed but the mount point (and the dir holding it).
    aside = [name for name in entries(cache) if name != cache_key(exe.path)]
    assert len(aside) == 1 and re.fullmatch(r"\.remove-\d+", aside[0])
    own, new = own_dir(cache), cache_key(exe.path)
    assert sorted(line for line in left if not line.startswith(f"{own}/{new}")) == \
        [f"{own}/{build_exe.MARKER}", *(f"{own}/{aside[0]}{tail}" for tail in ("", "/mnt", "/mnt/file"))]


def test_manifest_runs_it_as_the_lab_test_does() -> None:
    """examples/if-inject-pod.yaml asks for what run_tool_pod gives the tool below."""
    text = (REPO / "examples" / "if-inject-pod.yaml").read_text()
    for line in ("hostNetwork: true", "hostPID: true", "privileged: true",
                 "mountPath: /run/containerd/containerd.sock", "mountPath: /opt/cni/bin",
                 "mountPath: /var/lib/cni", "mountPath: /run/netns", "mountPath: /var/run/netns"):
        assert re.search(rf"^\s*-? ?{re.escape(line)}$", text, re.MULTILINE), line
    assert text.count("mountPropagation: HostToContainer") == 2


# ---- on the lab ----------------------------------------------------------------------

def ptp_spec(tmp_path: Path, plugin: str = "ptp") -> Path:
    conf = json.loads((REPO / "examples" / "ptp.json").read_text())
    conf["type"] = plugin
    conf["ipam"]["dataDir"] = str(tmp_path / "ipam")
    path = tmp_path / "ptp.json"
    path.write_text(json.dumps(conf))
    return path


def leases(tmp_path: Path) -> list[str]:
    return support.node.leases(tmp_path / "ipam", "mynet")


def test_netns_add_del_on_the_node_in_a_clean_environment(exe: Exe, lab: Any, pod: Any, empty_path: str,
                                                        cache: Path, tmp_path: Path) -> None:
    # A plugin that records the environment it gets, then is ptp.
    plugins = tmp_path / "bin"
    plugins.mkdir()
    fake_plugin(plugins, "envptp", f"/usr/bin/env > {tmp_path}/env.$CNI_COMMAND\nexec /usr/lib/cni/ptp")
    spec = ptp_spec(tmp_path, "envptp")
    base = [str(exe.path), "-r", lab.endpoint, "-cache-dir", str(tmp_path / "cni"),
            "-cni-path", f"{plugins}:/usr/lib/cni"]
    pod_args = args_for(pod)
    env = clean_env(empty_path, cache)

    netns = run([*base, "netns", *pod_args], env)
    assert (netns.code, netns.out, netns.err) == (0, pod.netns + "\n", "")

    add = run([*base, "add", *pod_args, "-spec", str(spec)], {**env, "LD_LIBRARY_PATH": "/opt/mine"})
    assert (add.code, add.err) == (0, "")
    address = json.loads(add.out)["ips"][0]["address"]
    assert f"inet {address}" in pod_addrs(lab, pod)
    assert leases(tmp_path) == [address.split("/")[0]]

    delete = run([*base, "del", *pod_args, "-spec", str(spec)], env)
    assert (delete.code, delete.out, delete.err) == (0, "", "")
    assert pod_addrs(lab, pod) == "" and leases(tmp_path) == []
    assert os.listdir(tmp_path / "cni" / "results") == []

    # Plugins get the user's environment, not the bundle's library path or PyInstaller's variables.
    for command, library_path in (("ADD", "/opt/mine"), ("DEL", None)):
        seen = dict(line.split("=", 1) for line in (tmp_path / f"env.{command}").read_text().splitlines())
        assert seen.get("LD_LIBRARY_PATH") == library_path
        assert seen["PATH"] == empty_path and seen["CNI_COMMAND"] == command
        assert not [k for k in seen if k.startswith(("_PYI", "PYTHON", "LD_LIBRARY_PATH_ORIG"))]


@pytest.mark.runtimes("containerd-2.1", "cri-o")  # the runtimes clusters run
def test_in_a_pod_it_injects_into_another_pod(exe: Exe, lab: Any, pod: Any,
                                              tmp_path: Path) -> None:
    """The executable in an image without Python or libc, in a pod like examples/if-inject-pod.yaml."""
    from support.exe_image import IN_IMAGE, exe_image, mount, run_tool_pod

    lab.import_image(exe_image(lab.cache, exe.path))
    netns_dir = str(Path(str(pod.netns)).parent)
    # containerd 2.1 mounts the pods' netns in the node's /var/run/netns, as on a
    # node; but this machine's / is not a shared mount, so containerd refuses
    # HostToContainer propagation here (if-inject-pod.yaml asks for it): the pod
    # to change exists first, and the netns directory is bound in with the netns
    # mount already in it (CRI mounts are rbind).
    # The plugins are this node's Debian builds, linked against its glibc: the
    # image has none, so they get the node's (a node's static plugins need nothing).
    loader = os.path.realpath("/lib64/ld-linux-x86-64.so.2")
    tool = run_tool_pod(lab, [
        mount(lab.socket), mount("/usr/lib/cni", "/opt/cni/bin", readonly=True),
        mount(os.path.dirname(loader), readonly=True),
        mount(loader, "/lib64/ld-linux-x86-64.so.2", readonly=True),
        mount(netns_dir), mount(str(tmp_path)),
    ])
    try:
        def in_pod(*args: str) -> Run:
            code, out, err = lab.exec(tool, [IN_IMAGE, *args], timeout=30)
            return Run(code, out, err)

        assert in_pod("-version").out == exe.version + "\n"
        assert lab.exec(tool, ["ls", f"/var/cache/if-inject/{build_exe.OWN_DIR}"])[1].split() == \
            [cache_key(exe.path)]
        assert lab.exec(tool, ["ls", "-A", "/lib"])[1] == ""  # no libc in the image
        base = ["-r", f"unix://{lab.socket}", "-cache-dir", str(tmp_path / "results")]
        pod_args = args_for(pod)
        netns = in_pod(*base, "netns", *pod_args)
        assert (netns.code, netns.out, netns.err) == (0, pod.netns + "\n", "")
        spec = ptp_spec(tmp_path)
        add = in_pod(*base, "add", *pod_args, "-spec", str(spec))  # plugins from /opt/cni/bin
        assert (add.code, add.err) == (0, ""), add.err
        address = json.loads(add.out)["ips"][0]["address"]
        assert f"inet {address}" in pod_addrs(lab, pod)
        delete = in_pod(*base, "del", *pod_args, "-spec", str(spec))
        assert (delete.code, delete.err) == (0, "")
        assert pod_addrs(lab, pod) == "" and leases(tmp_path) == []
    finally:
        lab.remove_pod(tool)


# ---- in other roots: Debian 11, and none with a libc ---------------------------------------

BULLSEYE_CNI = ["containernetworking-plugins"]  # Debian 11's own, linked against its glibc 2.31


def in_root(root: Path, argv: list[str], env: dict[str, str], binds: list[str],
            lower: Path | None = None) -> Run:
    """argv run chrooted into `root` with a clean `env`, in a private mount namespace
    that goes with it: /proc, and `binds` (paths of this machine) at the same paths.
    With `lower`, the root is an overlay on it, writes going to `root`: a cached
    root shared by other test sessions is never written to."""
    target = root
    steps = []
    if lower:
        target = root / "merged"
        for d in ("merged", "upper", "work"):
            (root / d).mkdir(exist_ok=True)
        steps.append(f"mount -t overlay overlay -o lowerdir={lower},upperdir={root}/upper,"
                     f"workdir={root}/work {target}")
    steps.append(f"mkdir -p {target}/proc && mount -t proc proc {target}/proc")
    for path in binds:
        inside = shlex.quote(f"{target}{path}")
        make = f"mkdir -p {inside}" if os.path.isdir(path) else \
            f"mkdir -p $(dirname {inside}) && touch {inside}"
        steps.append(f"{make} && mount --rbind {shlex.quote(path)} {inside}")
    chroot = shutil.which("chroot", path="/usr/sbin:/usr/bin:/sbin:/bin") or "chroot"
    command = shlex.join(["env", "-i", *(f"{k}={v}" for k, v in env.items()), chroot, str(target), *argv])
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                           " && ".join([*steps, f"exec {command}"])],
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    return Run(proc.returncode, proc.stdout, proc.stderr)


def test_in_a_debian_11_root_netns_add_del(exe: Exe, lab: Any, pod: Any, cache: Path, tmp_path: Path) -> None:
    """glibc 2.31, older than the build machine's: the file brings its own, and the
    plugins (Debian 11's) still run with the root's."""
    from support.debroot import debian_root

    lower = debian_root("bullseye", BULLSEYE_CNI)
    assert (lower / "lib/x86_64-linux-gnu/libc-2.31.so").exists()
    root = tmp_path / "bullseye"
    (root / "upper/usr/local/bin").mkdir(parents=True)
    shutil.copy(exe.path, root / "upper/usr/local/bin/if-inject")
    spec = ptp_spec(tmp_path)
    conf = json.loads(spec.read_text())
    spec.write_text(json.dumps({**conf, "cniVersion": "0.4.0"}))  # Debian 11's plugins are 0.9
    binds = [lab.socket, str(Path(str(pod.netns)).parent), str(tmp_path)]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "IF_INJECT_EXE_CACHE": str(cache)}
    base = ["/usr/local/bin/if-inject", "-r", lab.endpoint, "-cache-dir", str(tmp_path / "cni"),
            "-cni-path", "/usr/lib/cni"]
    pod_args = args_for(pod)

    version = in_root(root, ["/usr/local/bin/if-inject", "-version"], env, binds, lower)
    assert (version.code, version.out, version.err) == (0, exe.version + "\n", "")
    assert entries(cache) == [cache_key(exe.path)]
    netns = in_root(root, [*base, "netns", *pod_args], env, binds, lower)
    assert (netns.code, netns.out, netns.err) == (0, pod.netns + "\n", "")
    add = in_root(root, [*base, "add", *pod_args, "-spec", str(spec)], env, binds, lower)
    assert (add.code, add.err) == (0, "")
    address = json.loads(add.out)["ips"][0]["address"]
    assert f"inet {address}" in pod_addrs(lab, pod)
    assert leases(tmp_path) == [address.split("/")[0]]
    delete = in_root(root, [*base, "del", *pod_args, "-spec", str(spec)], env, binds, lower)
    assert (delete.code, delete.out, delete.err) == (0, "", "")
    assert pod_addrs(lab, pod) == "" and leases(tmp_path) == []
    assert os.listdir(tmp_path / "cni" / "results") == []


def test_in_a_root_without_libc(exe: Exe, lab: Any, pod: Any, tmp_path: Path) -> None:
    """busybox-static and the file, nothing else: a rescue root, a distroless-like image."""
    root = tmp_path / "root"
    for d in ("bin", "usr/local/bin", "tmp"):
        (root / d).mkdir(parents=True)
    shutil.copy(Path(shutil.which("busybox") or "/bin/busybox").resolve(), root / "bin/busybox")
    (root / "bin/sh").symlink_to("busybox")
    shutil.copy(exe.path, root / "usr/local/bin/if-inject")
    files = sorted(p.name for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    assert files == ["busybox", "if-inject"]
    # /dev as any root has it (gRPC seeds its random numbers from /dev/urandom).
    binds = ["/dev", lab.socket, str(Path(str(pod.netns)).parent)]
    env = {"PATH": "/bin:/usr/local/bin"}
    base = ["/usr/local/bin/if-inject", "-r", lab.endpoint]

    version = in_root(root, ["/usr/local/bin/if-inject", "-version"], env, binds)
    assert (version.code, version.out, version.err) == (0, exe.version + "\n", "")
    assert entries(root / "var/cache/if-inject") == [cache_key(exe.path)]  # the default cache dir
    netns = in_root(root, [*base, "netns", *args_for(pod)], env, binds)
    assert (netns.code, netns.out, netns.err) == (0, pod.netns + "\n", "")
    unknown = in_root(root, [*base, "netns", "-ns", pod.namespace, "-pod", "no-such-pod"], env, binds)
    assert (unknown.code, unknown.out) == (1, "")
    assert unknown.error == f"pod {pod.namespace}/no-such-pod not found on this node"
    (root / "usr/local/bin/damaged").write_bytes(exe.path.read_bytes()[:-100])  # a failure to start
    (root / "usr/local/bin/damaged").chmod(0o755)
    damaged = in_root(root, ["/usr/local/bin/damaged", "-version"], env, binds)
    assert (damaged.code, damaged.out) == (1, "")
    assert damaged.error.startswith("this file has no if-inject payload")
