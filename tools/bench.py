"""How fast is if-inject? `make bench` (as root), or `python tools/bench.py`.

Starts a private containerd lab (test/support/lab.py), makes 50 pods without
containers, and times the tool called as scripts call it: a new process per
call, the interpreter called directly. Prints min/median/max over repeated
runs, each row's floor and the ratio to it, the peak RSS, and PASS/FAIL; and
below the table, for each -parallel of the 50-pod batches, where their CPU
goes per pod and command (the plugin's, if-inject's own, the runtime's), and a
note when the bench's directory is on ext4 without a journal (docs/bench.md).

Every target is a ratio to floors measured in the same run (tools/judge.py),
so that a slower or busier machine moves the floors and the figures alike:

- the interpreter, `python -c pass`;
- the interpreter importing grpc, `python -c 'import grpc'`: the least any
  call that asks the runtime can cost;
- for `python if_inject.py`, the same with the module compiled, as Python
  compiles a script on every run;
- the CNI plugin run directly: the same ptp ADD or DEL of examples/ptp.json, with
  the CNI environment a runtime gives it; for n pods, all their ADDs then
  DELs, as many at once as the batch runs.

docs/bench.md says where the time goes.

The targets (on medians):

- `-version` of the installed command: at most 1.5x the interpreter (it is
  answered before if_inject is imported); of `python if_inject.py`, which
  compiles the module first (no .pyc for a script), at most 1.5x the
  interpreter compiling it;
- `netns`: at most 1.11x the grpc import (`python if_inject.py`: the grpc
  import and compiling the module);
- one `add`: at most 1.10x the grpc import plus the plugin's ADD; one `del`:
  at most 1.09x the grpc import plus the plugin's DEL;
- 50 pods, add + del with one batch call each (`-l`): at most 1.3x two grpc
  imports plus the plugins' own parallel floor (the same ADDs, then DELs, run
  directly with the same -parallel, no if-inject), and at least 4x faster
  than 100 single calls (the per-pod loop of scripts and of the Go
  original). All pods are also timed with -parallel 1, 2 and 4, each
  against its own floor;
- the single-file executable, by tools/measure_exe.py's targets:
  `-version` at most 1.5x the interpreter (its launcher answers it), `netns`
  at most 1.3x the installed command's;
- peak RSS at most 1.7x that of the interpreter importing grpc (whose RSS
  varies from run to run).

The machine is left as found: pods removed, the lab down, the IP leases (a
private host-local dataDir) and the result cache (a private -cache-dir)
released and checked, net.ipv4.ip_forward restored (ptp sets it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import if_inject  # the venv's: the work tree, by tools/dev_install.py
from judge import Ratio, verdict
from measure_exe import AGAINST_PIP as EXE_NETNS  # the executable's targets
from measure_exe import VERSION as EXE_VERSION
from support import CNI_BIN, REPO  # test/support, on the venv's path by tools/dev_install.py
from support.lab import Lab, Pod, ip_forward_restored, lock_machine, mounts_under
from support.node import cache_entries, leases

NAMESPACE = "if-inject-bench"
PYTHON = sys.executable  # the venv's interpreter, not resolved: its site-packages count
SCRIPT = str(REPO / "if_inject.py")
GRPC_IMPORT = [PYTHON, "-c", "import grpc"]  # the floor of every call that asks the runtime
SIZES = (1, 10, 50)
WORKERS = (1, 2, 4)  # -parallel of the scaling rows (all pods), beside the default
DEFAULT_PARALLEL = if_inject._default_parallel()  # this machine's, as the tool picks it

# The targets, on medians: see the docstring. Those of single calls were set
# as "the floor + 15 ms" where the grpc import took 135 ms and a ptp ADD and
# DEL together 42, about 13 + 29 (their shares here): 150/135 for netns,
# 163/148 for add, 179/164 for del. As ratios, they hold on any machine.
VERSION = Ratio(1.5, "interpreter")  # the installed command (and the executable: measure_exe.py)
SCRIPT_VERSION = Ratio(1.5, "interpreter compiling if_inject.py")
NETNS = Ratio(1.11, "grpc import")
SCRIPT_NETNS = Ratio(1.11, "grpc import + compiling if_inject.py")
ADD_CALL = Ratio(1.10, "grpc import + plugin")
DEL_CALL = Ratio(1.09, "grpc import + plugin")
BATCH = Ratio(1.3, "2 grpc imports + plugins' parallel floor")
BATCH_SPEEDUP = Ratio(4.0, "batch", at_least=True)
RSS = Ratio(1.7, "grpc import's RSS")


# ---- running one process ------------------------------------------------

@dataclass
class Sample:
    seconds: float
    rss: int  # peak resident set of the process, bytes
    stdout: bytes
    cpu: float = 0.0  # user + system seconds of the process and the children it waited for


# Runs one program and reports its time, its own peak RSS and its CPU (wait4).
# It is a small process of its own because a child's ru_maxrss starts at its
# parent's high-water mark (Linux carries it over exec), and the bench holds grpc.
LAUNCHER = """
import os, sys, time
report, argv = int(sys.argv[1]), sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
cpu = usage.ru_utime + usage.ru_stime
os.write(report, f"{seconds} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)} {cpu}".encode())
"""


def measure(argv: list[str], stdin: bytes = b"", env: dict[str, str] | None = None) -> Sample:
    """Run argv once (its path absolute); a failure raises with its stderr."""
    read_end, write_end = os.pipe()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            os.fdopen(read_end, "rb") as report:
        proc = subprocess.Popen([PYTHON, "-S", "-c", LAUNCHER, str(write_end), *argv],
                                stdin=subprocess.PIPE, stdout=out, stderr=err, env=env,
                                pass_fds=[write_end])
        os.close(write_end)
        proc.communicate(stdin)  # small: fits the pipe
        measured = report.read().split()
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0 or len(measured) != 4 or measured[2] != b"0":
            raise RuntimeError(f"{' '.join(argv)}: exit {measured[2:3] or proc.returncode}: "
                               f"{err.read().decode(errors='replace').strip()}")
        return Sample(float(measured[0]), int(measured[1]) * 1024, out.read(), float(measured[3]))


def children_cpu() -> float:
    """User + system seconds of this process's children waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int | None) -> float:
    """User + system seconds of a running process (0 when there is none)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- rows of the table --------------------------------------------------

@dataclass
class Row:
    """One measured thing: its times, its floor (what it is compared with,
    seconds), and a target that says PASS or FAIL."""

    what: str
    times: list[float] = field(default_factory=list)
    rss: int = 0
    floor: float | None = None
    target: Ratio | None = None
    passed: bool | None = None

    def add(self, sample: Sample) -> Sample:
        self.times.append(sample.seconds)
        self.rss = max(self.rss, sample.rss)
        return sample

    def judge(self, target: Ratio) -> None:
        """The median against the row's floor."""
        self.target = target
        self.passed = target.met(self.median, self.floor or 0.0)

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else 0.0


