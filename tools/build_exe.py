"""Build the one-file if-inject executable, for nodes without Python.

    python3 tools/build_exe.py --output if-inject      # what `make` runs
    __version=0.0.1-local python3 tools/build_exe.py --output /tmp/if-inject

The result runs on a glibc x86_64 node with no Python: a static launcher
(tools/exe_launcher.c) with a PyInstaller one-folder build of if_inject.py
appended, which it unpacks once into a root-only cache and then execs (see the
launcher for the cache's rules). Steps, all under build/exe/:

  1. a copy of if_inject.py with the version stamped in (tools/stamp.py);
  2. a build virtualenv with PyInstaller and the runtime dependencies;
  3. PyInstaller --onedir of that copy (stripped, unneeded stdlib left out, modules
     as plain .pyc files: imports from its zip archive made `netns` 1.3x slower);
  4. the folder packed into one zlib stream, keyed by its SHA-256;
  5. gcc -static of the launcher (glibc and zlib from Debian's libc6-dev and
     zlib1g-dev), then launcher + payload + trailer written atomically.

An output built from the same sources is reused, unless $__version asks for
another version than the one it carries: a second `make` does nothing.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import tomllib
import zlib
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stamp

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
PYINSTALLER = "pyinstaller>=6.10,<7"
LAUNCHER = TOOLS / "exe_launcher.c"
RUNTIME_HOOK = TOOLS / "exe_rthook.py"
NAME = "if-inject"
MAGIC = b"IF-INJECT-EXE-1\0"
TRAILER = struct.Struct("<QQ64s64s64s16s")  # as struct trailer in exe_launcher.c
RECORD = struct.Struct("<BIHQ")  # kind, mode, path length, size
# Never imported by if_inject or what it imports (grpc, protobuf); leaving them
# out makes the build smaller and its start no slower.
EXCLUDES = ["tkinter", "_tkinter", "unittest", "pydoc", "doctest", "pdb", "sqlite3", "_sqlite3",
            "xml", "xmlrpc", "pyexpat", "_elementtree", "email", "http", "html", "mailbox",
            "multiprocessing", "curses", "_curses", "readline", "distutils", "setuptools",
            "pkg_resources", "lib2to3", "idlelib", "ensurepip", "venv", "turtle",
            "decimal", "_decimal", "_pydecimal"]


def log(msg: str, started: float) -> None:
    print(f"build_exe: {msg} ({time.monotonic() - started:.1f}s)", file=sys.stderr, flush=True)


def run(argv: list[str], **kw: object) -> None:
    subprocess.run(argv, check=True, **kw)  # type: ignore[call-overload]


# ---- what to build, and whether it is built already ---------------------------

def runtime_requirements() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["project"]["dependencies"])


def build_key(source: str, requirements: list[str]) -> str:
    """Everything the output depends on but the version stamp."""
    h = hashlib.sha256()
    for part in [source, sys.version, *requirements, *sorted(EXCLUDES)]:
        h.update(part.encode() + b"\0")
    for path in (Path(__file__), TOOLS / "stamp.py", LAUNCHER, RUNTIME_HOOK):
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class Trailer:
    """The end of a built executable (struct trailer in exe_launcher.c)."""

    payload_offset: int
    payload_size: int
    cache_key: str  # SHA-256 of the payload: its unpacked folder's name
    build_key: str  # build_key() of the sources it was built from
    version: str


def read_trailer(path: Path) -> Trailer | None:
    try:
        with open(path, "rb") as f:
            f.seek(-TRAILER.size, os.SEEK_END)
            offset, size, *texts, magic = TRAILER.unpack(f.read(TRAILER.size))
    except (OSError, struct.error):
        return None
    if magic != MAGIC:
        return None
    return Trailer(offset, size, *(t.rstrip(b"\0").decode() for t in texts))


def up_to_date(output: Path, key: str) -> str | None:
    """The version of `output` if it was built from these sources with the
    version asked for: $__version, else any date version."""
    trailer = read_trailer(output)
    if trailer is None or trailer.build_key != key:
        return None
    wanted = os.environ.get(stamp.VERSION_ENV, "").strip()
    version = trailer.version
    return version if wanted == version or (not wanted and stamp.DATE_VERSION.match(version)) else None


# ---- the one-folder build --------------------------------------------------------

def build_venv(work: Path, requirements: list[str]) -> Path:
    """A virtualenv with PyInstaller and the runtime dependencies, reused."""
    venv = work / "venv"
    python = venv / "bin" / "python"
    wanted = "\n".join([sys.version, PYINSTALLER, *requirements])
    marker = venv / ".requirements"
    if marker.exists() and marker.read_text() == wanted and python.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         PYINSTALLER, *requirements])
    marker.write_text(wanted)
    return python


def pyinstaller(python: Path, script: Path, work: Path) -> Path:
    dist = work / "dist"
    argv = [str(python), "-m", "PyInstaller", "--onedir", "--noconfirm", "--strip", "--debug", "noarchive",
            "--name", NAME, "--log-level", "WARN", "--distpath", str(dist),
            "--workpath", str(work / "pyinstaller"), "--specpath", str(work),
            "--runtime-hook", str(RUNTIME_HOOK)]
    for module in EXCLUDES:
        argv += ["--exclude-module", module]
    proc = subprocess.run([*argv, str(script)], cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise subprocess.CalledProcessError(proc.returncode, argv[:3])
    return dist / NAME


def glibc_needed(folder: Path) -> str:
    """The newest glibc symbol version the bundle links against: the oldest glibc it runs on."""
    newest = (2, 0, 0)
    for path in folder.rglob("*"):
        data = path.read_bytes() if path.is_file() else b""
        if data[:4] == b"\x7fELF":
            for minor, patch in re.findall(rb"GLIBC_2\.(\d+)(?:\.(\d+))?", data):
                newest = max(newest, (2, int(minor), int(patch or 0)))
    return ".".join(map(str, newest if newest[2] else newest[:2]))


def pack(folder: Path) -> bytes:
    """The folder as the launcher's records, in one zlib stream."""
    z = zlib.compressobj(6)
    chunks = []
    for path in [folder, *sorted(folder.rglob("*"))][1:]:  # parents sort before children
        rel = path.relative_to(folder).as_posix().encode()
        st = path.lstat()
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            raise SystemExit(f"build_exe: {path}: only files and directories can be packed")
        if path.is_dir():
            chunks.append(z.compress(RECORD.pack(ord("d"), st.st_mode & 0o755, len(rel), 0) + rel))
            continue
        chunks.append(z.compress(RECORD.pack(ord("f"), st.st_mode & 0o755, len(rel), st.st_size) + rel))
        chunks.append(z.compress(path.read_bytes()))
    chunks.append(z.compress(RECORD.pack(ord("e"), 0, 0, 0)))
    chunks.append(z.flush())
    return b"".join(chunks)


