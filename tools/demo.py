"""`make demo`: the original README's walk-through, on a real runtime (containerd 2.1 by default, or cri-o).

Starts a lab (test/support/lab.py), creates three pods like examples/alpine.yaml in
namespace if-inject, then runs the README's commands one by one, each printed
before it runs: `if-inject netns`, a veth injected by hand with `ip link` (ping
the pod's link-local address), `if-inject add -spec examples/ptp.json | jq`, ping
the pod's 10.22.22.x address, `if-inject check`, `if-inject del`. Then, briefly,
what if-inject adds to the original: `pods`, `links`, `veth`, a batch `add -l
app=alpine` across the three pods, `list`, and `gc` after one pod is removed.
Finally it stops the lab, leaving the machine as it found it.

`kubectl exec` and `kubectl delete pod` are played by the lab (CRI calls).
Usage, as root: python3 tools/demo.py [-runtime RUNTIME] [LAB_ROOT]
(RUNTIME one of lab.RUNTIMES, default containerd-2.1; LAB_ROOT default /tmp/if-inject-demo)
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from support import REPO  # test/support, on the venv's path by tools/dev_install.py
from support.lab import RUNTIMES, Lab, Pod, install_missing, lock_machine
from support.node import ip, leases, link_local, settled

NAMESPACE = "if-inject"
PTP_SPEC = REPO / "examples/ptp.json"
PTP_CONF = {"cniVersion": "1.0.0", "name": "mynet", "type": "ptp",
            "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.22.22.0/24"}]]}}
MYNET_LEASES = Path("/var/lib/cni/networks/mynet")
DEMO_RUNTIME = "containerd-2.1"  # what clusters run
VETH_NODE, VETH_POD = "10.23.23.1/30", "10.23.23.2/30"


class Shell:
    """Runs README lines with bash, printing each first; keeps their shell variables."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.vars = {"CONTAINER_RUNTIME_ENDPOINT": lab.endpoint}
        # This checkout's tool with this Python, whatever `if-inject` is on PATH.
        tool = f"{shlex.quote(sys.executable)} {shlex.quote(str(REPO / 'if_inject.py'))}"
        self.prelude = f'if-inject() {{ {tool} "$@"; }}\n'
        # Command lines that undo what a step made, run if the demo stops half-way.
        self.undo: list[str] = []

    def __call__(self, line: str, check: bool = True, show: str = "") -> str:
        """Print and run a command line (shown as `show` if given); return its stdout."""
        print(f"$ {show or line}", flush=True)
        proc = self.run(line)
        sys.stdout.write(proc.stderr if show else proc.stdout + proc.stderr)
        if check and proc.returncode != 0:
            raise RuntimeError(f"failed with exit code {proc.returncode}: {line}")
        return proc.stdout

    def run(self, line: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-o", "pipefail", "-c", self.prelude + line],
                              capture_output=True, text=True, cwd=REPO,
                              env={**os.environ, **self.vars})

    def set(self, name: str, line: str) -> str:
        """name=$(line), as the README's ns=$(if-inject netns ...)."""
        value = self(line, show=f"{name}=$({line})").strip()
        self.vars[name] = value
        return value

    def let(self, name: str, value: str) -> None:
        print(f"$ {name}={value}", flush=True)
        self.vars[name] = value

    def kubectl_exec(self, pod: Pod, argv: list[str], check: bool = True) -> str:
        print(f"$ kubectl exec -n {NAMESPACE} $pod -- {' '.join(argv)}", flush=True)
        code, out, err = self.lab.exec(pod, argv)
        sys.stdout.write(out + err)
        if check and code != 0:
            raise RuntimeError(f"exit code {code} in the pod: {' '.join(argv)}")
        return out


def heading(text: str) -> None:
    print(f"\n## {text}\n", flush=True)


