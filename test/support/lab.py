"""A real Kubernetes-node runtime for the tests: containerd + CRI + runc + CNI.

    lab = Lab("/tmp/if-inject-lab", runtime="containerd-2.1")
    lab.up()                                  # install, build images, start containerd
    pod = lab.run_pod("if-inject", "alpine-0", labels={"app": "alpine"})
    lab.exec(pod, ["ip", "-o", "addr", "show", "eth0"])
    lab.down()                                # the machine is as before up()

or as a script, from test/: `python3 -m support.lab up|down|clean ROOT [RUNTIME]`.

RUNTIMES are containerd 1.6 (the host's Debian package, run on the host),
containerd 1.7 and 2.1, run from Debian trixie and sid roots (support/debroot.py
builds and caches them), and cri-o 1.36.3 (static binaries from IF_INJECT_CRIO_DIR,
see crio_dir()) from the sid root, in mount, network and PID namespaces of their own: the
root is an overlay whose writable layer is in ROOT (the cached root stays
untouched), ROOT and the host's /tmp are seen at their own paths inside, and
the pods' netns are mounted in the host's /run/netns, as on a node.
LAB.md (beside this file) records how and why.

Everything the lab owns lives under ROOT, and every name it puts on the host is
derived from ROOT (socket, bridge, CNI network, cgroup parent, pod subnet), so
two labs with different roots run side by side. LAB.md records why the
containerd configuration looks the way it does, and the pitfalls it works around.

containerd 1.6 also writes outside its directories whatever the config says:
shim sockets in /run/containerd/s, libcni's cache in /var/lib/cni/results,
cgroup dirs, the bridge, ip_forward (the ptp plugin). clean() removes exactly
those of this lab, also after a crashed run; down() is clean() on a live lab.

Standard library + grpc + cri_schema only.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import glob
import hashlib
import io
import json
import os
import platform
import re
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support import CNI_BIN, cri_schema
from support.cri_schema import CONTAINER, NODE, POD, M

SUPPORT_DIR = Path(__file__).resolve().parent
PAUSE_IMAGE = "localhost/if-inject/pause:1"
BUSYBOX_IMAGE = "localhost/if-inject/busybox:1"
CRI_NAMESPACE = "k8s.io"  # the containerd namespace the CRI plugin uses
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
CNI_RESULTS = Path("/var/lib/cni/results")
SHIM_SOCKETS = Path("/run/containerd/s")
# Directories containerd and libcni create on the host whatever the config says,
# with their modes. A lab creates the missing ones itself and marks them with
# an xattr, so that whichever lab goes down last removes them, even when labs
# of concurrent test sessions overlap.
OUTSIDE_DIRS = {"/run/containerd": 0o600, "/run/containerd/s": 0o600,
                "/var/lib/cni": 0o700, "/var/lib/cni/results": 0o700}
MARK = "trusted.if-inject-lab"
# What the lab creates in ROOT; clean() removes only these names, so a wrong
# ROOT (say $HOME) loses nothing else. cache/ and containerd.log are kept.
OWNED = ["root", "state", "runc", "tmp", "opt", "net.d", "ipam", "pods", "config.toml",
         "containerd.sock", "containerd.sock.ttrpc", "containerd.pid", "lab.json",
         "chroot", "chroot.upper", "chroot.work", "holder.pid", "holder.ready",
         "cni", "crio", "crio.conf", "crio.sock"]

RUNTIMES = ("containerd-1.6", "containerd-1.7", "containerd-2.1", "cri-o")
DEFAULT_RUNTIME = "containerd-1.6"
CRIO = "cri-o"
# The runtimes run from a Debian root: runtime -> suite. containerd 2.1 and
# cri-o share the sid root: one package list per suite, so each suite has one
# cached root (debroot's key is the sorted list).
ROOT_SUITES = {"containerd-1.7": "trixie", "containerd-2.1": "sid", CRIO: "sid"}
ROOT_PACKAGES = ("busybox-static", "containerd", "containernetworking-plugins", "iproute2", "runc")
# What cri-o needs beside its static crio and pinns: conmon, and iptables (it
# refuses to start without, for HostPort handling); skopeo loads the images.
SUITE_PACKAGES = {"trixie": ROOT_PACKAGES, "sid": (*ROOT_PACKAGES, "conmon", "iptables", "skopeo")}
# cri-o is packaged by no Debian suite: the lab takes static builds of it from
# here (crio and pinns), by default ../shared/crio beside the repository.
CRIO_DIR_VARIABLE = "IF_INJECT_CRIO_DIR"
CRIO_BINARIES = ("crio", "pinns")
# Where a node's runtime mounts pod netns (the runtimes in a root do too).
NETNS_DIR = "/run/netns"
MARK_MOUNT = "trusted.if-inject-lab-mount"  # on NETNS_DIR: a lab made it a mount point

# Debian packages providing what the lab runs: (file or command, package).
REQUIREMENTS = [
    ("containerd", "containerd"), ("ctr", "containerd"), ("runc", "runc"),
    (f"{CNI_BIN}/bridge", "containernetworking-plugins"), ("ip", "iproute2"),
    ("gcc", "gcc"), ("/usr/include/signal.h", "libc6-dev"),
]
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What runc 1.1's init says when the kernel refuses to seal its copy of runc (a memfd,
# F_SEAL_WRITE: EBUSY), before it has touched the container: see Lab.exec and LAB.md.
RUNC_SEAL_BUSY = "could not ensure we are a cloned binary: Device or resource busy"



# ---- small host helpers -----------------------------------------------------

def log(msg: str) -> None:
    print(f"lab: {msg}", file=sys.stderr, flush=True)


def crio_dir() -> Path:
    """Where the lab takes crio and pinns from: $IF_INJECT_CRIO_DIR, else
    ../shared/crio beside the repository (as on the team's machines and in CI)."""
    default = SUPPORT_DIR.parent.parent.parent / "shared" / "crio"
    return Path(os.environ.get(CRIO_DIR_VARIABLE) or default)


def crio_missing() -> str | None:
    """Why the cri-o lab cannot run here, in one line; None when it can."""
    directory = crio_dir()
    missing = [name for name in CRIO_BINARIES if not os.access(directory / name, os.X_OK)]
    if not missing:
        return None
    return (f"no {' and '.join(missing)} in {directory}: the cri-o lab needs static crio and pinns "
            f"1.36.3 there, or {CRIO_DIR_VARIABLE} set to their directory")


def run(argv: list[str], check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output; a failure raises with its stderr."""
    proc = subprocess.run(argv, capture_output=True, text=True, env=_env(), **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def _env() -> dict[str, str]:
    # runc lives in /usr/sbin; a CI shell's PATH may lack it.
    return dict(os.environ, PATH=os.environ.get("PATH", "") + ":" + SBIN_PATH)


def which(name: str) -> str | None:
    if name.startswith("/"):
        return name if os.path.exists(name) else None
    return shutil.which(name, path=_env()["PATH"])


def is_static_elf(path: str) -> bool:
    """True if `path` is an ELF executable without an interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only, which is all we run on
            return False
        phoff = int.from_bytes(head[32:40], "little")
        phentsize = int.from_bytes(head[54:56], "little")
        phnum = int.from_bytes(head[56:58], "little")
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    types = (int.from_bytes(table[i:i + 4], "little") for i in range(0, len(table), phentsize))
    return 3 not in types


MACHINE_LOCK_FD = "IF_INJECT_MACHINE_LOCK_FD"  # see lock_machine


def lock_machine() -> int:
    """Wait for, and take, the machine-wide lock of tests and demos; returns its fd.

    They change host state (links, ip_forward, /var/lib/cni) and compare it
    before and after, so two at once would see each other. An flock on a
    directory that always exists leaves no lock file; it ends with the process.
    A holder that runs another user of the lock (a test running `make demo`)
    hands it its fd (pass_fds, the number in IF_INJECT_MACHINE_LOCK_FD): an
    flock through the same open directory is the same lock, held already.
    """
    lock_dir = _lock_dir()
    fd = _handed_lock(lock_dir)
    if fd < 0:
        fd = os.open(lock_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log("waiting for another if-inject test session or demo on this machine...")
        fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def machine_lock_lost(fd: int) -> str:
    """Why `fd` (lock_machine's) no longer holds the machine lock, or "".

    A new open of the lock dir is another open file description: its flock
    must find the lock taken, and by us (our own flock through `fd` is then
    a no-op that succeeds at once)."""
    lock_dir = _lock_dir()
    try:
        if not os.path.samestat(os.fstat(fd), os.stat(lock_dir)):
            return f"fd {fd} is no longer {lock_dir}"
    except OSError as e:
        return f"fd {fd}: {e.strerror}"
    probe = os.open(lock_dir, os.O_RDONLY)
    try:
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return f"nobody held {lock_dir}'s lock"  # closing the probe lets it go again
    except BlockingIOError:
        pass
    finally:
        os.close(probe)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return f"another process holds {lock_dir}'s lock"
    return ""


def _lock_dir() -> str:
    return "/run/lock" if os.path.isdir("/run/lock") else "/tmp"


def _handed_lock(lock_dir: str) -> int:
    """The fd of lock_dir that the process running us handed down (see lock_machine), or -1."""
    number = os.environ.get(MACHINE_LOCK_FD, "")
    with contextlib.suppress(OSError):
        if number.isdigit() and os.path.samestat(os.fstat(int(number)), os.stat(lock_dir)):
            return int(number)
    return -1


def install_missing(requirements: list[tuple[str, str]] = REQUIREMENTS) -> None:
    """apt-get install what is needed and missing: [(file or command, Debian package)]."""
    missing = {pkg for what, pkg in requirements if which(what) is None}
    busybox = which("busybox")
    if requirements is REQUIREMENTS and (busybox is None or not is_static_elf(busybox)):
        missing.add("busybox-static")  # the image has no libc
    if not missing:
        return
    log(f"installing {' '.join(sorted(missing))}")
    env = dict(_env(), DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *sorted(missing)],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def proc_alive(pid: int) -> bool:
    """A process that exists and is not a zombie (PID 1 reaps orphans lazily here)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def proc_cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def children_of(pid: int) -> list[int]:
    """The children of process `pid` (its main thread's); none when it is gone."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@contextlib.contextmanager
def pinned(pid: int, ours: Callable[[int], bool]) -> Iterator[int | None]:
    """A pidfd of `pid` when, once it is open, `ours(pid)` accepts the process;
    None when it is gone or not ours. The PID of a process that ended can name
    a new one (PIDs wrap every few minutes here): pinned first and checked
    after, a reused PID fails the check, and a signal through the pidfd never
    reaches a process that took the PID later."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        yield None
        return
    try:
        yield fd if ours(pid) else None
    finally:
        os.close(fd)


@contextlib.contextmanager
def ip_forward_restored() -> Iterator[None]:
    """net.ipv4.ip_forward put back as it was before the block, if it changed:
    the ptp plugin sets it on every ADD (failed ones too), and neither libcni
    nor the tool puts it back (the tests' autouse fixture, the bench, measure_exe)."""
    before = IP_FORWARD.read_text()
    try:
        yield
    finally:
        if IP_FORWARD.read_text() != before:
            IP_FORWARD.write_text(before)


STOP = ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0))  # (signal, how long to wait after it)
KILL = ((signal.SIGKILL, 5.0),)


def stop_ours(pid: int, ours: Callable[[int], bool], signals: Iterable[tuple[int, float]] = STOP) -> bool:
    """Send `pid` each signal in turn, if it is the process `ours` accepts,
    until it ends within that signal's wait; whether it is gone (or was no
    longer ours). An ended process counts as gone while still a zombie."""
    with pinned(pid, ours) as fd:
        if fd is None:
            return True
        for signum, wait in signals:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(fd, signum)
            if select.select([fd], [], [], wait)[0]:  # a pidfd is readable once its process ended
                return True
        return False


def mounts_under(root: str) -> list[str]:
    """Mount points at or below `root`, deepest first."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
        if point == root or point.startswith(root + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def unmount(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(path.encode(), 0) != 0:
        libc.umount2(path.encode(), 2)  # MNT_DETACH: still busy, detach it lazily


# What the kernel logs when it, not the process, ends a process: a crash (unhandled
# SIGSEGV, SIGBUS, a trap) or the OOM killer. A signal another process sends logs nothing.
KERNEL_DEATHS = re.compile(r"segfault|traps:|general protection|Out of memory|oom-kill|Killed process")


def kernel_log_end() -> int | None:
    """/dev/kmsg opened at its end, to read what the kernel logs from now on; None where
    it cannot be read. The caller closes it."""
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return None
    os.lseek(fd, 0, os.SEEK_END)
    return fd


def kernel_records(fd: int) -> list[str]:
    """The records ("prio,seq,usec,flags;text") logged since `fd` was last read or opened."""
    records = []
    while True:
        try:
            records.append(os.read(fd, 8192).decode(errors="replace"))
        except BrokenPipeError:  # the next record was overwritten meanwhile: go on after it
            continue
        except BlockingIOError:
            return records


def kernel_deaths(records: Iterable[str]) -> list[str]:
    """Of the records, the ones telling of a process the kernel ended, as "[seconds] text"."""
    found = []
    for record in records:
        head, _, text = record.partition(";")
        line = text.split("\n", 1)[0]  # continuation lines carry key=value pairs only
        if KERNEL_DEATHS.search(line):
            stamp = head.split(",")[2:3]
            found.append(f"[{int(stamp[0]) / 1e6:.6f}] {line}" if stamp and stamp[0].isdigit() else line)
    return found


# ---- images ------------------------------------------------------------------

def tar_entry(name: str, data: bytes | None = None, mode: int = 0o755,
               link: str = "") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.uname, info.gname = mode, 0, "root", "root"
    if link:
        info.type, info.linkname = tarfile.SYMTYPE, link
    elif data is None:
        info.type = tarfile.DIRTYPE
    else:
        info.size = len(data)
    return info, data


def tar_archive(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """The tests' one tar writer: an uncompressed PAX tar of tar_entry()s, in memory."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def oci_archive(name: str, layer: bytes, config: dict[str, Any]) -> bytes:
    """An OCI image-layout tar with one uncompressed layer, named `name` for containerd."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    layer_digest = hashlib.sha256(layer).hexdigest()  # uncompressed: digest == diff_id
    image_config = json.dumps({
        "architecture": arch, "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_digest}"]},
    }, sort_keys=True).encode()

    def descriptor(media: str, blob: bytes) -> dict[str, Any]:
        return {"mediaType": media, "digest": f"sha256:{hashlib.sha256(blob).hexdigest()}",
                "size": len(blob)}

    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", image_config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
    }, sort_keys=True).encode()
    # A fully qualified name: containerd does not resolve one without a registry host.
    entry = descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
    entry["annotations"] = {"io.containerd.image.name": name,
                            "org.opencontainers.image.ref.name": name.rpartition(":")[2]}
    index = json.dumps({"schemaVersion": 2, "manifests": [entry]}).encode()
    blobs = [tar_entry(f"blobs/sha256/{hashlib.sha256(b).hexdigest()}", b, 0o644)
             for b in (layer, image_config, manifest)]
    return tar_archive([tar_entry("blobs", None), tar_entry("blobs/sha256", None), *blobs,
                 tar_entry("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644),
                 tar_entry("index.json", index, 0o644)])


def _cached(cache: Path, key: str, build: Callable[[], bytes]) -> Path:
    """cache/<key>, built by build() once; written atomically so a crash leaves no half file."""
    path = cache / key
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(build())
        tmp.rename(path)
    return path


def pause_image(cache: Path) -> Path:
    source = (SUPPORT_DIR / "pause.c").read_bytes()

    def build() -> bytes:
        binary = cache / f"pause.{os.getpid()}"
        run(["gcc", "-static", "-Os", "-s", "-o", str(binary), str(SUPPORT_DIR / "pause.c")])
        try:
            layer = tar_archive([tar_entry("pause", binary.read_bytes())])
        finally:
            binary.unlink()
        return oci_archive(PAUSE_IMAGE, layer, {"Entrypoint": ["/pause"]})

    return _cached(cache, f"pause-{hashlib.sha256(source).hexdigest()[:16]}.tar", build)


def busybox_image(cache: Path) -> Path:
    busybox = Path(which("busybox") or "/bin/busybox").resolve()
    binary = busybox.read_bytes()

    def build() -> bytes:
        applets = run([str(busybox), "--list"]).stdout.split()
        entries = [tar_entry(d, None) for d in ("bin", "dev", "etc", "proc", "root", "sys", "var")]
        entries.append(tar_entry("tmp", None, 0o1777))
        entries.append(tar_entry("bin/busybox", binary))
        entries += [tar_entry(f"bin/{a}", link="busybox") for a in applets if a != "busybox"]
        entries.append(tar_entry("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644))
        entries.append(tar_entry("etc/group", b"root:x:0:\n", 0o644))
        layer = tar_archive(entries)
        return oci_archive(BUSYBOX_IMAGE, layer, {"Cmd": ["sh"], "Env": ["PATH=/bin"]})

    return _cached(cache, f"busybox-{hashlib.sha256(binary).hexdigest()[:16]}.tar", build)


# ---- the namespaces of a runtime from a Debian root ----------------------------

# Run by HOLDER_INIT in the new namespaces: $1 the cached root, $2 ROOT, $3 /run/netns.
# Every shared mount but /run/netns is made private (nothing mounted here reaches the
# host; the pods' netns do), and /run/netns too once the root's own copy is bound: the
# old root's lazy unmount after pivot_root would otherwise propagate to its peers and
# unmount every other lab's pod netns on the host (LAB.md). The root is an overlay whose
# writable layer is in ROOT; proc, sysfs, the host's cgroups and /dev, a private /run,
# and ROOT and the host's /tmp at their own paths are mounted in it. The runtime's libcni
# cache (/var/lib/cni) is ROOT/cni, so the tool on the host can share it as it shares a node's.
HOLDER_SETUP = r"""set -e
lower=$1 root=$2 netns=$3 m=$2/chroot
findmnt -rn -o TARGET,PROPAGATION | while read -r target propagation; do
  case $propagation in *shared*) [ "$target" = "$netns" ] || mount --make-private "$target" ||
    ! findmnt -rn --mountpoint "$target" >/dev/null;; esac  # (another lab's pod netns, just gone)
done
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$root/chroot.upper,workdir=$root/chroot.work" "$m"
mount -t proc proc "$m/proc"
mount -t sysfs sysfs "$m/sys"
mount --rbind /sys/fs/cgroup "$m/sys/fs/cgroup"
mount --rbind /dev "$m/dev"
mount -t tmpfs -o mode=755 tmpfs "$m/run"
mkdir "$m/run/netns"
mount --rbind "$netns" "$m/run/netns"
mount --make-rprivate "$netns"
mount --bind /tmp "$m/tmp"
mkdir -p "$m$root"
mount --bind "$root" "$m$root"
mkdir -p "$root/cni" "$m/var/lib/cni"
mount --bind "$root/cni" "$m/var/lib/cni"
ip link set lo up
"""

# PID 1 of the namespaces: runs HOLDER_SETUP, makes the root the namespace's own root
# (pivot_root, not chroot: runc's pivot into a container's rootfs, and every exec
# into a container, need the root to be the mount namespace's root), then only reaps,
# so that shims outlive a restarted containerd as on a node. All dies with it.
HOLDER_INIT = r"""
import ctypes, os, platform, subprocess, sys, time
setup, lower, root = sys.argv[1:4]
subprocess.run(["sh", "-c", setup, "setup", *sys.argv[2:]], check=True)
libc = ctypes.CDLL(None, use_errno=True)
os.chdir(root + "/chroot")
nr = {"x86_64": 155, "aarch64": 41}[platform.machine()]
if libc.syscall(nr, b".", b".") != 0 or libc.umount2(b".", 2) != 0:
    sys.exit("pivot_root: " + os.strerror(ctypes.get_errno()))
os.chdir("/")
open(root + "/holder.ready", "w").close()
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.1)
"""


# ---- pods --------------------------------------------------------------------

@dataclass
class Pod:
    """A pod sandbox made by the lab (one attempt of it), as kubelet would see it."""

    namespace: str
    name: str
    uid: str
    sandbox_id: str
    container_id: str | None
    netns: str | None  # None for hostNetwork pods: containerd gives no path
    attempt: int = 0
    host_network: bool = False
    labels: dict[str, str] = field(default_factory=dict)


def _toml_string(path: Path | str) -> str:
    """A TOML basic string for the configs (JSON's escaping is compatible)."""
    return json.dumps(str(path))


class Lab:
    """A private containerd with its CRI plugin, CNI and images, all under `root`.

    `runtime` is one of RUNTIMES: containerd 1.6 runs on the host as it is
    installed; 1.7 and 2.1 run from a Debian root in namespaces of their own.
    """

    def __init__(self, root: str, runtime: str = DEFAULT_RUNTIME) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}: one of {', '.join(RUNTIMES)}")
        self.runtime = runtime
        self.crio = runtime == CRIO
        self.suite = ROOT_SUITES.get(runtime)  # None: the host's containerd
        self.root = Path(os.path.realpath(root))
        if len(f"{self.root}/containerd.sock.ttrpc") >= 108:  # sun_path of a unix socket
            raise ValueError(f"lab root too long for a unix socket path: {self.root}")
        # Every name the lab puts on the host derives from its root, so labs
        # with different roots never share a bridge, network, cgroup or subnet.
        digest = hashlib.sha256(str(self.root).encode()).digest()
        tag = digest[:4].hex()
        self.network = f"if-inject-lab-{tag}"
        self.bridge = f"ifilab{tag}"
        self.cgroup_parent = f"/if-inject-lab-{tag}"
        self.subnet = f"10.{200 + digest[4] % 50}.{digest[5]}.0/24"
        self.cache = self.root / "cache"
        self.config_path = self.root / ("crio.conf" if self.crio else "config.toml")
        self._proc: subprocess.Popen[bytes] | None = None  # what started containerd
        self._holder: subprocess.Popen[bytes] | None = None  # the namespaces of a root's runtime
        self._channel: Any = None
        self._sandbox_configs: dict[str, Any] = {}  # CreateContainer needs the pod's config again

    @property
    def socket(self) -> str:
        return str(self.root / ("crio.sock" if self.crio else "containerd.sock"))

    @property
    def cni_cache(self) -> str:
        """The runtime's libcni cache dir, as the host sees it (-cache-dir for the tool)."""
        return str(self.root / "cni") if self.suite else "/var/lib/cni"

    @property
    def conf_dir(self) -> Path:
        """The runtime's CNI conf dir (the same path inside and outside its root)."""
        return self.root / "net.d"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    @property
    def channel(self) -> Any:
        if self._channel is None:
            import grpc

            self._channel = grpc.insecure_channel(self.endpoint)
        return self._channel

    def cri(self, method: str, request: Any = None, timeout: float = 30) -> Any:
        """A raw CRI call on this lab's containerd (see cri_schema.call)."""
        return cri_schema.call(self.channel, method, request, timeout)

    # ---- life cycle ----------------------------------------------------------

    def up(self) -> None:
        """Make the lab ready for run_pod(), cleaning up after a crashed run first."""
        if os.geteuid() != 0:
            raise PermissionError("the lab needs root (containerd, runc, CNI)")
        install_missing()
        self.clean()
        self.root.mkdir(parents=True, exist_ok=True)
        self._record_host()
        try:
            images = [pause_image(self.cache), busybox_image(self.cache)]
            if self.crio:  # cri-o cannot pull: its pause image must be there when it starts
                self._crio_files()
                for image in images:
                    self.import_image(image)
            self._start_containerd()
            for image in images if not self.crio else []:
                self.import_image(image)
            self._wait_network_ready()
        except BaseException:
            self.down()
            raise

    def down(self) -> None:
        """Remove every pod, stop containerd, and undo what it did to the host."""
        self.clean()

    def import_image(self, archive: Path) -> None:
        """Import an OCI archive with the runtime's own ctr (ROOT and /tmp are seen alike),
        or for cri-o with skopeo, into its containers-storage (running or not)."""
        if not self.crio:
            self.ctr("images", "import", "--snapshotter", "overlayfs", str(archive))
            return
        with tarfile.open(archive) as tar:
            index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        name = index["manifests"][0]["annotations"]["io.containerd.image.name"]
        run(self._in_runtime(["skopeo", "--policy", str(self.root / "crio/policy.json"), "copy", "-q",
                              f"oci-archive:{archive}", f"containers-storage:{self._storage_spec}{name}"]))

    @property
    def _storage_spec(self) -> str:
        """cri-o's containers-storage, as skopeo names it: [driver@root+runroot]."""
        return f"[overlay@{self.root}/crio/storage+{self.root}/crio/run]"

    def ctr(self, *args: str) -> str:
        """Run the runtime's own `ctr` on its socket, in the CRI's namespace; its stdout."""
        argv = ["ctr", "--address", self.socket, "-n", CRI_NAMESPACE, *args]
        return run(self._in_runtime(argv) if self.suite else argv).stdout

    def version(self) -> str:
        """The runtime's own Version answer, as `containerd 2.1.9+unknown`."""
        answer = self.cri("Version", {"version": "v1"})
        return f"{answer.runtime_name} {answer.runtime_version}"

    def restart_runtime(self) -> None:
        """Stop containerd and start it again, pods running on (kubelet sees this on upgrades)."""
        pid = self._containerd_pid()
        if pid is not None:
            problems = self._stop_containerd(pid)
            if problems:
                raise RuntimeError("; ".join(problems))
        self._start_containerd()
        self._wait_network_ready()

    def clean(self) -> None:
        """Tear down this root's lab, running or left over by a crash.

        Pods are removed through containerd (restarted for that if it died),
        so CNI DEL releases their leases as kubelet would; then what containerd
        leaves on the host is removed. Raises if something could not be undone.
        """
        problems: list[str] = []
        ids = self._sandbox_ids_on_disk()
        pid = self._containerd_pid()
        if pid is None and ids:
            log(f"restarting containerd to remove the pods left in {self.root}")
            pid = self._start_containerd()
        if pid is not None:
            problems += self._remove_all_pods(ids)
            problems += self._stop_containerd(pid)
        problems += self._stop_holder()
        problems += self._sweep(ids)
        if problems:
            raise RuntimeError("lab clean-up incomplete:\n  " + "\n  ".join(problems))

    # ---- containerd ------------------------------------------------------------

    @property
    def runtime_pid(self) -> int | None:
        """The lab's runtime process (containerd or cri-o) while it runs."""
        return self._containerd_pid()

    def _containerd_pid(self) -> int | None:
        """The PID in our pidfile, if it is still our containerd (PIDs get reused)."""
        return self._our_pid("containerd.pid", lambda argv: argv[1:] == ["--config", str(self.config_path)]
                             and argv[0].endswith(("containerd", "crio")))

    def _our_pid(self, pidfile: str, ours: Callable[[list[str]], bool]) -> int | None:
        """The live PID in ROOT/pidfile whose command line `ours` accepts, else None."""
        try:
            pid = int((self.root / pidfile).read_text())
        except (OSError, ValueError):
            return None
        argv = proc_cmdline(pid)
        return pid if argv and ours(argv) and proc_alive(pid) else None

    def _start_containerd(self) -> int:
        """Start the lab's runtime (containerd or cri-o: the names say containerd); its PID."""
        self._write_config()
        program = str(self.root / "crio/bin/crio") if self.crio else "containerd"
        argv = [program, "--config", str(self.config_path)]
        with open(self.root / "containerd.log", "ab") as logfile:
            # A session of its own: a ^C in the terminal must not kill it
            # before down() has removed the pods.
            self._proc = subprocess.Popen(
                self._in_runtime(argv) if self.suite else argv, stdin=subprocess.DEVNULL,
                stdout=logfile, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
        # In a root, nsenter forks containerd (it enters a PID namespace).
        pid = self._child_of(self._proc) if self.suite else self._proc.pid
        (self.root / "containerd.pid").write_text(str(pid))
        self._wait_cri()
        return pid

    def _wait_cri(self, timeout: float = 20) -> None:
        import grpc

        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"containerd exited with {self._proc.returncode}:\n{self._log_tail()}")
            # Only dial once the socket exists: gRPC backs off for a second
            # after a failed connect.
            if os.path.exists(self.socket):
                try:
                    self.cri("Version", timeout=1)
                    return
                except grpc.RpcError as e:
                    if e.code() == grpc.StatusCode.UNIMPLEMENTED:  # the CRI plugin failed to load
                        raise RuntimeError(f"containerd has no CRI:\n{self._log_tail()}") from e
            if time.monotonic() > deadline:
                raise RuntimeError(f"containerd CRI not answering after {timeout}s:\n{self._log_tail()}")
            time.sleep(0.02)

    def _wait_network_ready(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            conditions = self.cri("Status").status.conditions
            # Only these two: 2.x adds ContainerdHasNoDeprecationWarnings.
            if all(c.status for c in conditions if c.type in ("RuntimeReady", "NetworkReady")):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"runtime not ready: {conditions}")
            time.sleep(0.05)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.root / "containerd.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _stop_containerd(self, pid: int) -> list[str]:
        """SIGTERM (it exits in 0.3-1.2 s), SIGKILL if it hangs; reap what we started."""
        self._close_channel()
        if not stop_ours(pid, lambda p: self._containerd_pid() == p):
            return [f"containerd {pid} does not exit"]
        if self._proc is not None:  # containerd, or the nsenter that forked it
            self._proc.wait()
            self._proc = None
        (self.root / "containerd.pid").unlink(missing_ok=True)
        return []

    def kill_containerd(self) -> None:
        """SIGKILL containerd, as a crash would; its shims and pods live on.
        start_containerd() brings it back on the same state."""
        pid = self._containerd_pid()
        if pid is None:
            raise RuntimeError("containerd is not running")
        self._close_channel()
        if not stop_ours(pid, lambda p: self._containerd_pid() == p, KILL):
            raise RuntimeError(f"containerd {pid} does not die")
        if self._proc is not None and self._proc.pid == pid:
            self._proc.wait()
            self._proc = None
        (self.root / "containerd.pid").unlink(missing_ok=True)
        # Gone with it; _wait_cri dials only once the new one is there.
        Path(self.socket).unlink(missing_ok=True)

    def start_containerd(self) -> None:
        self._start_containerd()

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    @staticmethod
    def _child_of(proc: subprocess.Popen[bytes], timeout: float = 10) -> int:
        """The PID of the one child `proc` forks."""
        deadline = time.monotonic() + timeout
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        while True:
            with contextlib.suppress(OSError, ValueError, IndexError):
                return int(children.read_text().split()[0])
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{proc.args!r}: no child process")
            time.sleep(0.005)

    # ---- a runtime from a Debian root, in namespaces of its own ------------------------

    @property
    def chroot(self) -> Path:
        """Where the root is mounted before it becomes the root of the runtime's mount
        namespace (pivot_root): an overlay, seen in that namespace only."""
        return self.root / "chroot"

    def _in_runtime(self, argv: list[str]) -> list[str]:
        """argv run in the runtime's namespaces, whose root is the Debian root."""
        holder = self._holder_init() or self._start_holder()
        return ["nsenter", "-t", str(holder), "-m", "-n", "-p", "--",
                "env", "-i", f"PATH={SBIN_PATH}", "LANG=C.UTF-8", *argv]

    def _holder_pid(self) -> int | None:
        """The `unshare` holding the namespaces, if it is still ours."""
        return self._our_pid("holder.pid",
                             lambda argv: argv[0].endswith("unshare") and str(self.root) in argv)

    def _holder_init(self) -> int | None:
        """PID 1 of the runtime's PID namespace, as the host sees it, once it is set up."""
        pid = self._holder_pid()
        if pid is None or not (self.root / "holder.ready").exists():
            return None
        children = children_of(pid)
        return children[0] if children else None

    def _start_holder(self) -> int:
        """New mount, network and PID namespaces whose root is the Debian root; their PID 1."""
        assert self.suite is not None
        from support.debroot import debian_root

        lower = debian_root(self.suite, SUITE_PACKAGES[self.suite])
        self._share_netns_dir()
        for d in ("chroot", "chroot.upper", "chroot.work"):
            (self.root / d).mkdir(exist_ok=True)
        (self.root / "holder.ready").unlink(missing_ok=True)
        with open(self.root / "containerd.log", "ab") as logfile:
            self._holder = subprocess.Popen(
                ["unshare", "--mount", "--net", "--pid", "--fork", "--kill-child",
                 "--propagation", "unchanged", "--", sys.executable, "-c", HOLDER_INIT,
                 HOLDER_SETUP, str(lower), str(self.root), NETNS_DIR],
                stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT, env=_env(),
                start_new_session=True)
        (self.root / "holder.pid").write_text(str(self._holder.pid))
        deadline = time.monotonic() + 20
        while (init := self._holder_init()) is None:
            if self._holder.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the runtime's namespaces failed:\n{self._log_tail()}")
            time.sleep(0.01)
        return init

    def _stop_holder(self) -> list[str]:
        """Kill PID 1 of the runtime's namespaces: every process in them dies with it."""
        pid = self._holder_pid()
        if pid is None:
            return []
        for child in children_of(pid):
            stop_ours(child, lambda p: p in children_of(pid), KILL)
        gone = stop_ours(pid, lambda p: self._holder_pid() == p, ((signal.SIGKILL, 10.0),))
        for started in (self._holder, self._proc):  # the nsenter of a containerd never recorded
            if started is not None:
                started.wait()
        self._holder = self._proc = None
        (self.root / "holder.pid").unlink(missing_ok=True)
        (self.root / "holder.ready").unlink(missing_ok=True)
        return [] if gone else [f"namespace holder {pid} does not exit"]

    def _share_netns_dir(self) -> None:
        """Make /run/netns a shared mount, as `ip netns add` does, so that the pod netns the
        runtime mounts in its own mount namespace appear on the host at the same path."""
        if not os.path.isdir(NETNS_DIR):
            os.mkdir(NETNS_DIR, 0o755)
            _mark(NETNS_DIR, MARK)
        if NETNS_DIR not in mounts_under(NETNS_DIR):
            run(["mount", "--bind", NETNS_DIR, NETNS_DIR])
            _mark(NETNS_DIR, MARK_MOUNT)
        run(["mount", "--make-shared", NETNS_DIR])

    def _unshare_netns_dir(self) -> None:
        """Undo _share_netns_dir() once no lab's pod uses /run/netns any more."""
        if not os.path.isdir(NETNS_DIR) or os.listdir(NETNS_DIR):
            return
        if _marked(NETNS_DIR, MARK_MOUNT):
            with contextlib.suppress(OSError):
                os.removexattr(NETNS_DIR, MARK_MOUNT)
            while NETNS_DIR in mounts_under(NETNS_DIR):
                unmount(NETNS_DIR)
        if _marked(NETNS_DIR, MARK):
            with contextlib.suppress(OSError):
                os.rmdir(NETNS_DIR)

    # ---- configuration -----------------------------------------------------------

    def _write_config(self) -> None:
        for d in ("root", "state", "runc", "tmp", "opt", "net.d", "ipam", "pods"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        if self.crio:
            self._crio_files()
        conflist = {
            "cniVersion": "1.0.0", "name": self.network,
            "plugins": [{
                # No gateway, no masquerade: the pods' eth0 needs no host route
                # and no iptables rule, so nothing of it outlives the bridge.
                "type": "bridge", "bridge": self.bridge, "isGateway": False, "ipMasq": False,
                "ipam": {"type": "host-local", "dataDir": str(self.root / "ipam"),
                         "ranges": [[{"subnet": self.subnet}]]},
            }],
        }
        (self.root / "net.d/10-lab.conflist").write_text(json.dumps(conflist, indent=2) + "\n")
        self.config_path.write_text(self._crio_conf() if self.crio else self._containerd_toml())

    def _crio_files(self) -> None:
        """cri-o's binaries (copied: the source dir is not seen in its root) and image policy."""
        missing = crio_missing()
        if missing:
            raise RuntimeError(missing)
        (self.root / "crio/bin").mkdir(parents=True, exist_ok=True)
        for name in CRIO_BINARIES:
            if not (self.root / "crio/bin" / name).exists():
                shutil.copy2(crio_dir() / name, self.root / "crio/bin" / name)
        # Only the lab's own archives are ever loaded (nothing is pulled).
        (self.root / "crio/policy.json").write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')

    def _crio_conf(self) -> str:
        """cri-o's configuration: every path in ROOT (seen at the same path in its root)."""
        c = self.root / "crio"
        return f"""\
# Written by test/support/lab.py for the cri-o lab in {self.root}; see test/support/LAB.md.
[crio]
root = {_toml_string(c / "storage")}
# On ROOT's disk, not the root's /run: a lab whose namespaces died (a crash) and
# a restarted cri-o find their sandboxes again, to remove them (no reboot wipe).
runroot = {_toml_string(c / "run")}
storage_driver = "overlay"
log_dir = {_toml_string(c / "log")}
version_file = {_toml_string(c / "version")}
version_file_persist = {_toml_string(c / "version-persist")}
clean_shutdown_file = {_toml_string(c / "clean.shutdown")}

[crio.api]
listen = {_toml_string(self.socket)}
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
cgroup_manager = "cgroupfs"
conmon_cgroup = "pod"
default_runtime = "runc"
pinns_path = {_toml_string(c / "bin/pinns")}
container_exits_dir = {_toml_string(c / "run/exits")}
container_attach_socket_dir = {_toml_string(c / "run/attach")}

[crio.runtime.runtimes.runc]
runtime_path = "/usr/bin/runc"
runtime_type = "oci"
runtime_root = {_toml_string(self.root / "runc")}
monitor_path = "/usr/bin/conmon"

[crio.image]
pause_image = {_toml_string(PAUSE_IMAGE)}
pause_command = "/pause"
signature_policy = {_toml_string(c / "policy.json")}

[crio.network]
network_dir = {_toml_string(self.conf_dir)}
plugin_dirs = [{_toml_string(CNI_BIN)}]

[crio.nri]
enable_nri = false
"""

    def _toml_head(self, version: int, unused_snapshotters: list[str]) -> str:
        """What both config versions start with: our dirs, and the snapshotters this machine lacks off."""
        r = self.root
        disabled = ", ".join(f'"io.containerd.snapshotter.v1.{name}"' for name in unused_snapshotters)
        return f"""\
# Written by test/support/lab.py for the {self.runtime} lab in {r}; see test/support/LAB.md.
version = {version}
root = {_toml_string(r / "root")}
state = {_toml_string(r / "state")}
temp = {_toml_string(r / "tmp")}
disabled_plugins = [{disabled}]
"""

    def _containerd_toml(self) -> str:
        if self.runtime == "containerd-2.1":
            return self._containerd_v3_toml()
        r = self.root

        cri = '[plugins."io.containerd.grpc.v1.cri"'
        # 1.6 on the host keeps netns mounts in our state dir; 1.7 in its root
        # mounts them in /var/run/netns, which is the host's (see _start_holder).
        netns = ("# Keep netns bind mounts in our state dir, not in /var/run/netns.\n"
                 "  netns_mounts_under_state_dir = true" if self.suite is None else
                 "# Pod netns in /var/run/netns/cni-<uuid>, as on a node.")
        return self._toml_head(2, ["aufs", "btrfs", "devmapper", "zfs"]) + f"""\

[grpc]
  address = {_toml_string(self.socket)}

[plugins."io.containerd.internal.v1.opt"]
  path = {_toml_string(r / "opt")}

{cri}]
  sandbox_image = {_toml_string(PAUSE_IMAGE)}
  # Without CAP_SYS_RESOURCE runc cannot set the sandbox's oom_score_adj -998.
  restrict_oom_score_adj = true
  {netns}
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = {_toml_string(r / "runc")}

{cri}.cni]
  bin_dir = {_toml_string(CNI_BIN)}
  conf_dir = {_toml_string(r / "net.d")}
  max_conf_num = 1
"""

    def _containerd_v3_toml(self) -> str:
        """containerd 2.x's configuration (version 3: the CRI split into images and runtime)."""
        r = self.root

        images, rt = "[plugins.'io.containerd.cri.v1.images'", "[plugins.'io.containerd.cri.v1.runtime'"
        return self._toml_head(3, ["btrfs", "devmapper", "zfs"]) + f"""\

[grpc]
  address = {_toml_string(self.socket)}

[ttrpc]
  address = {_toml_string(self.socket + ".ttrpc")}

[plugins.'io.containerd.internal.v1.opt']
  path = {_toml_string(r / "opt")}

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

{images}]
  snapshotter = "overlayfs"

{images}.pinned_images]
  sandbox = {_toml_string(PAUSE_IMAGE)}

{rt}]
  # Without CAP_SYS_RESOURCE runc cannot set the sandbox's oom_score_adj -998.
  restrict_oom_score_adj = true

{rt}.containerd]
  default_runtime_name = "runc"

{rt}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
  # "shim" needs a shim with the sandbox API; the packaged runc shim has none.
  sandboxer = "podsandbox"

{rt}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = {_toml_string(r / "runc")}

{rt}.cni]
  bin_dirs = [{_toml_string(CNI_BIN)}]
  conf_dir = {_toml_string(r / "net.d")}
  max_conf_num = 1
"""

    def _record_host(self) -> None:
        """Note what clean() must restore, in a file so a crashed run can be undone."""
        created = []
        # (A runtime in a root makes none of them, but the tool on the node makes /var/lib/cni's.)
        for d, mode in OUTSIDE_DIRS.items():
            if not os.path.exists(d):
                os.mkdir(d, mode)
                created.append(d)
                # Without xattrs only this lab's record below says it made d.
                with contextlib.suppress(OSError):
                    os.setxattr(d, MARK, b"1")
        facts = {"ip_forward": IP_FORWARD.read_text().strip(), "created_dirs": created,
                 "runtime": self.runtime}
        (self.root / "lab.json").write_text(json.dumps(facts, indent=2) + "\n")

    # ---- pods ------------------------------------------------------------------------

    def run_pod(self, namespace: str, name: str, labels: dict[str, str] | None = None,
                host_network: bool = False, container: bool = True, uid: str | None = None,
                attempt: int = 0) -> Pod:
        """Create a ready pod sandbox the way kubelet does, with a busybox container.

        The container runs `sleep infinity` with NET_ADMIN added, as the original's
        examples/alpine.yaml does (so `ip link set net1 up` works inside the pod).
        `uid` and `attempt` make another sandbox of an existing pod (see restart_pod).
        """
        labels = dict(labels or {})
        uid = uid or str(uuid.uuid4())
        config = self._sandbox_config(namespace, name, uid, attempt, labels, host_network)
        sandbox_id = self.cri("RunPodSandbox", {"config": config}, timeout=60).pod_sandbox_id
        self._sandbox_configs[sandbox_id] = config
        pod = Pod(namespace, name, uid, sandbox_id, None, None, attempt, host_network, labels)
        try:
            pod.netns = netns_path(self.sandbox_info(pod))
            if container:
                pod.container_id = self._start_container(pod)
        except BaseException:
            self.remove_pod(pod)
            raise
        return pod

    def _sandbox_config(self, namespace: str, name: str, uid: str, attempt: int,
                        labels: dict[str, str], host_network: bool) -> Any:
        log_dir = self.root / "pods" / f"{namespace}_{name}_{uid}"
        log_dir.mkdir(parents=True, exist_ok=True)
        return M["PodSandboxConfig"](
            metadata={"name": name, "uid": uid, "namespace": namespace, "attempt": attempt},
            # runc cannot set a hostname without a UTS namespace of the pod's own.
            hostname="" if host_network else name, log_directory=str(log_dir),
            labels={**labels, "io.kubernetes.pod.name": name,
                    "io.kubernetes.pod.namespace": namespace, "io.kubernetes.pod.uid": uid},
            linux={"cgroup_parent": self.cgroup_parent,
                   "security_context": {"namespace_options": namespace_options(host_network)}})

    def _start_container(self, pod: Pod) -> str:
        config = {
            # (name, attempt) is unique per pod uid in containerd: a new sandbox
            # attempt needs a new container attempt, as kubelet's restart count.
            "metadata": {"name": "busybox", "attempt": pod.attempt},
            # kubelet names the image as the pod spec did too; cri-o 1.36 needs that.
            "image": {"image": BUSYBOX_IMAGE, "user_specified_image": BUSYBOX_IMAGE},
            "command": ["sleep", "infinity"], "log_path": "busybox.log",
            "labels": {"io.kubernetes.container.name": "busybox",
                       "io.kubernetes.pod.name": pod.name,
                       "io.kubernetes.pod.namespace": pod.namespace,
                       "io.kubernetes.pod.uid": pod.uid},
            # NET_RAW for ping in the pod: containerd grants it by default, cri-o (1.18+) does not.
            "linux": {"security_context": {"capabilities": {"add_capabilities": ["NET_ADMIN", "NET_RAW"]},
                                           "namespace_options": namespace_options(pod.host_network)}},
        }
        container_id: str = self.cri("CreateContainer", {
            "pod_sandbox_id": pod.sandbox_id, "config": config,
            "sandbox_config": self._sandbox_configs[pod.sandbox_id]}, timeout=60).container_id
        self.cri("StartContainer", {"container_id": container_id}, timeout=60)
        return container_id

    def sandbox_info(self, pod: Pod) -> dict[str, Any]:
        """containerd's verbose sandbox info (pid, runtimeSpec, cniResult, ...)."""
        response = self.cri("PodSandboxStatus", {"pod_sandbox_id": pod.sandbox_id, "verbose": True})
        info: dict[str, Any] = json.loads(response.info["info"])
        return info

    def sandbox_state(self, pod: Pod) -> str:
        """"SANDBOX_READY" or "SANDBOX_NOTREADY"."""
        status = self.cri("PodSandboxStatus", {"pod_sandbox_id": pod.sandbox_id}).status
        names: dict[int, str] = {v: k for k, v in M["PodSandboxState"].items()}
        return names[status.state]

    def exec(self, pod: Pod, argv: list[str], timeout: int = 10) -> tuple[int, str, str]:
        """Run argv in the pod's container: (exit code, stdout, stderr).

        Run again, at most twice, only when runc init died on sealing its own copy
        (RUNC_SEAL_BUSY in runc's log since the call): the kernel can refuse runc
        1.1's seal, and runc init then dies before it has touched the container
        (LAB.md). Any other failure raises with runc's log and the kernel's records."""
        if pod.container_id is None:
            raise ValueError(f"pod {pod.namespace}/{pod.name} has no container")
        import grpc

        for attempt in range(3):
            logged = len(self._runc_log_lines(pod.container_id))
            kmsg = kernel_log_end()
            try:
                response = self.cri("ExecSync", {"container_id": pod.container_id, "cmd": list(argv),
                                                 "timeout": timeout}, timeout=timeout + 10)
                return (response.exit_code, response.stdout.decode(errors="replace"),
                        response.stderr.decode(errors="replace"))
            except grpc.RpcError as e:
                runc_log = self._runc_log_lines(pod.container_id)
                if attempt < 2 and any(RUNC_SEAL_BUSY in line for line in runc_log[logged:]):
                    log(f"ExecSync {argv} in {pod.namespace}/{pod.name}: runc init {RUNC_SEAL_BUSY}; "
                        "running it again")
                    continue
                # containerd's error keeps runc's last error line only: what runc init said
                # before it (its FATAL lines) is in the bundle's log.json, gone with the pod.
                # A runc init that died without a word was crashed or OOM-killed (the kernel
                # says so) or killed by a signal from a process (nothing says so): LAB.md.
                deaths = kernel_deaths(kernel_records(kmsg)) if kmsg is not None else ["(/dev/kmsg unread)"]
                raise RuntimeError(f"ExecSync {argv} in {pod.namespace}/{pod.name}: {e}\n"
                                   "runc's log:\n" + "\n".join(runc_log[-20:])
                                   + "\nthe kernel's crashes and OOM kills meanwhile:\n"
                                   + "\n".join(deaths or ["(none)"])) from e
            finally:
                if kmsg is not None:
                    os.close(kmsg)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _runc_log_lines(self, container_id: str) -> list[str]:
        """The lines of runc's log.json of a container (containerd's bundle), or one
        line saying why it cannot be read."""
        bundle = self.root / "state/io.containerd.runtime.v2.task" / CRI_NAMESPACE / container_id
        log_json = bundle / "log.json"
        try:
            return log_json.read_text(errors="replace").splitlines()
        except OSError as e:
            return [f"({log_json}: {e.strerror})"]

    def stop_pod(self, pod: Pod) -> None:
        """Stop the sandbox (NOTREADY, netns gone) but leave it listed, as a dead pod is.
        Its containers first, at once, as kubelet does: cri-o's StopPodSandbox would
        give `sleep` (deaf to SIGTERM as PID 1) its whole grace period."""
        containers = self.cri("ListContainers", {"filter": {"pod_sandbox_id": pod.sandbox_id}})
        for c in containers.containers:
            self.cri("StopContainer", {"container_id": c.id, "timeout": 0}, timeout=60)
        self.cri("StopPodSandbox", {"pod_sandbox_id": pod.sandbox_id}, timeout=60)

    def restart_pod(self, pod: Pod) -> Pod:
        """Stop `pod` and run its next attempt, as kubelet does when a sandbox dies.

        The stopped sandbox stays listed beside the new ready one.
        """
        self.stop_pod(pod)
        return self.run_pod(pod.namespace, pod.name, pod.labels, pod.host_network,
                            pod.container_id is not None, pod.uid, pod.attempt + 1)

    def remove_pod(self, pod: Pod) -> None:
        """Stop and remove every sandbox of the pod (all attempts), containers first."""
        selector = {"io.kubernetes.pod.uid": pod.uid}
        for sandbox in self.cri("ListPodSandbox", {"filter": {"label_selector": selector}}).items:
            self._remove_sandbox(sandbox.id)

    def _remove_sandbox(self, sandbox_id: str) -> None:
        containers = self.cri("ListContainers", {"filter": {"pod_sandbox_id": sandbox_id}})
        for c in containers.containers:
            self.cri("StopContainer", {"container_id": c.id, "timeout": 0}, timeout=60)
            self.cri("RemoveContainer", {"container_id": c.id}, timeout=60)
        self.cri("StopPodSandbox", {"pod_sandbox_id": sandbox_id}, timeout=60)
        self.cri("RemovePodSandbox", {"pod_sandbox_id": sandbox_id}, timeout=60)
        self._sandbox_configs.pop(sandbox_id, None)

    def _remove_all_pods(self, ids: set[str]) -> list[str]:
        """Remove every sandbox of this containerd, adding their ids to `ids`.

        A failure is reported, not fatal: the others are removed all the same.
        """
        problems = []
        try:
            sandboxes = self.cri("ListPodSandbox").items
        except Exception as e:
            return [f"listing sandboxes: {e}"]
        for sandbox in sandboxes:
            ids.add(sandbox.id)
            try:
                self._remove_sandbox(sandbox.id)
            except Exception as e:  # go on with the others, report at the end
                problems.append(f"removing sandbox {sandbox.id}: {e}")
        return problems

    # ---- what containerd leaves on the host ---------------------------------------------

    def _sandbox_ids_on_disk(self) -> set[str]:
        """Sandbox and container ids containerd keeps under ROOT (known even after a crash)."""
        dirs = [self.root / "root/io.containerd.grpc.v1.cri/sandboxes",
                self.root / "state/io.containerd.runtime.v2.task" / CRI_NAMESPACE,
                self.root / "crio/storage/overlay-containers"]  # cri-o's: sandboxes and containers
        return {p.name for d in dirs if d.is_dir() for p in d.iterdir() if p.is_dir()}

    def _sweep(self, ids: set[str]) -> list[str]:
        """Remove what containerd left on the host, then the lab's files in ROOT."""
        problems = self._kill_leftover_processes()
        for point in mounts_under(str(self.root)):
            unmount(point)
        for id_ in ids:
            # The shim's socket name, as containerd 1.6 derives it.
            name = hashlib.sha256(f"{self.socket}/{CRI_NAMESPACE}/{id_}".encode()).hexdigest()
            (SHIM_SOCKETS / name).unlink(missing_ok=True)
        self._remove_cni_cache(ids)
        problems += self._remove_cgroups()
        if os.path.exists(f"/sys/class/net/{self.bridge}"):
            run(["ip", "link", "del", self.bridge], check=False)
        self._restore_host()
        if mounts_under(str(self.root)):
            return [*problems, f"mounts left under {self.root}: {mounts_under(str(self.root))}"]
        self._remove_owned()
        return problems

    def _leftover_processes(self) -> set[int]:
        """Processes in our cgroups, and shims serving our socket."""
        pids = set()
        for procs in glob.glob(f"/sys/fs/cgroup/*{self.cgroup_parent}/**/cgroup.procs", recursive=True):
            with contextlib.suppress(OSError):  # removed meanwhile
                pids |= {int(p) for p in Path(procs).read_text().split()}
        for entry in os.listdir("/proc"):
            argv = proc_cmdline(int(entry)) if entry.isdigit() else []
            if argv and "containerd-shim" in argv[0] and self.socket in argv:
                pids.add(int(entry))
        return pids

    def _kill_leftover_processes(self) -> list[str]:
        """After a crash: SIGKILL every _leftover_processes(), each checked again once pinned."""
        problems = []
        for pid in self._leftover_processes():
            log(f"killing left-over process {pid}: {' '.join(proc_cmdline(pid))}")
            if not stop_ours(pid, lambda p: p in self._leftover_processes(), KILL):
                problems.append(f"process {pid} does not die")
        return problems

    def _remove_cni_cache(self, ids: set[str]) -> None:
        """libcni's result cache entries of our network or our sandboxes (cni-loopback)."""
        for path in CNI_RESULTS.glob("*"):
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                entry = {}
            if path.name.startswith(f"{self.network}-") or entry.get("containerId") in ids:
                path.unlink(missing_ok=True)

    def _remove_cgroups(self) -> list[str]:
        problems = []
        for top in glob.glob(f"/sys/fs/cgroup/*{self.cgroup_parent}"):
            for dirpath, _, _ in os.walk(top, topdown=False):
                try:
                    os.rmdir(dirpath)
                except OSError as e:
                    problems.append(f"cgroup {dirpath}: {e}")
        return problems

    def _restore_host(self) -> None:
        try:
            facts = json.loads((self.root / "lab.json").read_text())
        except (OSError, ValueError):
            facts = {"created_dirs": []}
        if "ip_forward" in facts and IP_FORWARD.read_text().strip() != facts["ip_forward"]:
            IP_FORWARD.write_text(facts["ip_forward"])
        for d in reversed(OUTSIDE_DIRS):  # deepest first
            if d in facts["created_dirs"] or _marked(d):
                # Not empty: another lab (or a real containerd) uses it now.
                with contextlib.suppress(OSError):
                    os.rmdir(d)
        self._unshare_netns_dir()

    def _remove_owned(self) -> None:
        for name in OWNED:
            path = self.root / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()


def namespace_options(host_network: bool) -> dict[str, int]:
    """What kubelet asks for: the node's network or the pod's own, a PID namespace per container."""
    return {"network": NODE if host_network else POD, "pid": CONTAINER}


def _marked(path: str, mark: str = MARK) -> bool:
    try:
        return os.getxattr(path, mark) == b"1"
    except OSError:
        return False


def _mark(path: str, mark: str) -> None:
    # Without xattrs the directory stays: it is empty and harmless.
    with contextlib.suppress(OSError):
        os.setxattr(path, mark, b"1")


def netns_path(info: dict[str, Any]) -> str | None:
    """The network namespace path in containerd's verbose sandbox info, if any."""
    spec = info.get("runtimeSpec") or {}
    for ns in (spec.get("linux") or {}).get("namespaces") or []:
        if ns.get("type") == "network":
            return ns.get("path") or None
    return None


def recorded_runtime(root: str) -> str:
    """The runtime a lab in `root` was started with (the default if none was)."""
    try:
        return str(json.loads((Path(root) / "lab.json").read_text())["runtime"])
    except (OSError, ValueError, KeyError):
        return DEFAULT_RUNTIME


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4) or argv[1] not in ("up", "down", "clean") or not {*argv[3:]} <= {*RUNTIMES}:
        print(f"usage: {argv[0]} up|down|clean ROOT [{'|'.join(RUNTIMES)}]", file=sys.stderr)
        return 2
    lab = Lab(argv[2], argv[3] if len(argv) == 4 else recorded_runtime(argv[2]))
    if argv[1] == "up":
        lab.up()
        print(lab.endpoint)
    else:
        lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
