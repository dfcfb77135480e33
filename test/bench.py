"""How fast is if-inject? `make bench` (as root), or `python test/bench.py`.

Starts a private containerd lab (test/lab.py), makes 50 pods without
containers, and times the tool called as scripts call it: a new process per
call, the interpreter called directly. Prints min/median/max over repeated
runs, each row's floor (the same work without if-inject) and the ratio to it,
the peak RSS, and PASS/FAIL against the targets of issue 7:

- `-version` under 30 ms, `netns` under 100 ms;
- one `add` or `del` of test/ptp.json at most 90 ms above the floor: the same
  ptp ADD or DEL executed directly with the CNI environment;
- 50 pods, add + del with one batch call each (`-l`), under 1.2 s in total and
  at least 4x faster than 100 single calls;
- peak RSS under 60 MB.

The machine is left as found: pods removed, the lab down, the IP leases (a
private host-local dataDir) and the result cache (a private -cache-dir)
released and checked, net.ipv4.ip_forward restored (ptp sets it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "test"))
from lab import Lab, Pod, lock_machine, mounts_under  # noqa: E402

NAMESPACE = "if-inject-bench"
CNI_BIN_DIR = "/usr/lib/cni"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
PYTHON = sys.executable  # the venv's interpreter, not resolved: its site-packages count
SCRIPT = str(REPO / "if_inject.py")
SIZES = (1, 10, 50)

# Targets of issue 7, on medians (seconds, bytes).
VERSION_LIMIT = 0.030
NETNS_LIMIT = 0.100
EXE_VERSION_LIMIT = 0.100  # the single-file executable (issue 8)
EXE_RATIO_LIMIT = 1.3  # its netns against the pip-installed command
OVER_FLOOR_LIMIT = 0.090
BATCH_LIMIT = 1.2
BATCH_SPEEDUP = 4.0
RSS_LIMIT = 60 * 1024 * 1024


# ---- running one process ------------------------------------------------

@dataclass
class Sample:
    seconds: float
    rss: int  # peak resident set of the process, bytes
    stdout: bytes


# Runs one program and reports its time and its own peak RSS (wait4). It is a
# small process of its own because a child's ru_maxrss starts at its parent's
# high-water mark (Linux carries it over exec), and the bench holds grpc.
LAUNCHER = """
import os, sys, time
report, argv = int(sys.argv[1]), sys.argv[2:]
start = time.perf_counter()
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
os.write(report, f"{seconds} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}".encode())
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
        if proc.returncode != 0 or len(measured) != 3 or measured[2] != b"0":
            raise RuntimeError(f"{' '.join(argv)}: exit {measured[2:] or proc.returncode}: "
                               f"{err.read().decode(errors='replace').strip()}")
        return Sample(float(measured[0]), int(measured[1]) * 1024, out.read())


# ---- rows of the table --------------------------------------------------