@dataclass
class BatchCpu:
    """Where a batch's CPU goes, summed over its rounds: what it adds over the
    plugins' parallel floor while the plugins keep every CPU busy."""

    commands: int = 0  # pods times commands (add, del) measured
    tool: float = 0.0  # the batch calls, with the plugins they ran (wait4)
    starts: float = 0.0  # two grpc imports per round: the start of an add and of a del
    plugins: float = 0.0  # the same ADDs and DELs run directly: the floor's
    runtime: float = 0.0  # the runtime's while the batch calls ran

    def lines(self, what: str) -> list[str]:
        if not self.commands:
            return []
        own = self.tool - self.starts - self.plugins

        def per(seconds: float) -> str:
            return f"{seconds / self.commands * 1000:.1f} ms"

        return [f"CPU per pod and command of {what}: the plugin {per(self.plugins)} (run directly), "
                f"if-inject's own {per(own)} (beyond its plugins and a grpc import per call), "
                f"the runtime's {per(self.runtime)}; the plugins' CPU over all three: "
                f"{self.plugins / (self.plugins + own + self.runtime):.2f}"]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}" if seconds < 10 else f"{seconds * 1000:.0f}"


def print_table(rows: list[Row]) -> None:
    header = ("WHAT", "RUNS", "MIN ms", "MEDIAN ms", "MAX ms", "FLOOR ms", "xFLOOR", "+FLOOR ms",
              "PEAK RSS", "TARGET", "")
    table = [header]
    for r in rows:
        floor = r.floor
        spread = (ms(min(r.times)), ms(r.median), ms(max(r.times))) if r.times else ("-",) * 3
        table.append((
            r.what, str(len(r.times)) if r.times else "-", *spread,
            ms(floor) if floor else "-", f"{r.median / floor:.2f}" if floor else "-",
            ms(r.median - floor) if floor else "-",
            f"{r.rss / 2**20:.1f} MB" if r.rss else "-", str(r.target or ""), verdict(r.passed)))
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    numeric = range(1, 9)
    for row in table:
        cells = [c.rjust(w) if i in numeric else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells).rstrip())


