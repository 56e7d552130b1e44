"""Node-pressure eviction, as the kubelet's eviction manager does it with hard thresholds.

Signals are observed from the machine (memory.available from /proc/meminfo,
nodefs.* from statvfs of the data dir, imagefs.* only when the image store is
on another filesystem, pid.available from pid_max and the kernel's task
count). A signal below its threshold sets the Node condition (MemoryPressure,
DiskPressure, PIDPressure) and evicts one pod per pass, ranked like upstream;
the pod is killed at once and left in the API as Failed/Evicted for its
controller to replace.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import grpc

from timonel.api import meta
from timonel.api.client.events import WARNING
from timonel.api.quantity import (
    BINARY_SI,
    QuantityError,
    canonical_quantity,
    format_quantity,
    int_value,
    parse_quantity,
)
from timonel.api.tolerations import tolerated_by_any
from timonel.node_agent.runtime.api import runtime_pb2 as pb

from . import containers as cfgs
from .node import Pressure, meminfo
from .pods import AgentContext, read_state, stop_pod, write_status
from .status import pod_status
from .volumes import pod_dir, volume_dir

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# Upstream's Linux defaults for --eviction-hard (it has no pid.available default).
DEFAULT_PRESSURE_TRANSITION_SECONDS = 300.0  # upstream's 5m0s
DEFAULT_EVICTION_HARD = ("memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,"
                         "imagefs.available<15%,imagefs.inodesFree<5%")
# In upstream's order of eviction priority: memory first.
SIGNALS = ("memory.available", "nodefs.available", "nodefs.inodesFree", "imagefs.available",
           "imagefs.inodesFree", "pid.available")
# The resource named in the message and used for ranking (upstream's signalToResource).
RESOURCE = {"memory.available": "memory", "nodefs.available": "ephemeral-storage",
            "nodefs.inodesFree": "inodes", "imagefs.available": "ephemeral-storage",
            "imagefs.inodesFree": "inodes", "pid.available": "pids"}
QOS_ORDER = {"BestEffort": 0, "Burstable": 1, "Guaranteed": 2}
# system-cluster-critical and above: admitted whatever the pressure (upstream's IsCriticalPod).
CRITICAL_PRIORITY = 2_000_000_000
MEMORY_PRESSURE_TAINT = "node.kubernetes.io/memory-pressure"


class ThresholdError(ValueError):
    """A bad --eviction-hard value; the message says which part and why."""


@dataclass(frozen=True)
class Threshold:
    signal: str
    quantity: int | None = None  # absolute: bytes, inodes or pids
    percentage: Decimal | None = None  # of the signal's capacity, 0 < p < 1
    text: str = ""  # as written


@dataclass(frozen=True)
class Observation:
    available: int
    capacity: int


@dataclass
class PodUsage:
    memory: int = 0  # working set bytes, all containers
    processes: int = 0
    disk: int = 0  # bytes of its volumes on the node's disk and its logs
    inodes: int = 0
    containers: dict[str, int] = field(default_factory=dict)  # container name -> working set


def parse_thresholds(text: str) -> list[Threshold]:
    """`signal<value` pairs separated by commas, values a quantity or a percentage
    (upstream's syntax; 0% and 100% mean no threshold, as upstream)."""
    out: dict[str, Threshold] = {}
    for pair in (p.strip() for p in text.split(",")):
        if not pair:
            continue
        signal, sep, value = pair.partition("<")
        signal, value = signal.strip(), value.strip()
        if not sep or not signal or not value:
            raise ThresholdError(f"{pair!r}: malformed pair, expected <signal><<value>, "
                                 f"e.g. memory.available<100Mi")
        if signal not in SIGNALS:
            raise ThresholdError(f"{pair!r}: unsupported eviction signal {signal} "
                                 f"(supported: {', '.join(SIGNALS)})")
        if value.endswith("%"):
            if value in ("0%", "100%"):
                continue
            try:
                pct = Decimal(value[:-1]) / 100
            except ArithmeticError:
                raise ThresholdError(f"{pair!r}: {value} is not a percentage") from None
            if not 0 < pct < 1:
                raise ThresholdError(f"{pair!r}: eviction percentage threshold {signal} must be "
                                     f"between 0% and 100%: {value}")
            out[signal] = Threshold(signal, percentage=pct, text=value)
            continue
        try:
            amount = parse_quantity(value)
        except QuantityError as e:
            raise ThresholdError(f"{pair!r}: {e}") from None
        if amount <= 0:
            raise ThresholdError(f"{pair!r}: eviction threshold {signal} must be positive: {value}")
        out[signal] = Threshold(signal, quantity=int_value(value), text=value)
    return list(out.values())


def allocatable(capacity: dict[str, str], thresholds: list[Threshold]) -> dict[str, str]:
    """Capacity less the hard eviction reservation (memory.available, nodefs.available),
    as upstream: what pods may use before the node evicts them."""
    out = dict(capacity)
    for resource, signal in (("memory", "memory.available"), ("ephemeral-storage", "nodefs.available")):
        t = next((t for t in thresholds if t.signal == signal), None)
        if t is None or resource not in capacity:
            continue
        cap = int_value(capacity[resource])
        out[resource] = format_quantity(max(cap - threshold_quantity(t, Observation(cap, cap)), 0), BINARY_SI)
    return out


def _fs(prefix: str, path: str) -> dict[str, Observation]:
    st = os.statvfs(path)
    return {f"{prefix}.available": Observation(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize),
            f"{prefix}.inodesFree": Observation(st.f_favail, st.f_files)}


def _pids() -> Observation:
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read().strip() or 32768)
    with open("/proc/loadavg") as f:
        # "0.10 0.05 0.01 2/345 6789": 345 tasks (threads) exist, each holding a pid.
        tasks = int(f.read().split()[3].split("/")[1])
    return Observation(max(pid_max - tasks, 0), pid_max)