@dataclass
class Row:
    """One measured thing: its times, its floor (the same work without
    if-inject, seconds), and a target that says PASS or FAIL."""

    what: str
    times: list[float] = field(default_factory=list)
    rss: int = 0
    floor: float | None = None
    target: str = ""
    passed: bool | None = None

    def add(self, sample: Sample) -> Sample:
        self.times.append(sample.seconds)
        self.rss = max(self.rss, sample.rss)
        return sample

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else 0.0


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
            f"{r.rss / 2**20:.1f} MB" if r.rss else "-", r.target,
            {True: "PASS", False: "FAIL", None: ""}[r.passed]))
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
        self.lab = Lab(str(base / "lab"))
        self.cache_dir = base / "cni"  # libcni's cacheDir: entries in its results/
        self.ipam_dir = base / "ipam"
        self.spec = base / "ptp.json"
        self.pods: list[Pod] = []
        self.rows: list[Row] = []
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
                "-cni-path", CNI_BIN_DIR, "-cache-dir", str(self.cache_dir), *args]

    def row(self, what: str, **kw: Any) -> Row:
        row = Row(what, **kw)
        self.rows.append(row)
        return row

    def repeat_into(self, row: Row, argv: list[str], times: int) -> Row:
        self.measure(argv)  # warm-up: page cache, .pyc files
        for _ in range(times):
            row.add(self.measure(argv))
        return row

    def measure(self, argv: list[str]) -> Sample:
        return measure(argv, env=self.env)

    # -- setup --

    def write_spec(self) -> None:
        """test/ptp.json with a private dataDir, and a subnet of this run's own:
        ptp puts a host route per pod address, which must not meet another
        lab's or test's route for the same address on this machine."""
        spec = json.loads((REPO / "test" / "ptp.json").read_text())
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

    def startup(self) -> Row:
        """-version and netns; returns the interpreter's row (the -version floor)."""
        interp = self.repeat_into(self.row("python -c pass (interpreter)"), [PYTHON, "-c", "pass"],
                                  self.repeat * 2)
        grpc = self.repeat_into(self.row("python -c 'import grpc'"), [PYTHON, "-c", "import grpc"],
                                self.repeat)
        version = self.row("-version (python if_inject.py)", floor=interp.median)
        self.repeat_into(version, [PYTHON, self.script, "-version"], self.repeat * 2)
        if self.console_script:
            self.repeat_into(self.row("-version (console script)", floor=interp.median),
                             [self.console_script, "-version"], self.repeat * 2)
        pod = self.pods[0]
        netns = self.row("netns (1 pod" + (", if-inject)" if self.console_script else ")"),
                         floor=grpc.median)
        self.repeat_into(netns, self.tool("netns", "-ns", NAMESPACE, "-pod", pod.name), self.repeat * 2)
        out = self.measure(self.tool("netns", "-ns", NAMESPACE, "-pod", pod.name)).stdout.decode().strip()
        if out != pod.netns:
            raise RuntimeError(f"netns printed {out!r}, the lab says {pod.netns!r}")
        if self.console_script:
            self.repeat_into(self.row("netns (python if_inject.py)", floor=grpc.median),
                             self.tool("netns", "-ns", NAMESPACE, "-pod", pod.name,
                                       exe=[PYTHON, self.script]), self.repeat * 2)
        return interp

    def single_calls(self) -> tuple[Row, Row]:
        """One add and one del of ptp, against the floor: the same ptp ADD and
        DEL executed directly, as a runtime does. Rounds alternate floor and
        tool, so that the machine's load and the kernel's pace (a veth's
        deletion waits for RCU) weigh on both alike."""
        pod = self.pods[0]
        conf = json.loads(self.spec.read_text())
        args = (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={pod.namespace};K8S_POD_NAME={pod.name};"
                f"K8S_POD_INFRA_CONTAINER_ID={pod.sandbox_id};K8S_POD_UID={pod.uid}")

        def env(command: str) -> dict[str, str]:
            return dict(os.environ, CNI_COMMAND=command, CNI_CONTAINERID="bench-floor",
                        CNI_NETNS=str(pod.netns), CNI_IFNAME="net1", CNI_PATH=CNI_BIN_DIR,
                        CNI_ARGS=args)

        plugin = f"{CNI_BIN_DIR}/{conf['type']}"
        floor_add = self.row("floor: ptp ADD, plugin run directly")
        floor_del = self.row("floor: ptp DEL, plugin run directly")
        add, delete = self.row("add (1 pod, ptp)"), self.row("del (1 pod, ptp)")
        common = ("-ns", NAMESPACE, "-pod", pod.name, "-spec", str(self.spec))
        for i in range(self.repeat * 2 + 1):
            result = measure([plugin], json.dumps(conf).encode(), env("ADD"))
            prev = dict(conf, prevResult=json.loads(result.stdout))  # as libcni's DEL
            samples = [result, measure([plugin], json.dumps(prev).encode(), env("DEL")),
                       self.measure(self.tool("add", *common)), self.measure(self.tool("del", *common))]
            if i:  # the first round warms up
                for row, sample in zip((floor_add, floor_del, add, delete), samples, strict=True):
                    row.add(sample)
        floor_add.rss = floor_del.rss = 0  # the plugin's, not the tool's
        add.floor, delete.floor = floor_add.median, floor_del.median
        for row in (add, delete):
            row.target = f"<= floor + {ms(OVER_FLOOR_LIMIT)} ms"
            row.passed = row.median - (row.floor or 0) <= OVER_FLOOR_LIMIT
        return floor_add, floor_del

    def batches(self, floor_add: Row, floor_del: Row) -> None:
        plugin_work = floor_add.median + floor_del.median
        for n in SIZES:
            selector = "bench=yes" if n == len(self.pods) else f"first{n}=true"
            batch = self.row(f"{n} pods: add+del, 1 batch call each", floor=n * plugin_work)
            singles = self.row(f"{n} pods: add+del, {2 * n} single calls", floor=n * plugin_work)
            for _ in range(self.repeat if n < 50 else max(2, self.repeat // 2)):
                batch.times.append(self.batch_round(selector, n, batch))
            for _ in range(self.repeat if n == 1 else max(1, self.repeat // (3 if n < 50 else 5))):
                singles.times.append(self.single_round(self.pods[:n], singles))
            if n == 50:
                speedup = singles.median / batch.median
                batch.target = f"< {ms(BATCH_LIMIT)} ms"
                batch.passed = batch.median < BATCH_LIMIT
                singles.target = f">= {BATCH_SPEEDUP:g}x batch: {speedup:.1f}x"
                singles.passed = speedup >= BATCH_SPEEDUP

    def batch_round(self, selector: str, n: int, row: Row) -> float:
        common = ("-ns", NAMESPACE, "-l", selector, "-spec", str(self.spec))
        total = 0.0
        for command in ("add", "del"):
            sample = self.measure(self.tool(command, *common))
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

    def executable(self, interp: Row) -> None:
        """The single-file build (`make`), when there is one."""
        if not self.exe:
            return
        version = self.row("-version (./if-inject)", floor=interp.median)
        self.repeat_into(version, [self.exe, "-version"], self.repeat * 2)
        netns = self.row("netns (./if-inject)")
        self.repeat_into(netns, self.tool("netns", "-ns", NAMESPACE, "-pod", self.pods[0].name,
                                          exe=[self.exe]), self.repeat * 2)

    def judge(self) -> None:
        """Targets of the rows that have a plain limit, and the peak RSS."""
        for row in self.rows:
            exe = "./if-inject" in row.what  # issue 8's targets for the single file
            if row.what.startswith("-version"):
                limit = EXE_VERSION_LIMIT if exe else VERSION_LIMIT
                row.target, row.passed = f"< {ms(limit)} ms", row.median < limit
            elif row.what.startswith("netns") and exe:
                pip = next(r for r in self.rows if r.what.startswith("netns (1 pod"))
                row.target = f"<= {EXE_RATIO_LIMIT}x pip-installed"
                row.passed = row.median <= EXE_RATIO_LIMIT * pip.median
            elif row.what.startswith("netns"):
                row.target, row.passed = f"< {ms(NETNS_LIMIT)} ms", row.median < NETNS_LIMIT
        tool_rows = [r for r in self.rows if r.rss and not r.what.startswith(("python", "floor"))]
        peak = max(tool_rows, key=lambda r: r.rss)
        rss = Row(f"peak RSS of any if-inject call ({peak.what})", [], peak.rss,
                  target=f"< {RSS_LIMIT // 2**20} MB", passed=peak.rss < RSS_LIMIT)
        self.rows.append(rss)

    def check_released(self) -> list[str]:
        """Every lease and cache entry made by the bench is gone again."""
        leases = [p.name for p in self.ipam_dir.glob("*/*")
                  if p.name != "lock" and not p.name.startswith("last_reserved_ip")]
        results = self.cache_dir / "results"
        cached = os.listdir(results) if results.exists() else []
        return [f"IP leases left: {leases}"] * bool(leases) + [f"cache entries left: {cached}"] * bool(cached)

    def run(self) -> list[str]:
        started = time.monotonic()
        self.lab.up()
        self.write_spec()
        self.make_pods(max(SIZES))
        print(f"bench: lab and {len(self.pods)} pods up in {time.monotonic() - started:.1f} s",
              file=sys.stderr)
        interp = self.startup()
        floor_add, floor_del = self.single_calls()
        self.batches(floor_add, floor_del)
        self.executable(interp)
        self.judge()
        return self.check_released()


def with_host_restored(work: Callable[[], list[str]]) -> list[str]:
    forward = IP_FORWARD.read_text()
    try:
        return work()
    finally:
        if IP_FORWARD.read_text() != forward:
            IP_FORWARD.write_text(forward)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-repeat", "--repeat", type=int, default=10, metavar="N",
                        help="runs per single-call row (more: steadier, slower; default 10)")
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
        problems = with_host_restored(bench.run)
    finally:
        try:
            bench.lab.down()
        finally:
            os.close(lock)
            if not mounts_under(str(base)):  # never rmtree through a mount
                shutil.rmtree(base)
    print(f"if-inject bench of {bench.script}: {os.cpu_count()} CPUs, {PYTHON} "
          f"(Python {sys.version.split()[0]}), {time.monotonic() - started:.0f} s; "
          "medians against issue 7's targets")
    print_table(bench.rows)
    for problem in problems:
        print(f"bench: NOT CLEAN: {problem}", file=sys.stderr)
    failed = problems or any(r.passed is False for r in bench.rows)
    return 1 if failed and (options.strict or problems) else 0


if __name__ == "__main__":
    sys.exit(main())