def launcher(work: Path) -> bytes:
    """The static launcher, compiled once per source."""
    source = LAUNCHER.read_bytes()
    binary = work / f"launcher-{hashlib.sha256(source).hexdigest()[:16]}"
    if not binary.exists():
        if not shutil.which("gcc"):
            raise SystemExit("build_exe: gcc not found: apt-get install gcc libc6-dev zlib1g-dev")
        tmp = binary.with_suffix(".tmp")
        run(["gcc", "-static", "-O2", "-s", "-Wall", "-Wextra", "-o", str(tmp), str(LAUNCHER), "-lz"])
        tmp.replace(binary)
    return binary.read_bytes()


def write_exe(output: Path, front: bytes, payload: bytes, key: str, version: str) -> str:
    cache_key = hashlib.sha256(payload).hexdigest()
    trailer = TRAILER.pack(len(front), len(payload), cache_key.encode(), key.encode(),
                           version.encode(), MAGIC)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(front)
        f.write(payload)
        f.write(trailer)
    tmp.chmod(0o755)
    tmp.replace(output)
    return cache_key


def build(output: Path, work: Path) -> str:
    started = time.monotonic()
    source = (ROOT / "if_inject.py").read_text()
    requirements = runtime_requirements()
    key = build_key(source, requirements)
    version = up_to_date(output, key)
    if version:
        log(f"{output} is up to date (version {version})", started)
        return version
    version = stamp.build_version()
    script = work / "src" / "if_inject.py"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(stamp.stamp(source, version))
    python = build_venv(work, requirements)
    log("build virtualenv ready", started)
    folder = pyinstaller(python, script, work)
    log("PyInstaller one-folder build done", started)
    payload = pack(folder)
    cache_key = write_exe(output, launcher(work), payload, key, version)
    log(f"wrote {output}: version {version}, {output.stat().st_size / 1e6:.1f} MB, "
        f"cache entry {cache_key[:16]}..., runs on glibc >= {glibc_needed(folder)}", started)
    return version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(ROOT / NAME), help="the executable to write")
    parser.add_argument("--work", default=str(ROOT / "build" / "exe"), help="build directory")
    args = parser.parse_args(argv)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    with open(work / ".lock", "w") as lock:  # one build at a time in this work dir
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            build(Path(args.output).resolve(), work)
        except (ValueError, subprocess.CalledProcessError) as e:
            print(f"build_exe: {e}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
