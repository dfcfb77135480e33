"""The one-file executable (tools/build_exe.py): no Python needed, unpacked once, safely.

The session builds it once into build/test-exe/ (reused while the sources are
unchanged), or takes $IF_INJECT_EXE. Runs use a private unpack cache
(IF_INJECT_EXE_CACHE) and a clean environment: `env -i` with a PATH that has
no Python. The lab tests run it on the node, and inside a privileged pod as
test/if-inject-pod.yaml does, injecting into another pod.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import statistics
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
from toolrun import Run

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tools"))
import build_exe  # noqa: E402
import stamp  # noqa: E402

TEST_VERSION = "0.0.1-test"




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


def entries(cache: Path) -> list[str]:
    return sorted(os.listdir(cache)) if cache.exists() else []


def cache_key(exe: Path) -> str:
    trailer = build_exe.read_trailer(exe)
    assert trailer
    return str(trailer.cache_key)


@pytest.fixture(scope="session")
def bundle(exe: Exe, empty_path: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unpacked one-folder build (a cache entry of the executable)."""
    cache = tmp_path_factory.mktemp("bundle") / "cache"
    assert run([str(exe.path), "-version"], clean_env(empty_path, cache)).code == 0
    return cache / cache_key(exe.path)


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")


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


def test_pip_wheel_carries_the_stamped_version(tmp_path: Path) -> None:
    """`pip install .` builds this wheel: its module and metadata get $__version."""
    env = dict(os.environ, __version="0.0.1-local", PIP_DISABLE_PIP_VERSION_CHECK="1")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
                   check=True, env=env, capture_output=True)
    [wheel] = tmp_path.glob("if_inject-*.whl")
    assert wheel.name.startswith("if_inject-0.0.1+local-")
    with zipfile.ZipFile(wheel) as z:
        assert stamp.source_version(z.read("if_inject.py").decode()) == "0.0.1-local"
        metadata = z.read("if_inject-0.0.1+local.dist-info/METADATA").decode()
    assert "\nVersion: 0.0.1+local\n" in metadata
    assert stamp.source_version((REPO / "if_inject.py").read_text()) == stamp.UNSTAMPED


# ---- the executable on its own ---------------------------------------------------------

def test_version_in_a_clean_environment_without_python(exe: Exe, empty_path: str, cache: Path) -> None:
    first = run([str(exe.path), "-version"], clean_env(empty_path, cache))
    assert (first.code, first.out, first.err) == (0, exe.version + "\n", "")
    key = cache_key(exe.path)
    assert entries(cache) == [key]
    assert (cache.stat().st_mode & 0o7777, cache.stat().st_uid) == (0o700, os.geteuid())
    unpacked = (cache / key / "if-inject").stat()
    times = []
    for _ in range(5):
        started = time.monotonic()
        again = run([str(exe.path), "-version"], clean_env(empty_path, cache))
        times.append(time.monotonic() - started)
        assert (again.code, again.out) == (0, exe.version + "\n")
    # Unpacked once: the same file, and a start far quicker than an unpack (~0.4 s).
    assert (cache / key / "if-inject").stat().st_ino == unpacked.st_ino
    assert statistics.median(times) < 0.3, times


def without_times(text: str) -> str:
    return re.sub(r'"time": "[^"]*"', '"time": "T"', text)


@pytest.mark.parametrize("args", [[], ["--help"], ["netns", "-bogus"], ["add", "-pod", "x"],
                                  ["-loglevel", "x", "netns"]])
def test_it_answers_as_the_module_does(exe: Exe, empty_path: str, cache: Path, args: list[str]) -> None:
    module = subprocess.run([sys.executable, str(REPO / "if_inject.py"), *args],
                            capture_output=True, text=True)
    frozen = run([str(exe.path), *args], clean_env(empty_path, cache))
    assert (frozen.code, frozen.out, without_times(frozen.err)) == \
        (module.returncode, module.stdout, without_times(module.stderr))


