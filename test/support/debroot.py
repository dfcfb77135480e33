"""Debian roots for the lab, built once with debootstrap and reused.

    root = debian_root("trixie", ["containerd", "runc"])   # a Path, ready to chroot into

A root is built in a private mount namespace (debootstrap and apt mount /proc
and /dev inside it; a crash cannot leave those mounts on the host), under a
temporary name, and renamed into place only when complete, so a half-built
root is never used: the next call rebuilds it. Concurrent callers (two test
sessions, a demo) wait for each other on a per-root lock.

The cache lives in ROOTS_DIR (override with IF_INJECT_LAB_ROOTS); each root is
named by its suite and a hash of its package list, so a changed list builds a
new root beside the old one. Removing the directory is always safe.

Nothing but the Debian archive from the host's own apt sources is reached.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOTS_DIR = Path(os.environ.get("IF_INJECT_LAB_ROOTS", "/var/cache/if-inject-lab/roots"))
SOURCES = ["/etc/apt/sources.list", *sorted(map(str, Path("/etc/apt/sources.list.d").glob("*")))]
# Roots that debootstrap needs from outside the suite itself.
EXTRA_SOURCES = {"trixie": ["{mirror}-security trixie-security main"]}
APT_CONF = 'Acquire::Check-Valid-Until "false";\n'  # the archive here is a fixed snapshot
HOSTS = "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n"


def log(msg: str) -> None:
    print(f"debroot: {msg}", file=sys.stderr, flush=True)


def debian_root(suite: str, packages: list[str] | tuple[str, ...] = ()) -> Path:
    """The cached root of `suite` with `packages` installed, built if missing."""
    key = hashlib.sha256(" ".join(sorted(packages)).encode()).hexdigest()[:10]
    root = ROOTS_DIR / f"{suite}-{key}"
    ROOTS_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(ROOTS_DIR / f".{root.name}.lock"):
        if not (root / ".complete").exists():
            _build(suite, list(packages), root)
    return root


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _build(suite: str, packages: list[str], root: Path) -> None:
    building = root.with_name(root.name + ".building")
    for old in (building, root):
        if old.exists():
            _remove(old)
    mirror = host_mirror()
    log(f"building a Debian {suite} root in {root} (once; about a minute)")
    _install_host_package("debootstrap")
    _private(["debootstrap", "--variant=minbase", "--include=ca-certificates", suite, str(building), mirror])
    (building / "etc/apt/apt.conf.d/99no-check-valid-until").write_text(APT_CONF)
    (building / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")  # nothing starts
    (building / "usr/sbin/policy-rc.d").chmod(0o755)
    with open(building / "etc/apt/sources.list", "a") as sources:
        for line in EXTRA_SOURCES.get(suite, []):
            sources.write("deb " + line.format(mirror=mirror.rstrip("/")) + "\n")
    if not (building / "etc/hosts").exists():  # sid's minbase has none; containerd 2.x needs one
        (building / "etc/hosts").write_text(HOSTS)
    if packages:
        in_root(building, ["apt-get", "update", "-q"])
        in_root(building, ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages])
        in_root(building, ["apt-get", "clean"])
    (building / ".complete").write_text(" ".join(packages) + "\n")
    building.rename(root)


def in_root(root: Path, argv: list[str]) -> None:
    """Run argv chrooted in `root`, with /proc and /dev, in a throw-away mount namespace."""
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    script = ('mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && '
              'exec chroot "$0" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive '
              'LANG=C.UTF-8 "$@"')
    _private(["sh", "-c", script, str(root), *argv])


def _private(argv: list[str]) -> None:
    """Run argv in a private mount namespace: whatever it mounts goes away with it."""
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "--", *argv],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{' '.join(argv[:3])}...: exit {proc.returncode}:\n{tail}")


def host_mirror() -> str:
    """The host's Debian mirror (not -security), from its apt sources in either format."""
    for name in SOURCES:
        try:
            text = Path(name).read_text()
        except OSError:
            continue
        urls = (re.findall(r"^URIs:\s*(.+)$", text, re.M)
                + re.findall(r"^deb\s+(?:\[.*?\]\s+)?(\S+)", text, re.M))
        for url in (u for line in urls for u in line.split()):
            if "-security" not in url and re.search(r"/debian/?$", url):
                return str(url)
    raise RuntimeError("no Debian mirror in the host's apt sources")


def _install_host_package(command: str) -> None:
    if shutil.which(command, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"):
        return
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", command],
                   check=True, capture_output=True, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def _remove(path: Path) -> None:
    """Remove a (half-)built root; refuses if anything is still mounted below it."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    busy = [m for m in mounts if m == str(path) or m.startswith(f"{path}/")]
    if busy:
        raise RuntimeError(f"cannot rebuild {path}: still mounted: {busy}")
    shutil.rmtree(path)


if __name__ == "__main__":  # from test/: python3 -m support.debroot SUITE [PACKAGE...]
    print(debian_root(sys.argv[1], sys.argv[2:]))