# ---- the bench ----------------------------------------------------------

class Bench:
    """The lab, its pods, a private CNI setup, and the rows measured on them."""

    def __init__(self, base: Path, repeat: int, script: str = SCRIPT,
                 console_script: str = "", exe: str = "") -> None:
        self.base = base
        self.script = script
        self.console_script = console_script
        self.exe = exe
        self.repeat = repeat
        # Rounds of every single-call row (netns, add, del): a median of 20 moved
        # 0.04x from run to run, and a ptp DEL's own time spreads over 16-48 ms here.
        self.single_call_rounds = repeat * 4
        self.lab = Lab(str(base / "lab"))
        self.cache_dir = base / "cni"  # libcni's cacheDir: entries in its results/
        self.ipam_dir = base / "ipam"
        self.spec = base / "ptp.json"
        self.pods: list[Pod] = []
        self.rows: list[Row] = []
        self.notes: list[str] = []  # printed below the table
        # As a user's shell has it: .pyc files written and used (the console
        # script and the executable import the module; a script run never caches).
        self.env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        # The executable unpacks itself once into a cache: a private one, gone with base.
        self.env["IF_INJECT_EXE_CACHE"] = str(base / "exe-cache")

    def tool(self, *args: str, exe: list[str] | None = None) -> list[str]:
        """The tool as users run it: the installed `if-inject` (the venv's
        interpreter by its shebang, no shell), else `python if_inject.py`."""
        default = [self.console_script] if self.console_script else [PYTHON, self.script]
        return [*(exe or default), "-runtime-endpoint", self.lab.endpoint,
                "-cni-path", CNI_BIN, "-cache-dir", str(self.cache_dir), *args]

    def row(self, what: str, **kw: Any) -> Row:
        row = Row(what, **kw)
        self.rows.append(row)
        return row

    def rounds(self, runs: list[tuple[Row, list[str]]], times: int) -> None:
        """Each argv `times` times into its row, all taking turns after a
        warm-up (page cache, .pyc files), so that the machine's load weighs
        on the floors and on what is judged by them alike."""
        for _, argv in runs:
            self.measure(argv)
        for _ in range(times):
            for row, argv in runs:
                row.add(self.measure(argv))

    def measure(self, argv: list[str]) -> Sample:
        return measure(argv, env=self.env)

    # -- setup --

    def write_spec(self) -> None:
        """examples/ptp.json with a private dataDir, and a subnet of this run's own:
        ptp puts a host route per pod address, which must not meet another
        lab's or test's route for the same address on this machine."""
        spec = json.loads((REPO / "examples" / "ptp.json").read_text())
        digest = hashlib.sha256(str(self.base).encode()).digest()
        spec["ipam"]["dataDir"] = str(self.ipam_dir)
        spec["ipam"]["ranges"] = [[{"subnet": f"10.{150 + digest[0] % 50}.{digest[1]}.0/24"}]]
        self.spec.write_text(json.dumps(spec, indent=4))

    def make_pods(self, count: int) -> None:
        """Pods labelled so that `-l` selects the first 1, 10 or all of them."""
        def make(i: int) -> Pod:
            labels = {"bench": "yes", **{f"first{n}": str(i < n).lower() for n in SIZES}}
            return self.lab.run_pod(NAMESPACE, f"bench-{i:02d}", labels=labels, container=False)

        with ThreadPoolExecutor(4) as pool:
            self.pods = list(pool.map(make, range(count)))

    # -- measurements --

    def startup(self) -> tuple[Row, Row]:
        """The floors (the interpreter, and the interpreter importing grpc),
        with -version and netns of each way to run the tool, in turns;
        returns the two floors."""
        pod = self.pods[0]
        netns_args = ("netns", "-ns", NAMESPACE, "-pod", pod.name)
        interp = self.row("floor: python -c pass (interpreter)")
        grpc = self.row("floor: python -c 'import grpc'")
        compiling = f"compile(open({self.script!r}).read(), {self.script!r}, 'exec')"
        interp_compiling = self.row("floor: python compiling if_inject.py")
        grpc_compiling = self.row("floor: python importing grpc, compiling if_inject.py")
        runs = [(interp, [PYTHON, "-c", "pass"]), (grpc, GRPC_IMPORT),
                (interp_compiling, [PYTHON, "-c", compiling]),
                (grpc_compiling, [PYTHON, "-c", f"import grpc; {compiling}"]),
                (self.row("-version (python if_inject.py)"), [PYTHON, self.script, "-version"])]
        if self.console_script:
            runs.append((self.row("-version (console script)"), [self.console_script, "-version"]))
        installed = self.row("netns (1 pod" + (", if-inject)" if self.console_script else ")"))
        runs.append((installed, self.tool(*netns_args)))
        if self.console_script:
            runs.append((self.row("netns (python if_inject.py)"),
                         self.tool(*netns_args, exe=[PYTHON, self.script])))
        if self.exe:  # the single-file build (`make`), when there is one
            runs += [(self.row("-version (./if-inject)"), [self.exe, "-version"]),
                     (self.row(f"netns (./if-inject; floor: {installed.what})"),
                      self.tool(*netns_args, exe=[self.exe]))]
        out = self.measure(self.tool(*netns_args)).stdout.decode().strip()
        if out != pod.netns:
            raise RuntimeError(f"netns printed {out!r}, the lab says {pod.netns!r}")
        self.rounds(runs, self.single_call_rounds)
        for row, _ in runs[4:]:
            exe, script = "./if-inject" in row.what, "if_inject.py" in row.what
            if row.what.startswith("-version"):
                row.floor = interp_compiling.median if script else interp.median
                row.judge(EXE_VERSION if exe else SCRIPT_VERSION if script else VERSION)
            else:
                row.floor = installed.median if exe else grpc_compiling.median if script else grpc.median
                row.judge(EXE_NETNS if exe else SCRIPT_NETNS if script else NETNS)
        return interp, grpc

    def single_calls(self) -> None:
        """One add and one del of ptp, against the floor: the interpreter
        importing grpc, plus the same ptp ADD or DEL executed directly, as a
        runtime does. Each round runs the plugin, the grpc import and the
        tool in turns, so that the machine's load and the kernel's pace (a
        veth's deletion waits for RCU) weigh on the floors and the tool alike.
        The grpc import runs between the plugin's own ADD and DEL: the tool's
        DEL comes about as long after its ADD, a process start in between,
        and a DEL 80 ms after its ADD takes 5-10 ms longer than one right
        after it (docs/bench.md)."""
        pod = self.pods[0]
        conf = json.loads(self.spec.read_text())

        def env(command: str) -> dict[str, str]:
            return plugin_env(command, pod, "bench-floor")

        plugin = f"{CNI_BIN}/{conf['type']}"
        grpc = self.row("floor: python -c 'import grpc', in turns with add and del")
        floor_add = self.row("floor: ptp ADD, plugin run directly")
        floor_del = self.row("floor: ptp DEL, plugin run directly (after the grpc import, as the tool's)")
        add, delete = self.row("add (1 pod, ptp)"), self.row("del (1 pod, ptp)")
        common = ("-ns", NAMESPACE, "-pod", pod.name, "-spec", str(self.spec))
        for i in range(self.single_call_rounds + 1):
            plugin_add = measure([plugin], json.dumps(conf).encode(), env("ADD"))
            prev = dict(conf, prevResult=json.loads(plugin_add.stdout))  # as libcni's DEL
            grpc_import = self.measure(GRPC_IMPORT)  # between the plugin's ADD and DEL (see above)
            plugin_del = measure([plugin], json.dumps(prev).encode(), env("DEL"))
            samples = [grpc_import, plugin_add, plugin_del,
                       self.measure(self.tool("add", *common)), self.measure(self.tool("del", *common))]
            if i:  # the first round warms up
                for row, sample in zip((grpc, floor_add, floor_del, add, delete), samples, strict=True):
                    row.add(sample)
        floor_add.rss = floor_del.rss = 0  # the plugin's, not the tool's
        add.floor, delete.floor = grpc.median + floor_add.median, grpc.median + floor_del.median
        add.judge(ADD_CALL)
        delete.judge(DEL_CALL)

    def batches(self) -> None:
        """n pods with one batch call per command (the tool's default -parallel),
        against its floor: the plugins' own parallel floor (the same ADDs and
        DELs run directly, as many at once, no if-inject) plus the two starts
        with grpc that any two calls pay (two grpc imports, in the same turns);
        then all pods with -parallel 1, 2 and 4, each against its own floor;
        then n pods with single calls (the per-pod loop of scripts and of the
        Go original), against the batch."""
        for n in SIZES:
            grpc = self.row(f"floor: python -c 'import grpc', in turns with the {n}-pod batches")
            selector = "bench=yes" if n == len(self.pods) else f"first{n}=true"
            others = [w for w in WORKERS if w != DEFAULT_PARALLEL] if n == len(self.pods) else []
            parallel = [DEFAULT_PARALLEL, *others]
            rounds = self.repeat if n < 50 else max(2, self.repeat // 2)
            scaling = [self.parallel_rows(n, workers, default=i == 0) for i, workers in enumerate(parallel)]
            cpus = [BatchCpu() for _ in parallel]
            for _ in range(rounds):  # floors and batches in turns
                for (floor, batch), workers, cpu in zip(scaling, parallel, cpus, strict=True):
                    cpu.starts += 2 * grpc.add(self.measure(GRPC_IMPORT)).cpu
                    children = children_cpu()
                    floor.times.append(self.plugin_floor(self.pods[:n], workers))
                    cpu.plugins += children_cpu() - children
                    batch.times.append(self.batch_round(selector, n, batch, workers, cpu))
            for floor, batch in scaling:
                batch.floor = 2 * grpc.median + floor.median
            batch = scaling[0][1]
            singles = self.row(f"{n} pods: add+del, {2 * n} single calls (floor: batch)")
            for _ in range(self.repeat if n == 1 else max(1, self.repeat // (3 if n < 50 else 5))):
                singles.times.append(self.single_round(self.pods[:n], singles))
            singles.floor = batch.median
            if n == 50:
                batch.judge(BATCH)
                singles.judge(BATCH_SPEEDUP)
                for (_, each), cpu in zip(scaling, cpus, strict=True):
                    self.notes += cpu.lines(each.what)

    def parallel_rows(self, n: int, workers: int, default: bool) -> tuple[Row, Row]:
        name = f"-parallel {workers}" + (" (default)" if default else "")
        return (self.row(f"floor: {n} pods: ptp ADDs then DELs, plugin run directly, {workers} at once"),
                self.row(f"{n} pods: add+del, 1 batch call each, {name}"))

    def plugin_floor(self, pods: list[Pod], workers: int) -> float:
        """The batch's own work done by the plugin alone: every pod's ptp ADD,
        then every DEL (with its prevResult, as libcni's), `workers` at once."""
        conf = json.loads(self.spec.read_text())
        plugin = f"{CNI_BIN}/{conf['type']}"

        def run(command: str, pod: Pod, stdin: dict[str, Any]) -> Any:
            proc = subprocess.run([plugin], input=json.dumps(stdin).encode(), capture_output=True,
                                  env=plugin_env(command, pod, f"bench-floor-{pod.name}"))
            if proc.returncode != 0:
                raise RuntimeError(f"{plugin} {command} for {pod.name}: {proc.stdout!r} {proc.stderr!r}")
            return json.loads(proc.stdout) if command == "ADD" else None

        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(lambda pod: run("ADD", pod, conf), pods))
            list(pool.map(lambda pod, result: run("DEL", pod, dict(conf, prevResult=result)), pods, results))
        return time.perf_counter() - started

    def batch_round(self, selector: str, n: int, row: Row, workers: int, cpu: BatchCpu) -> float:
        common = ("-ns", NAMESPACE, "-l", selector, "-spec", str(self.spec), "-parallel", str(workers))
        total = 0.0
        for command in ("add", "del"):
            runtime = process_cpu(self.lab.runtime_pid)
            sample = self.measure(self.tool(command, *common))
            cpu.runtime += process_cpu(self.lab.runtime_pid) - runtime
            cpu.tool += sample.cpu
            cpu.commands += n
            lines = [json.loads(line) for line in sample.stdout.splitlines()]
            if len(lines) != n or any("error" in line for line in lines):
                raise RuntimeError(f"batch {command} of {n} pods: {lines}")
            row.rss = max(row.rss, sample.rss)
            total += sample.seconds
        return total

    def single_round(self, pods: list[Pod], row: Row) -> float:
        total = 0.0
        for command in ("add", "del"):
            for pod in pods:
                sample = self.measure(self.tool(command, "-ns", NAMESPACE, "-pod", pod.name,
                                                "-spec", str(self.spec)))
                row.rss = max(row.rss, sample.rss)
                total += sample.seconds
        return total

    def peak_rss(self, grpc: Row) -> None:
        """The largest peak RSS of any if-inject call, against grpc's import."""
        tool_rows = [r for r in self.rows if r.rss and not r.what.startswith("floor")]
        peak = max(tool_rows, key=lambda r: r.rss)
        self.rows.append(Row(f"peak RSS of any if-inject call ({peak.what}): "
                             f"{peak.rss / grpc.rss:.2f}x grpc's", [], peak.rss,
                             target=RSS, passed=RSS.met(peak.rss, grpc.rss)))

    def check_released(self) -> list[str]:
        """Every lease and cache entry made by the bench is gone again."""
        leased, cached = leases(self.ipam_dir), cache_entries(self.cache_dir)
        return [f"IP leases left: {leased}"] * bool(leased) + [f"cache entries left: {cached}"] * bool(cached)

    def run(self) -> list[str]:
        started = time.monotonic()
        device = journal_less_ext4(str(self.base))
        if device:
            self.notes.append(f"note: {self.base} is on ext4 without a journal ({device}): a file made "
                              "within a minute after many were deleted (another lab's teardown) costs "
                              "up to 20x the CPU; docs/bench.md")
        self.lab.up()
        self.write_spec()
        self.make_pods(max(SIZES))
        print(f"bench: lab and {len(self.pods)} pods up in {time.monotonic() - started:.1f} s",
              file=sys.stderr)
        _, grpc = self.startup()
        self.single_calls()
        self.batches()
        self.peak_rss(grpc)
        return self.check_released()


def journal_less_ext4(path: str) -> str:
    """The kernel's name of the device of `path`'s file system when that is ext4
    without a journal (no /proc/fs/jbd2 entry), else "". There ext4 looks past
    every inode deleted in the last 30-60 s to make a file (docs/bench.md)."""
    st_dev = os.stat(path).st_dev
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mount, _, fs = line.partition(" - ")
        major, minor = mount.split()[2].split(":")
        if os.makedev(int(major), int(minor)) == st_dev:
            name = os.path.basename(os.path.realpath(f"/sys/dev/block/{major}:{minor}"))
            journaled = Path("/proc/fs/jbd2").glob(f"{name}-*")
            return name if fs.split()[0] == "ext4" and not any(journaled) else ""
    return ""


def plugin_env(command: str, pod: Pod, container_id: str) -> dict[str, str]:
    """The CNI environment a runtime gives the plugin for `pod`'s net1."""
    args = (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={pod.namespace};K8S_POD_NAME={pod.name};"
            f"K8S_POD_INFRA_CONTAINER_ID={pod.sandbox_id};K8S_POD_UID={pod.uid}")
    return dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID=container_id, CNI_NETNS=str(pod.netns),
                CNI_IFNAME="net1", CNI_PATH=CNI_BIN, CNI_ARGS=args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-repeat", "--repeat", type=int, default=10, metavar="N",
                        help="4N runs per single-call row, fewer for the batches "
                             "(more: steadier, slower; default 10)")
    parser.add_argument("-script", "--script", default=SCRIPT, metavar="FILE",
                        help="the if_inject.py to time (default: this checkout's), e.g. an older copy")
    parser.add_argument("-console-script", "--console-script", metavar="FILE",
                        default=str(Path(PYTHON).parent / "if-inject"),
                        help="the installed if-inject to time as well, if it exists "
                             "(default: the one beside this Python)")
    parser.add_argument("-exe", "--exe", default=str(REPO / "if-inject"), metavar="FILE",
                        help="the single-file executable to time as well, if it exists "
                             "(default: ./if-inject, as `make` builds it)")
    parser.add_argument("-strict", "--strict", action="store_true",
                        help="exit 1 when a target fails (default: only print it)")
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root (the lab runs containerd, runc and CNI plugins); skipped",
              file=sys.stderr)
        return 0
    lock = lock_machine()  # a test session's before/after snapshot must not see the bench's lab
    base = Path(tempfile.mkdtemp(prefix="if-inject-bench-"))
    console_script, exe = (path if os.access(path, os.X_OK) else ""
                           for path in (options.console_script, options.exe))
    bench = Bench(base, max(3, options.repeat), os.path.abspath(options.script), console_script,
                  os.path.abspath(exe) if exe else "")
    started = time.monotonic()
    try:
        with ip_forward_restored():
            problems = bench.run()
    finally:
        try:
            bench.lab.down()
        finally:
            os.close(lock)
            if not mounts_under(str(base)):  # never rmtree through a mount
                shutil.rmtree(base)
    print(f"if-inject bench of {bench.script}: {os.cpu_count()} CPUs, {PYTHON} "
          f"(Python {sys.version.split()[0]}), {time.monotonic() - started:.0f} s; "
          "medians; every target is a ratio to a floor measured in this run")
    print_table(bench.rows)
    for note in bench.notes:
        print(note)
    for problem in problems:
        print(f"bench: NOT CLEAN: {problem}", file=sys.stderr)
    failed = problems or any(r.passed is False for r in bench.rows)
    return 1 if failed and (options.strict or problems) else 0


if __name__ == "__main__":
    sys.exit(main())