def test_runs_in_a_chroot_without_python(exe: Exe, bundle: Path, tmp_path: Path) -> None:
    """A root filesystem with glibc, busybox and the executable only (and no /proc)."""
    need_root()
    from exe_image import elf_files, shared_libraries

    root = tmp_path / "rootfs"
    (root / "usr/local/bin").mkdir(parents=True)
    shutil.copy(exe.path, root / "usr/local/bin/if-inject")
    for lib in shared_libraries(elf_files(bundle), bundle):
        (root / lib.parent.relative_to("/")).mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, root / lib.relative_to("/"))
    assert not [p for p in root.rglob("*") if "python" in p.name.lower()]
    for args, out in ((["-version"], exe.version + "\n"), (["--help"], "usage: if-inject")):
        proc = subprocess.run(["/usr/local/bin/if-inject", *args], capture_output=True, text=True,
                              env={"PATH": "/usr/local/bin"}, preexec_fn=lambda: os.chroot(root))
        assert proc.returncode == 0 and proc.stdout.startswith(out), proc.stderr
    assert entries(root / "var/cache/if-inject") == [cache_key(exe.path)]


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
    ("symlink into 0777", "unsafe cache dir {real}: {parent} is writable by group or others"),
    ("relative", "IF_INJECT_EXE_CACHE must be an absolute path: relative/cache"),
])
def test_unsafe_cache_dirs_are_refused(exe: Exe, empty_path: str, tmp_path: Path, setup: str,
                                        message: str) -> None:
    need_root()
    parent = tmp_path / "parent"
    cache = parent / "cache"
    cache.mkdir(parents=True, mode=0o700)
    target, real = str(cache), str(cache)
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
    assert proc.error == message.format(cache=cache, parent=parent, real=real)
    assert entries(cache) == []


def test_a_broken_entry_is_unpacked_again(exe: Exe, empty_path: str, cache: Path) -> None:
    key = cache_key(exe.path)
    assert run([str(exe.path), "-version"], clean_env(empty_path, cache)).code == 0
    (cache / key / "if-inject").unlink()
    again = run([str(exe.path), "-version"], clean_env(empty_path, cache))
    assert (again.code, again.out) == (0, exe.version + "\n")
    assert entries(cache) == [key] and (cache / key / "if-inject").is_file()


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
    output = tmp_path / f"if-inject-{tag}"
    build_exe.write_exe(output, data[:trailer.payload_offset], build_exe.pack(folder), "test", tag)
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
        assert run([str(second), "-version"], clean_env(empty_path, cache)).out == exe.version + "\n"
        assert first.poll() is None
        assert entries(cache) == sorted([cache_key(exe.path), cache_key(second)])  # the first is in use
    finally:
        first.kill()
        first.wait(30)
        server.close()
    connection.close()
    assert run([str(third), "-version"], clean_env(empty_path, cache)).code == 0
    assert entries(cache) == [cache_key(third)]


def test_manifest_runs_it_as_the_lab_test_does() -> None:
    """test/if-inject-pod.yaml asks for what run_tool_pod gives the tool below."""
    text = (REPO / "test" / "if-inject-pod.yaml").read_text()
    for line in ("hostNetwork: true", "hostPID: true", "privileged: true",
                 "mountPath: /run/containerd/containerd.sock", "mountPath: /opt/cni/bin",
                 "mountPath: /var/lib/cni", "mountPath: /run/netns", "mountPath: /var/run/netns"):
        assert re.search(rf"^\s*-? ?{re.escape(line)}$", text, re.MULTILINE), line
    assert text.count("mountPropagation: HostToContainer") == 2


# ---- on the lab ----------------------------------------------------------------------

@pytest.fixture
def restore_ip_forward() -> Iterator[None]:
    path = Path("/proc/sys/net/ipv4/ip_forward")
    before = path.read_text()
    yield
    path.write_text(before)


def ptp_spec(tmp_path: Path, plugin: str = "ptp") -> Path:
    conf = json.loads((REPO / "test" / "ptp.json").read_text())
    conf["type"] = plugin
    conf["ipam"]["dataDir"] = str(tmp_path / "ipam")
    path = tmp_path / "ptp.json"
    path.write_text(json.dumps(conf))
    return path


