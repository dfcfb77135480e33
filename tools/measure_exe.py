"""Startup of the one-file executable against the pip-installed command, on a real lab.

    .venv/bin/python tools/measure_exe.py [--exe FILE] [--pip-command FILE] [--runs 21]   # as root

Builds what is not given (the executable with tools/build_exe.py, the command
with `pip install .` into build/measure/venv), starts a private containerd lab
(test/support/lab.py) with one pod, and times each command as scripts call it, a new
process per call, the two alternating so that load on the machine hits both
alike, and the bare interpreter beside them. Prints medians in ms and the
ratios, and checks its targets as ratios to floors measured in the same
run (tools/judge.py): `netns` and `add` at most 1.3x the pip-installed
command's (`del` is only timed), `-version` at most 1.5x the interpreter's
`python -c pass` (the launcher answers it from its trailer, without starting
Python). Also times the executable's first run, which unpacks it, and checks
the figures of the file that carries its own C library: the unpack under 1 s,
the file under 30 MB (report_self_contained); and what the launcher does
before it runs a warm entry (the cache dir walked, its own dir and the entry
checked against the payload's list) under 5 ms (reuse_checks).

The machine is left as found: the lab down, the leases (a private host-local
dataDir) and the result cache (a private -cache-dir) released,
net.ipv4.ip_forward restored, the unpack caches removed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import build_exe
from judge import Ratio, verdict
from support import CNI_BIN, REPO  # test/support, on the venv's path by tools/dev_install.py
from support.lab import Lab, ip_forward_restored, lock_machine, mounts_under
from support.toolrun import args_for

TOOLS = Path(__file__).resolve().parent

INTERPRETER = "python -c pass"  # the floor of -version, timed in the same rounds
# The targets, on medians; tools/bench.py judges its rows of the executable by them too.
VERSION = Ratio(1.5, "interpreter")  # answered by the launcher, from its trailer
AGAINST_PIP = Ratio(1.3, "pip-installed")
TARGETS = {"-version": VERSION, "netns": AGAINST_PIP, "add": AGAINST_PIP}
UNPACK_LIMIT_MS = 1000.0  # a first run's time over a warm run's
SIZE_LIMIT_MB = 30.0
CHECK_LIMIT_MS = 5.0  # the launcher's work before it runs a warm entry's program


def pip_command(work: Path) -> Path:
    """`pip install .` of this checkout into a virtualenv of its own."""
    venv = work / "venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(REPO)], check=True)  # with its dependencies
    subprocess.run([*pip, "--force-reinstall", "--no-deps", str(REPO)], check=True)  # this source
    return venv / "bin" / "if-inject"


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True)
    elapsed = (time.perf_counter() - started) * 1000
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode(errors='replace')}")
    return elapsed


def measure(commands: dict[str, Path], lab: Lab, tmp: Path, runs: int) -> dict[str, dict[str, list[float]]]:
    pod = lab.run_pod("if-inject-measure", "alpine-0", container=False)
    spec = json.loads((REPO / "examples" / "ptp.json").read_text())
    spec["ipam"]["dataDir"] = str(tmp / "ipam")
    (tmp / "ptp.json").write_text(json.dumps(spec))
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "IF_INJECT_EXE_CACHE": str(tmp / "exe-cache")}
    base = ["-r", lab.endpoint, "-cache-dir", str(tmp / "cni"), "-cni-path", CNI_BIN]
    pod_args = args_for(pod)
    calls = {"-version": ["-version"], "netns": [*base, "netns", *pod_args],
             "add": [*base, "add", *pod_args, "-spec", str(tmp / "ptp.json")],
             "del": [*base, "del", *pod_args, "-spec", str(tmp / "ptp.json")]}
    times: dict[str, dict[str, list[float]]] = {name: {c: [] for c in calls} for name in commands}
    python = commands["pip"].parent / "python"  # the pip-installed command's interpreter
    interpreter = [str(python) if python.exists() else sys.executable, "-c", "pass"]
    times["floor"] = {INTERPRETER: []}
    for command in commands.values():  # warm up: the executable unpacks, caches fill
        for args in calls.values():
            timed([str(command), *args], env)
    for i in range(runs):
        order = list(commands.items())
        times["floor"][INTERPRETER].append(timed(interpreter, env))
        for name, command in order if i % 2 else reversed(order):
            for call, args in calls.items():
                times[name][call].append(timed([str(command), *args], env))
    lab.remove_pod(pod)
    return times


def first_runs(exe: Path, tmp: Path, runs: int = 5) -> list[float]:
    """-version with an empty unpack cache: the cost of the first run of a build."""
    samples = []
    for i in range(runs):
        cache = tmp / f"first-{i}"
        env = {"PATH": "/usr/bin:/bin", "IF_INJECT_EXE_CACHE": str(cache)}
        samples.append(timed([str(exe), "-version"], env))
        shutil.rmtree(cache)
    return samples


def reuse_checks(exe: Path, tmp: Path, runs: int = 51) -> list[float]:
    """What the launcher does before it execs a warm entry's program, in ms: the cache
    dir walked, its own dir checked, the entry checked against the payload's list. Timed
    inside a build of the launcher that stops there (-DMEASURE_REUSE), on the cache
    that measure() warmed: a process's start and exec are not in it."""
    binary = tmp / "launcher-measure"
    subprocess.run(["gcc", "-static", "-O2", "-DMEASURE_REUSE", "-o", str(binary), str(build_exe.LAUNCHER),
                    "-lz"], check=True)
    env = {"PATH": "/usr/bin:/bin", "IF_INJECT_EXE_CACHE": str(tmp / "exe-cache")}
    timed([str(exe), "-version"], env)  # the entry is there and checked
    proc = subprocess.run([str(binary), str(exe), str(runs)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{binary} failed: {proc.stderr}")
    return [int(us) / 1000 for us in proc.stdout.split()]


def report(times: dict[str, dict[str, list[float]]], first: list[float]) -> bool:
    pip, exe = times["pip"], times["exe"]
    interpreter = statistics.median(times["floor"][INTERPRETER])
    print(f"{'command':<10} {'pip-installed':>14} {'executable':>11} {'ratio':>6}  target")
    ok = True
    for call in pip:
        a, b = statistics.median(pip[call]), statistics.median(exe[call])
        target = TARGETS.get(call)
        floor = {"interpreter": interpreter, "pip-installed": a}[target.floor] if target else a
        met = target.met(b, floor) if target else None
        ok &= met is not False
        judged = f"{target}: {b / floor:.2f}x" if target else ""
        print(f"{call:<10} {a:>11.1f} ms {b:>8.1f} ms {b / a:>5.2f}x  {judged} {verdict(met)}".rstrip())
    print(f"floor: the interpreter, {INTERPRETER}: {interpreter:.1f} ms")
    print(f"first run of a build (unpacks): {statistics.median(first):.0f} ms (median of {len(first)})")
    return ok


def report_self_contained(exe: Path, first: list[float], warm: list[float], checks: list[float]) -> bool:
    """The unpack: a first run's time over a warm run of the same build (the floor,
    measured in the same run); the file's size (its loader and libraries in); and the
    launcher's work before it runs a warm entry (reuse_checks)."""
    unpack = statistics.median(first) - statistics.median(warm)
    size = exe.stat().st_size / 1e6
    check = statistics.median(checks)
    rows = [(f"unpack (first run {statistics.median(first):.0f} ms - warm {statistics.median(warm):.0f} ms)",
             f"{unpack:.0f} ms", f"< {UNPACK_LIMIT_MS:.0f} ms", unpack < UNPACK_LIMIT_MS),
            ("file size", f"{size:.1f} MB", f"< {SIZE_LIMIT_MB:.0f} MB", size < SIZE_LIMIT_MB),
            (f"launcher's walk and entry check (median of {len(checks)})", f"{check:.1f} ms",
             f"< {CHECK_LIMIT_MS:.0f} ms", check < CHECK_LIMIT_MS)]
    for name, value, target, met in rows:
        print(f"{name:<46} {value:>9}  {target} {verdict(met)}")
    return all(met for *_, met in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exe", help="the executable (default: build one into build/measure)")
    parser.add_argument("--pip-command", help="an installed if-inject (default: pip install . into a venv)")
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("measure_exe.py needs root (the lab runs containerd and CNI plugins)")
    work = REPO / "build" / "measure"
    work.mkdir(parents=True, exist_ok=True)
    exe = Path(args.exe) if args.exe else work / "if-inject"
    if not args.exe:
        build_exe.build(exe, REPO / "build" / "exe")
    commands = {"pip": Path(args.pip_command) if args.pip_command else pip_command(work), "exe": exe}
    lock = lock_machine()
    tmp = Path(tempfile.mkdtemp(prefix="if-inject-measure-"))
    lab = Lab(str(tmp / "lab"))
    try:
        with ip_forward_restored():
            try:
                lab.up()
                times = measure(commands, lab, tmp, args.runs)
                first = first_runs(exe, tmp)
                checks = reuse_checks(exe, tmp)
            finally:
                lab.down()
    finally:
        if not mounts_under(str(tmp)):  # never rmtree through a mount (a lab not fully down)
            shutil.rmtree(tmp)
        os.close(lock)
    ok = report(times, first)
    ok = report_self_contained(exe, first, times["exe"]["-version"], checks) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