def observe(data_dir: str, image_dir: str = "") -> dict[str, Observation]:
    """Every signal's available amount and capacity now."""
    mem = meminfo()
    out = {"memory.available": Observation(mem.get("MemAvailable", mem.get("MemFree", 0)),
                                           mem.get("MemTotal", 0)),
           "pid.available": _pids()}
    out.update(_fs("nodefs", data_dir))
    if image_dir and os.path.isdir(image_dir) and os.stat(image_dir).st_dev != os.stat(data_dir).st_dev:
        out.update(_fs("imagefs", image_dir))
    return out


def threshold_quantity(t: Threshold, obs: Observation) -> int:
    if t.percentage is not None:
        return int(obs.capacity * t.percentage)
    return t.quantity or 0


def thresholds_met(thresholds: list[Threshold], observed: dict[str, Observation]) -> list[Threshold]:
    """The thresholds whose signal is below them, most urgent (memory) first."""
    met = [t for t in thresholds if t.signal in observed
           and observed[t.signal].available < threshold_quantity(t, observed[t.signal])]
    return sorted(met, key=lambda t: SIGNALS.index(t.signal))


def pressure_of(met: list[Threshold]) -> Pressure:
    signals = {t.signal for t in met}
    return Pressure(memory="memory.available" in signals,
                    disk=any(s.startswith(("nodefs.", "imagefs.")) for s in signals),
                    pid="pid.available" in signals)


def held_pressure(met: list[Threshold], last_seen: dict[str, float], now: float, period: float) -> Pressure:
    """Pressure conditions stay on until their signals have been clear for `period`
    seconds (upstream's --eviction-pressure-transition-period), so they do not flap;
    `last_seen` (condition -> monotonic time) is the caller's memory between calls."""
    current = pressure_of(met)
    held = {}
    for name in ("memory", "disk", "pid"):
        if getattr(current, name):
            last_seen[name] = now
        held[name] = bool(getattr(current, name)) or (name in last_seen and now - last_seen[name] < period)
    return Pressure(**held)


def parse_duration(value: str) -> float:
    """Seconds in a Go duration ("5m0s", "30s", "1h30m", "500ms"), as the kubelet's flags take."""
    if value.strip() == "0":
        return 0.0
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value.strip())
    if not parts or "".join(n + u for n, u in parts) != value.strip():
        raise ThresholdError(f"{value!r} is not a duration (like 5m0s, 30s or 1h)")
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001}[u] for n, u in parts)


def _quantity(value: Any) -> int:
    try:
        return int_value(value) if value is not None else 0
    except QuantityError:
        return 0


def container_request(c: Obj, resource: str) -> int:
    res = c.get("resources") or {}
    value = (res.get("requests") or {}).get(resource, (res.get("limits") or {}).get(resource))
    return _quantity(value)


def pod_request(pod: Obj, resource: str) -> int:
    """Sum over containers, at least the largest init container (upstream's effective request)."""
    spec = pod.get("spec") or {}
    total = sum(container_request(c, resource) for c in spec.get("containers") or [])
    inits = [container_request(c, resource) for c in spec.get("initContainers") or []]
    return max([total, *inits])


