"""The machine as a root test session found it, and what changed since.

conftest.py takes a snapshot when the session starts and compares at its end:
processes the session started (its labs' included), mounts, netns, links,
/var/lib/cni, /run/cni, /run/containerd, ip_forward, the labs' cgroups and the
cached Debian roots. A session without root compares its processes only.
Before its snapshot, a root session cleans up the labs of sessions that were
killed before their teardown (clean_killed_sessions).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from support.lab import IP_FORWARD, Lab, log, mounts_under, proc_alive, proc_cmdline, recorded_runtime
from support.node import node_links

# Lab roots of this session start with this, so its processes can be told from
# those of a concurrent session on the same machine, and those of a session
# that was killed from those of a live one.
LAB_BASES = "if-inject-lab-"
LAB_PREFIX = f"{LAB_BASES}{os.getpid()}-"


def clean_killed_sessions(tmp_dir: str | None = None) -> list[str]:
    """Clean up after root test sessions killed before their teardown (SIGKILL,
    a lost machine session): the labs they left run on, with their pods,
    mounts, cgroups and links. A session's lab roots are in its base dir,
    `if-inject-lab-<its PID>-*` in the temp dir; where that PID is gone, each
    root is torn down as a crashed lab's (Lab.clean), then the base is
    removed. A base whose PID lives (a session, or a process that reused its
    PID) is left alone. Run holding the machine lock; returns the bases removed."""
    removed = []
    for base in sorted(Path(tmp_dir or tempfile.gettempdir()).glob(f"{LAB_BASES}*-*")):
        pid = base.name.removeprefix(LAB_BASES).split("-")[0]
        if not pid.isdigit() or proc_alive(int(pid)) or base.is_symlink() or not base.is_dir():
            continue
        try:
            for root in sorted(base.iterdir()):
                if (root / "lab.json").is_file():  # written first by Lab.up
                    Lab(str(root), recorded_runtime(str(root))).clean()
        except (OSError, RuntimeError) as e:
            log(f"left {base}, of a killed test session, as it is: {e}")
            continue
        if not mounts_under(str(base)):  # never rmtree through a mount
            shutil.rmtree(base)
            removed.append(str(base))
    return removed


def _tree(top: str) -> list[str] | None:
    if not os.path.exists(top):
        return None
    return sorted(os.path.join(d, n) for d, dirs, files in os.walk(top) for n in dirs + files)


def _our_processes() -> list[str]:
    """Live processes started by this session: descendants, and those of our labs."""
    parents: dict[int, int] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        parents[int(entry)] = int(stat.rpartition(")")[2].split()[1])
    ours = {os.getpid()}
    changed = True
    while changed:  # close over children: pods' processes are children of shims
        new = {pid for pid, ppid in parents.items() if ppid in ours or
               any(LAB_PREFIX in arg for arg in proc_cmdline(pid))}
        changed, ours = not new <= ours, ours | new
    ours.discard(os.getpid())
    return sorted(f"{pid} {' '.join(proc_cmdline(pid))}" for pid in ours if proc_alive(pid))


def _roots_written() -> list[str]:
    """Files of the cached Debian roots newer than the root itself: labs only read them
    (through an overlay), so that concurrent labs and later sessions get the same root."""
    from support.debroot import ROOTS_DIR

    changed: list[str] = []
    try:
        marks = sorted(ROOTS_DIR.glob("*/.complete"))
    except OSError:
        return changed
    for complete in marks:
        found = subprocess.run(["find", str(complete.parent), "-xdev", "-newer", str(complete)],
                               capture_output=True, text=True).stdout
        changed += found.splitlines()
    return changed


def machine_snapshot(full: bool = True) -> dict[str, Any]:
    """What tests and labs may change on the host, to compare before and after;
    not `full`: only what a session without root can change."""
    if not full:
        return {"processes": _our_processes()}
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {
        "processes": _our_processes(),
        "mounts": sorted(Path("/proc/mounts").read_text().splitlines()),
        "ip netns list": sorted(netns.splitlines()),
        "/run/netns": _tree("/run/netns"),
        "links": sorted(node_links()),
        "/var/lib/cni": _tree("/var/lib/cni"),
        "/run/cni": _tree("/run/cni"),  # the tuning plugin's state
        "/run/containerd": _tree("/run/containerd"),
        "net.ipv4.ip_forward": IP_FORWARD.read_text().strip(),
        "lab cgroups": sorted(glob.glob("/sys/fs/cgroup/*/if-inject-lab-*")),
        "Debian roots written": _roots_written(),
    }


def machine_differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    lines = []
    for key, old in before.items():
        new = after[key]
        if old == new:
            continue
        if isinstance(old, list) and isinstance(new, list):
            lines += [f"{key}: + {x}" for x in new if x not in old]
            lines += [f"{key}: - {x}" for x in old if x not in new]
        else:
            lines.append(f"{key}: {old!r} -> {new!r}")
    return lines
