"""The Node object as the machine describes it, its conditions, and the heartbeat Lease.

Capacity comes from the machine (CPUs, memory, ephemeral storage of the data
dir's filesystem, 110 pods as upstream). Conditions use the kubelet's reasons
and messages, so `kubectl describe node` reads the same.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
from dataclasses import dataclass
from typing import Any

from timonel.api import meta
from timonel.api.client import Client
from timonel.api.errors import ApiError

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NODES = ("v1", "Node")
LEASES = ("coordination.k8s.io/v1", "Lease")
LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION = 40
MAX_PODS = 110
AGENT_VERSION = "v1.37.0-timonel"

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64"}


@dataclass
class Machine:
    cpus: int
    memory_bytes: int
    storage_bytes: int
    hostname: str
    internal_ip: str


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                out[key] = int(parts[0]) * 1024
    return out


def _read(path: str, default: str = "") -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def internal_ip() -> str:
    """The address the node's default route leaves from (no packet is sent)."""
    for target in ("10.255.255.255", "192.0.2.1"):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((target, 9))
                return str(s.getsockname()[0])
        except OSError:
            continue
    return "127.0.0.1"


def machine(data_dir: str, hostname: str = "") -> Machine:
    os.makedirs(data_dir, exist_ok=True)
    st = os.statvfs(data_dir)
    return Machine(cpus=os.cpu_count() or 1, memory_bytes=meminfo().get("MemTotal", 0),
                   storage_bytes=st.f_blocks * st.f_frsize,
                   hostname=hostname or socket.gethostname().lower(), internal_ip=internal_ip())


def capacity(m: Machine) -> dict[str, str]:
    return {"cpu": str(m.cpus), "memory": f"{m.memory_bytes // 1024}Ki",
            "ephemeral-storage": f"{m.storage_bytes // 1024}Ki", "pods": str(MAX_PODS),
            "hugepages-1Gi": "0", "hugepages-2Mi": "0"}


def node_info(runtime_version: str) -> dict[str, str]:
    os_image = "Linux"
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_image = line.split("=", 1)[1].strip('"')
    machine_id = _read("/etc/machine-id")
    return {
        "machineID": machine_id, "systemUUID": _read("/sys/class/dmi/id/product_uuid", machine_id),
        "bootID": _read("/proc/sys/kernel/random/boot_id"), "kernelVersion": platform.release(),
        "osImage": os_image, "containerRuntimeVersion": runtime_version,
        "kubeletVersion": AGENT_VERSION, "kubeProxyVersion": "", "operatingSystem": "linux",
        "architecture": _ARCH.get(platform.machine(), platform.machine()),
    }


def node_labels(name: str) -> dict[str, str]:
    return {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
            "kubernetes.io/arch": _ARCH.get(platform.machine(), platform.machine()),
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": _ARCH.get(platform.machine(), platform.machine())}


@dataclass
class Pressure:
    """Which eviction signals are under their thresholds (eviction.py observes them)."""

    memory: bool = False
    disk: bool = False
    pid: bool = False


_CONDITIONS = {
    # type: (reason when False, message when False, reason when True, message when True)
    "MemoryPressure": ("KubeletHasSufficientMemory", "kubelet has sufficient memory available",
                       "KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
    "DiskPressure": ("KubeletHasNoDiskPressure", "kubelet has no disk pressure",
                     "KubeletHasDiskPressure", "kubelet has disk pressure"),
    "PIDPressure": ("KubeletHasSufficientPID", "kubelet has sufficient PID available",
                    "KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
}


def node_conditions(old: list[Obj], p: Pressure, runtime_ready: bool, runtime_message: str = "") -> list[Obj]:
    now = meta.now()
    prev = {c.get("type"): c for c in old}

    def cond(ctype: str, ok: bool, reason: str, message: str) -> Obj:
        status = "True" if ok else "False"
        before = prev.get(ctype)
        moved = before is None or before.get("status") != status
        return {"type": ctype, "status": status, "lastHeartbeatTime": now,
                "lastTransitionTime": now if moved else before.get("lastTransitionTime", now),  # type: ignore[union-attr]
                "reason": reason, "message": message}

    out = []
    for ctype, flag in (("MemoryPressure", p.memory), ("DiskPressure", p.disk), ("PIDPressure", p.pid)):
        rf, mf, rt, mt = _CONDITIONS[ctype]
        out.append(cond(ctype, flag, rt if flag else rf, mt if flag else mf))
    if runtime_ready:
        out.append(cond("Ready", True, "KubeletReady", "kubelet is posting ready status"))
    else:
        out.append(cond("Ready", False, "KubeletNotReady",
                        f"container runtime is down: {runtime_message}".rstrip(": ")))
    return out


def node_object(name: str, m: Machine, runtime_version: str, conditions: list[Obj],
                images: list[Obj] | None = None) -> Obj:
    cap = capacity(m)
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": node_labels(name)},
        "spec": {},
        "status": {
            "capacity": cap, "allocatable": dict(cap), "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": m.internal_ip},
                          {"type": "Hostname", "address": m.hostname}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": node_info(runtime_version), "images": images or [],
        },
    }


async def register(client: Client, node: Obj) -> Obj:
    """Create the Node, or take over an existing one of that name (labels merged,
    status replaced): a re-registering agent keeps the node's spec (podCIDR, taints)."""
    name = node["metadata"]["name"]
    try:
        await client.create(NODES, node)
        log.info("node registered node=%s", name)
    except ApiError as e:
        if e.code != 409:
            raise
        await client.patch(NODES, "", name, {"metadata": {"labels": node["metadata"]["labels"]}})
        log.info("node re-registered node=%s", name)
    return await client.patch(NODES, "", name, {"status": node["status"]}, subresource="status")


def lease_object(node: Obj, now: str) -> Obj:
    md = node["metadata"]
    return {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": md["name"], "namespace": LEASE_NAMESPACE,
                     "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": md["name"],
                                          "uid": md.get("uid", "")}]},
        "spec": {"holderIdentity": md["name"], "leaseDurationSeconds": LEASE_DURATION,
                 "renewTime": now},
    }


async def renew_lease(client: Client, node: Obj) -> None:
    name = node["metadata"]["name"]
    now = meta.now_micro()
    try:
        await client.patch(LEASES, LEASE_NAMESPACE, name, {"spec": {"renewTime": now,
                                                                      "holderIdentity": name}})
    except ApiError as e:
        if e.code != 404:
            raise
        await client.create(LEASES, lease_object(node, now))