def rank(pods: list[Obj], usage: dict[str, PodUsage], resource: str) -> list[Obj]:
    """Pods in eviction order for `resource`, as upstream's rank functions:
    memory and disk: usage above requests first, then lower priority, then usage
    above requests; inodes: priority then inodes used; pids: priority then
    process count. QoS (BestEffort first) breaks ties."""

    def key(pod: Obj) -> tuple[int, int, int, int]:
        u = usage.get(str(pod["metadata"].get("uid", "")), PodUsage())
        priority = int((pod.get("spec") or {}).get("priority") or 0)
        qos = QOS_ORDER.get((pod.get("status") or {}).get("qosClass") or cfgs.qos_class(pod), 1)
        if resource == "memory":
            over = u.memory - pod_request(pod, "memory")
            return (0 if over > 0 else 1, priority, -over, qos)
        if resource == "pids":
            return (0, priority, -u.processes, qos)
        if resource == "inodes":
            return (0, priority, -u.inodes, qos)
        over = u.disk - pod_request(pod, "ephemeral-storage")
        return (0 if over > 0 else 1, priority, -over, qos)

    return sorted(pods, key=key)


def eviction_message(pod: Obj, t: Threshold, obs: Observation, usage: PodUsage) -> str:
    """Upstream's wording (trailing space included), so tools matching it keep working."""
    resource = RESOURCE[t.signal]
    if resource in ("memory", "ephemeral-storage"):
        fmt = BINARY_SI
        quantity = format_quantity(threshold_quantity(t, obs), fmt)
        available = format_quantity(obs.available, fmt)
    else:
        quantity, available = str(threshold_quantity(t, obs)), str(obs.available)
    msg = (f"The node was low on resource: {resource}. "
           f"Threshold quantity: {quantity}, available: {available}. ")
    if resource == "memory":
        for c in (pod.get("spec") or {}).get("containers") or []:
            used = usage.containers.get(str(c.get("name")))
            request = container_request(c, "memory")
            if used is not None and used > request:
                req = ((c.get("resources") or {}).get("requests") or {}).get("memory") or \
                      format_quantity(request, BINARY_SI)
                msg += (f"Container {c.get('name')} was using {format_quantity(used, BINARY_SI)}, "
                        f"request is {req}, has larger consumption of memory. ")
    return msg


def _pod_usage(ctx: AgentContext) -> dict[str, PodUsage]:
    """Working set and processes of every running container of this node, by pod uid."""
    out: dict[str, PodUsage] = {}
    try:
        listed = ctx.runtime.list_containers(pb.ContainerFilter(label_selector={cfgs.NODE: ctx.node}))
    except grpc.RpcError as e:  # ranked without usage this time, rather than not evicting
        log.warning("no container stats for eviction ranking err=%s", e.details())  # type: ignore[attr-defined]
        return out
    for c in listed:
        if c.state != pb.CONTAINER_RUNNING:
            continue
        try:
            st = ctx.runtime.container_stats(c.id)
        except grpc.RpcError as e:  # gone meanwhile; its pod ranks without it
            log.debug("no stats container=%s err=%s", c.id, e)
            continue
        u = out.setdefault(c.labels.get(cfgs.POD_UID, ""), PodUsage())
        mem = int(st.memory.working_set_bytes.value)
        u.memory += mem
        u.containers[c.metadata.name] = mem
        u.processes += int(st.process.process_count.value)
    return out


def admit(pod: Obj, pressure: Pressure) -> str | None:
    """Why a new pod may not start under pressure (None: admitted), as upstream's
    eviction admission: memory pressure alone turns away BestEffort pods that do
    not tolerate the memory-pressure taint; other pressure turns away every pod;
    critical pods always start."""
    conditions = [name for name, on in (("MemoryPressure", pressure.memory), ("DiskPressure", pressure.disk),
                                        ("PIDPressure", pressure.pid)) if on]
    if not conditions or int((pod.get("spec") or {}).get("priority") or 0) >= CRITICAL_PRIORITY:
        return None
    if conditions == ["MemoryPressure"]:
        if cfgs.qos_class(pod) != "BestEffort":
            return None
        taint = {"key": MEMORY_PRESSURE_TAINT, "effect": "NoSchedule"}
        if tolerated_by_any(taint, (pod.get("spec") or {}).get("tolerations") or []):
            return None
    return f"The node had condition: [{' '.join(conditions)}]. "


async def reject_pod(ctx: AgentContext, pod: Obj, message: str) -> None:
    """A pod turned away at admission: never started, Failed with upstream's reason and message."""
    md = pod["metadata"]
    log.warning("pod rejected pod=%s/%s message=%r", md.get("namespace"), md.get("name"), message)
    await ctx.recorder.event(pod, WARNING, "Evicted", message)
    state = await read_state(ctx, str(md["uid"]), "")
    await write_status(ctx, pod, state, {"phase": "Failed", "reason": "Evicted",
                                         "message": "Pod was rejected: " + message})