def leases(tmp_path: Path) -> list[str]:
    d = tmp_path / "ipam" / "mynet"
    return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.exists() else []


def pod_addrs(lab: Any, pod: Any) -> str:
    code, out, _ = lab.exec(pod, ["ip", "-o", "addr", "show", "dev", "net1"])
    return out if code == 0 else ""


def test_netns_add_del_on_the_node_in_a_clean_environment(exe: Exe, lab: Any, pod: Any, empty_path: str,
                                                        cache: Path, tmp_path: Path,
                                                        restore_ip_forward: None) -> None:
    # A plugin that records the environment it gets, then is ptp.
    plugins = tmp_path / "bin"
    plugins.mkdir()
    (plugins / "envptp").write_text(f"#!/bin/sh\n/usr/bin/env > {tmp_path}/env.$CNI_COMMAND\n"
                                    "exec /usr/lib/cni/ptp\n")
    (plugins / "envptp").chmod(0o755)
    spec = ptp_spec(tmp_path, "envptp")
    base = [str(exe.path), "-r", lab.endpoint, "-cache-dir", str(tmp_path / "results"),
            "-cni-path", f"{plugins}:/usr/lib/cni"]
    pod_args = ["-ns", pod.namespace, "-pod", pod.name]
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
    assert os.listdir(tmp_path / "results") == []

    # Plugins get the user's environment, not the bundle's library path or PyInstaller's variables.
    for command, library_path in (("ADD", "/opt/mine"), ("DEL", None)):
        seen = dict(line.split("=", 1) for line in (tmp_path / f"env.{command}").read_text().splitlines())
        assert seen.get("LD_LIBRARY_PATH") == library_path
        assert seen["PATH"] == empty_path and seen["CNI_COMMAND"] == command
        assert not [k for k in seen if k.startswith(("_PYI", "PYTHON", "LD_LIBRARY_PATH_ORIG"))]


@pytest.mark.runtimes("containerd-2.1")  # the runtime clusters run
def test_in_a_pod_it_injects_into_another_pod(exe: Exe, bundle: Path, lab: Any, pod: Any,
                                              tmp_path: Path, restore_ip_forward: None) -> None:
    """The executable in an image without Python, in a pod like test/if-inject-pod.yaml."""
    from exe_image import IN_IMAGE, exe_image, import_image, mount, run_tool_pod

    import_image(lab, exe_image(lab.cache, exe.path, bundle))
    netns_dir = str(Path(str(pod.netns)).parent)
    # The lab's runtime keeps netns mounts in its state dir; this machine's / is
    # not a shared mount, so containerd refuses HostToContainer here: the pod to
    # change exists first, and its netns mount is copied in (rbind).
    tool = run_tool_pod(lab, [
        mount(lab.socket), mount("/usr/lib/cni", "/opt/cni/bin", readonly=True),
        mount(netns_dir), mount(str(tmp_path)),
    ])
    try:
        def in_pod(*args: str) -> Run:
            code, out, err = lab.exec(tool, [IN_IMAGE, *args], timeout=30)
            return Run(code, out, err)

        assert in_pod("-version").out == exe.version + "\n"
        assert lab.exec(tool, ["ls", "/var/cache/if-inject"])[1].split() == [cache_key(exe.path)]
        base = ["-r", f"unix://{lab.socket}", "-cache-dir", str(tmp_path / "results")]
        pod_args = ["-ns", pod.namespace, "-pod", pod.name]
        netns = in_pod(*base, "netns", *pod_args)
        assert (netns.code, netns.out, netns.err) == (0, pod.netns + "\n", "")
        spec = ptp_spec(tmp_path)
        add = in_pod(*base, "add", *pod_args, "-spec", str(spec))  # plugins from /opt/cni/bin
        assert (add.code, add.err) == (0, "")
        address = json.loads(add.out)["ips"][0]["address"]
        assert f"inet {address}" in pod_addrs(lab, pod)
        delete = in_pod(*base, "del", *pod_args, "-spec", str(spec))
        assert (delete.code, delete.err) == (0, "")
        assert pod_addrs(lab, pod) == "" and leases(tmp_path) == []
    finally:
        lab.remove_pod(tool)
