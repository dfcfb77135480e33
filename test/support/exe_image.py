"""The built executable in an image and a pod of the lab, as examples/if-inject-pod.yaml runs it.

    image = exe_image(lab.cache, exe)             # an OCI tar: busybox-static, if-inject
    lab.import_image(image)
    tool = run_tool_pod(lab, mounts=[...])        # privileged, host network and PIDs
    lab.exec(tool, ["if-inject", "-version"])

The image has no Python and no C library: busybox (static) and the executable,
which carries its own. The CNI plugins it runs are the node's, mounted in at
/opt/cni/bin, and run with the node's libraries: here (the lab's /usr/lib/cni
are glibc programs) the node's /lib and /lib64 are mounted in read-only too, as
on a node whose plugins are static (Go's usual build) nothing would be. It is
made offline like the lab's pause and busybox images (lab.oci_archive).

The lab's schema has no container mounts, so the few messages needed for a
privileged container with mounts are defined here, in a pool of their own.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any

from support.cri_schema import LAB_SCHEMA, NODE, M, proto_messages
from support.lab import Lab, Pod, oci_archive, tar_archive, tar_entry, which

EXE_IMAGE = "localhost/if-inject/if-inject:test"
IN_IMAGE = "/usr/local/bin/if-inject"
PROPAGATION = {"private": 0, "host-to-container": 1}

# k8s.io/cri-api runtime.v1: Mount, and ContainerConfig with its mounts (field 7).
MOUNT_SCHEMA = LAB_SCHEMA + """
enum MountPropagation {
    PROPAGATION_PRIVATE = 0; PROPAGATION_HOST_TO_CONTAINER = 1; PROPAGATION_BIDIRECTIONAL = 2;
}
message Mount {
    string container_path = 1; string host_path = 2; bool readonly = 3; bool selinux_relabel = 4;
    MountPropagation propagation = 5;
}
message ContainerConfigWithMounts {
    ContainerMetadata metadata = 1; ImageSpec image = 2; repeated string command = 3;
    repeated string args = 4; repeated KeyValue envs = 6; repeated Mount mounts = 7;
    map labels = 9; string log_path = 11; LinuxContainerConfig linux = 15;
}
message CreateContainerWithMountsRequest {
    string pod_sandbox_id = 1; ContainerConfigWithMounts config = 2; PodSandboxConfig sandbox_config = 3;
}
"""
MM: dict[str, Any] = proto_messages(MOUNT_SCHEMA)


# ---- the image -----------------------------------------------------------------

def image_layer(exe: Path) -> bytes:
    busybox = Path(which("busybox") or "/bin/busybox").resolve()
    entries = [tar_entry(d) for d in ("bin", "etc", "lib", "lib64", "proc", "sys", "dev", "run",
                                   "usr", "usr/local", "usr/local/bin", "var", "opt")]
    entries.append(tar_entry("tmp", None, 0o1777))
    entries.append(tar_entry("bin/busybox", busybox.read_bytes()))
    entries += [tar_entry(f"bin/{applet}", link="busybox") for applet in ("sh", "sleep", "ls", "cat", "ip")]
    entries.append(tar_entry("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644))
    entries.append(tar_entry(IN_IMAGE.lstrip("/"), exe.read_bytes()))
    return tar_archive(entries)


def exe_image(cache: Path, exe: Path) -> Path:
    """An OCI tar of the image, cached by the executable's content."""
    key = hashlib.sha256(exe.read_bytes()).hexdigest()[:16]
    path = cache / f"if-inject-exe-{key}.tar"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        archive = oci_archive(EXE_IMAGE, image_layer(exe),
                              {"Cmd": ["sleep", "infinity"], "Env": ["PATH=/bin:/usr/local/bin"]})
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(archive)
        tmp.rename(path)
    return path


# ---- the pod ----------------------------------------------------------------------

def mount(host_path: str, container_path: str | None = None, readonly: bool = False,
          propagation: str = "private") -> Any:
    return MM["Mount"](host_path=host_path, container_path=container_path or host_path,
                       readonly=readonly, propagation=PROPAGATION[propagation])


def tool_security(lab: Lab, host: dict[str, int]) -> dict[str, Any]:
    """privileged, as if-inject-pod.yaml; but cri-o gives a privileged container every
    capability it knows, and this VM's bounding set lacks CAP_SYS_RESOURCE (runc:
    "unable to apply caps: operation not permitted"): there, the capabilities if-inject
    uses (setns, netlink, /proc of the node's processes) instead."""
    if lab.runtime != "cri-o":
        return {"privileged": True, "namespace_options": host}
    caps = ["SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "NET_RAW", "DAC_OVERRIDE"]
    return {"capabilities": {"add_capabilities": caps}, "namespace_options": host}


def run_tool_pod(lab: Lab, mounts: list[Any], namespace: str = "kube-system",
                 name: str = "if-inject") -> Pod:
    """examples/if-inject-pod.yaml on the lab: privileged, hostNetwork, hostPID, `mounts`."""
    uid = str(uuid.uuid4())
    labels = {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": namespace,
              "io.kubernetes.pod.uid": uid}
    host = {"network": NODE, "pid": NODE}
    log_dir = lab.root / "pods" / f"{namespace}_{name}_{uid}"
    log_dir.mkdir(parents=True, exist_ok=True)
    sandbox_config = M["PodSandboxConfig"](
        metadata={"name": name, "uid": uid, "namespace": namespace}, log_directory=str(log_dir),
        labels=labels, linux={"cgroup_parent": lab.cgroup_parent,
                              "security_context": {"namespace_options": host, "privileged": True}})
    sandbox_id = lab.cri("RunPodSandbox", {"config": sandbox_config}, timeout=60).pod_sandbox_id
    pod = Pod(namespace, name, uid, sandbox_id, None, None, host_network=True, labels=labels)
    try:
        config = MM["ContainerConfigWithMounts"](
            metadata={"name": "if-inject"}, image={"image": EXE_IMAGE, "user_specified_image": EXE_IMAGE},
            command=["sleep", "infinity"], log_path="if-inject.log", mounts=mounts,
            labels={"io.kubernetes.container.name": "if-inject", **labels},
            linux={"security_context": tool_security(lab, host)})
        request = MM["CreateContainerWithMountsRequest"](
            pod_sandbox_id=sandbox_id, config=config,
            sandbox_config=MM["PodSandboxConfig"].FromString(sandbox_config.SerializeToString()))
        create = lab.channel.unary_unary(
            "/runtime.v1.RuntimeService/CreateContainer",
            request_serializer=type(request).SerializeToString,
            response_deserializer=M["CreateContainerResponse"].FromString)
        pod.container_id = create(request, timeout=60).container_id
        lab.cri("StartContainer", {"container_id": pod.container_id}, timeout=60)
    except BaseException:
        lab.remove_pod(pod)
        raise
    return pod