def _dir_usage(path: str) -> tuple[int, int]:
    """Bytes allocated and inodes under `path`, not crossing into mounts (tmpfs emptyDirs)."""
    size = inodes = 0
    for root, dirs, files in os.walk(path):
        dirs[:] = [d for d in dirs if not os.path.ismount(os.path.join(root, d))]
        inodes += len(dirs) + len(files)
        for name in files:
            try:
                size += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return size, inodes


def add_disk_usage(ctx: AgentContext, pods: list[Obj], usage: dict[str, PodUsage]) -> None:
    """What each pod holds on the node's disk: its volume dirs and its container logs
    (upstream also counts the writable layer, which the runtime keeps to itself)."""
    for pod in pods:
        uid = str(pod["metadata"]["uid"])
        u = usage.setdefault(uid, PodUsage())
        for path in (pod_dir(ctx.data_dir, uid), cfgs.log_directory(ctx.data_dir, pod)):
            size, inodes = _dir_usage(path)
            u.disk += size
            u.inodes += inodes


def local_storage_violation(data_dir: str, pod: Obj) -> str | None:
    """Why the pod outgrew its own local storage limits (upstream's localStorageEviction,
    which evicts whatever the node's pressure): a disk emptyDir over its sizeLimit, or
    volumes and logs over the sum of its containers' ephemeral-storage limits."""
    md, spec = pod["metadata"], pod.get("spec") or {}
    uid = str(md["uid"])
    total = 0
    for vol in spec.get("volumes") or []:
        ed = vol.get("emptyDir")
        if ed is None or (ed or {}).get("medium") == "Memory":  # tmpfs: its size is the limit
            continue
        used, _ = _dir_usage(volume_dir(data_dir, uid, str(vol["name"])))
        total += used
        limit = (ed or {}).get("sizeLimit")
        if limit is not None and used > _quantity(limit):
            return f'Usage of EmptyDir volume "{vol["name"]}" exceeds the limit "{canonical_quantity(limit)}". '
    limits = [((c.get("resources") or {}).get("limits") or {}).get("ephemeral-storage")
              for c in spec.get("containers") or []]
    pod_limit = sum(_quantity(x) for x in limits if x is not None)
    if pod_limit:
        total += _dir_usage(cfgs.log_directory(data_dir, pod))[0]
        if total > pod_limit:
            return (f"Pod ephemeral local storage usage exceeds the total limit of containers "
                    f"{format_quantity(pod_limit, BINARY_SI)}. ")
    return None


def has_local_storage_limits(pod: Obj) -> bool:
    spec = pod.get("spec") or {}
    return any((v.get("emptyDir") or {}).get("sizeLimit") is not None for v in spec.get("volumes") or []) or \
        any("ephemeral-storage" in ((c.get("resources") or {}).get("limits") or {})
            for c in spec.get("containers") or [])


def local_storage_evictions(data_dir: str, pods: list[Obj]) -> list[tuple[Obj, str]]:
    return [(p, msg) for p in candidates(pods) if has_local_storage_limits(p)
            and (msg := local_storage_violation(data_dir, p)) is not None]


def candidates(pods: list[Obj]) -> list[Obj]:
    """Pods that still run here: not terminal, not being deleted."""
    return [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]


async def evict_pod(ctx: AgentContext, pod: Obj, message: str) -> None:
    """Kill the pod at once (a hard threshold allows no grace) and leave it Failed/Evicted."""
    md = pod["metadata"]
    uid = str(md["uid"])
    log.warning("evicting pod=%s/%s reason=Evicted message=%r", md.get("namespace"), md.get("name"), message)
    await ctx.recorder.event(pod, WARNING, "Evicted", message)
    await stop_pod(ctx, pod, uid, grace=0, remove=False)
    state = await read_state(ctx, uid, "")
    status = pod_status(pod, state, ctx.host_ip)
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionTarget"]
    conditions.append({"type": "DisruptionTarget", "status": "True", "lastTransitionTime": meta.now(),
                       "reason": "TerminationByKubelet", "message": message})
    await write_status(ctx, pod, state, {"phase": "Failed", "reason": "Evicted", "message": message,
                                         "conditions": conditions})


async def choose_victim(ctx: AgentContext, pods: list[Obj], met: list[Threshold],
                        observed: dict[str, Observation]) -> tuple[Obj, str] | None:
    """The pod to evict for the most urgent threshold met, with its message."""
    live = candidates(pods)
    if not met or not live:
        return None
    t = met[0]
    usage = await asyncio.to_thread(_pod_usage, ctx)
    if RESOURCE[t.signal] in ("ephemeral-storage", "inodes"):
        await asyncio.to_thread(add_disk_usage, ctx, live, usage)
    victim = rank(live, usage, RESOURCE[t.signal])[0]
    return victim, eviction_message(victim, t, observed[t.signal],
                                    usage.get(str(victim["metadata"]["uid"]), PodUsage()))