def pod_names(count: int) -> list[str]:
    """Names as a Deployment's ReplicaSet gives them: alpine-<hash>-<suffix>."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    template = "".join(random.choices(alphabet, k=10))
    return [f"alpine-{template}-{''.join(random.choices(alphabet, k=5))}" for _ in range(count)]


def get_pods(lab: Lab, pods: list[Pod]) -> None:
    print(f"$ kubectl get pods -n {NAMESPACE} -o wide     # as the lab's CRI sees them")
    print(f"{'NAME':32} {'READY':6} {'STATUS':8} {'IP':16} NODE")
    for pod in pods:
        pod_ip = lab.cri("PodSandboxStatus", {"pod_sandbox_id": pod.sandbox_id}).status.network.ip
        print(f"{pod.name:32} {'1/1':6} {'Running':8} {pod_ip:16} {os.uname().nodename}")


def manual_injection(sh: Shell, lab: Lab, pod: Pod) -> None:
    heading("Manually inject an interface (a veth pair, one side moved into the pod)")
    sh.let("pod", pod.name)
    sh("if-inject netns -ns if-inject -pod $pod")
    sh.set("ns", "if-inject netns -ns if-inject -pod $pod")
    sh.undo.append("ip link del pod0")
    sh("ip link add pod0 type veth peer net1")
    sh("ip link set net1 netns $ns")
    sh.kubectl_exec(pod, ["ip", "link", "set", "net1", "up"])
    sh("ip link set pod0 up")
    # Both ends' fe80:: addresses, once duplicate address detection is done.
    address = link_local(lambda: lab.exec(pod, ["ip", "-6", "-o", "addr", "show", "dev", "net1"])[1])
    settled(lambda: ip("-6", "-o", "addr", "show", "dev", "pod0"), need="fe80::")
    sh.kubectl_exec(pod, ["ip", "addr", "show", "net1"])
    sh(f"ping -c1 -W2 {address}%pod0")
    print("# Clean up by removing either end of the veth pair:")
    sh("ip link del pod0")
    sh.undo.pop()


def cni_injection(sh: Shell, lab: Lab, pod: Pod) -> None:
    heading("Inject an interface with a CNI plugin (ptp, with host-local IPAM)")
    sh.let("pod", pod.name)
    # A repeated del is harmless, and releases the lease of an add that failed half-way.
    sh.undo.append(f"if-inject del -ns if-inject -pod {pod.name} -spec examples/ptp.json")
    result = json.loads(sh("if-inject add -ns if-inject -pod $pod -spec examples/ptp.json | jq"))
    sh.kubectl_exec(pod, ["ip", "addr", "show", "net1"])
    sh(f"ping -c1 -W2 {result['ips'][0]['address'].split('/')[0]}")
    sh("if-inject check -ns if-inject -pod $pod -spec examples/ptp.json && echo check passed")
    sh("if-inject del -ns if-inject -pod $pod -spec examples/ptp.json")
    sh.undo.pop()
    sh.kubectl_exec(pod, ["ip", "link", "show", "net1"], check=False)


def beyond_the_original(sh: Shell, lab: Lab, pods: list[Pod]) -> None:
    heading("What if-inject adds: pods, links, veth, many pods at once, list, gc")
    sh("if-inject pods -ns if-inject")
    sh.let("pod", pods[2].name)
    sh("if-inject links -ns if-inject -pod $pod")
    sh.undo.append(f"if-inject veth -ns if-inject -pod {pods[2].name} -delete")
    sh(f"if-inject veth -ns if-inject -pod $pod -address {VETH_POD} -host-address {VETH_NODE}")
    sh(f"ping -c1 -W2 {VETH_POD.split('/')[0]}")
    sh("if-inject veth -ns if-inject -pod $pod -delete")
    sh.undo.pop()
    print("# One command for every ready pod labelled app=alpine (a JSON line each):")
    sh.undo.append("if-inject del -ns if-inject -l app=alpine -spec examples/ptp.json")
    sh("if-inject add -ns if-inject -l app=alpine -spec examples/ptp.json"
       " | jq -c '{pod, ips: [.result.ips[].address]}'")
    sh("if-inject list")
    print(f"$ kubectl delete pod -n {NAMESPACE} {pods[0].name}", flush=True)
    lab.remove_pod(pods[0])
    sh("if-inject list")
    print("# gc releases what is left of pods that are gone (their leases, cache files):")
    sh("if-inject gc")
    sh("if-inject del -ns if-inject -l app=alpine -spec examples/ptp.json | jq -c")
    sh.undo.pop()
    sh("if-inject list")


def undo_leftovers(sh: Shell, had: dict[Path, bool]) -> None:
    """What the demo made outside the lab's pods, also after a failure half-way."""
    for line in reversed(sh.undo):
        sh.run(line)
    # host-local keeps its directory after the last release: remove it if the demo made
    # it and it holds no lease (a concurrent user of "mynet" may have one).
    if not had[MYNET_LEASES] and MYNET_LEASES.is_dir() and not leases(MYNET_LEASES.parent, MYNET_LEASES.name):
        shutil.rmtree(MYNET_LEASES)
    networks = MYNET_LEASES.parent
    if not had[networks] and networks.is_dir() and not any(networks.iterdir()):
        networks.rmdir()


def main() -> int:
    if os.geteuid() != 0:
        print("the demo needs root: it runs containerd, runc and CNI plugins", file=sys.stderr)
        return 1
    if os.path.exists("/sys/class/net/pod0"):
        print("a link named pod0 exists already; the demo would take it over", file=sys.stderr)
        return 1
    import argparse

    parser = argparse.ArgumentParser(description="the README's walk-through on a real runtime")
    parser.add_argument("-runtime", choices=RUNTIMES, default=DEMO_RUNTIME)
    parser.add_argument("root", nargs="?", default="/tmp/if-inject-demo", help="the lab's root")
    args = parser.parse_args()
    install_missing([("ping", "iputils-ping"), ("jq", "jq")])
    lock_machine()  # held until the demo exits: test sessions change the host too
    if not PTP_SPEC.exists():
        PTP_SPEC.write_text(json.dumps(PTP_CONF, indent="\t") + "\n")
    had = {p: p.exists() for p in (MYNET_LEASES, MYNET_LEASES.parent)}
    started = time.monotonic()
    lab = Lab(args.root, args.runtime)
    made_root = not lab.root.exists()
    print(f"# Starting the lab ({args.runtime} + CRI + CNI) in {lab.root} ...", flush=True)
    lab.up()
    print(f"# The runtime says: {lab.version()}", flush=True)
    sh = Shell(lab)
    try:
        pods = [lab.run_pod(NAMESPACE, name, labels={"app": "alpine"}) for name in pod_names(3)]
        heading("Three pods like examples/alpine.yaml")
        sh(f"export CONTAINER_RUNTIME_ENDPOINT={lab.endpoint}   # the lab's {args.runtime}")
        get_pods(lab, pods)
        manual_injection(sh, lab, pods[0])
        cni_injection(sh, lab, pods[1])
        beyond_the_original(sh, lab, pods)
    except BaseException:
        print(f"\n# The demo failed; the runtime's log is {lab.root}/containerd.log", flush=True)
        raise
    finally:
        undo_leftovers(sh, had)
        print("\n# Stopping the lab ...", flush=True)
        lab.down()
    if made_root:  # only its image cache and containerd's log are left in it
        shutil.rmtree(lab.root)
    print(f"# Done in {time.monotonic() - started:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
