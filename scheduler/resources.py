"""Resource arithmetic the scheduler does per pod and per node, in integers.

cpu in millicores, memory and ephemeral-storage in bytes, every other
resource (extended resources, hugepages) as its integer value, like
upstream's `framework.Resource`. A pod's request follows upstream's
`PodRequests`: the sum of its containers, raised to the largest init
container (sidecars — init containers with restartPolicy Always — run
alongside everything after them), plus the pod overhead. Quantities are
parsed exactly once per distinct string (they repeat across thousands of
pods).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from timonel.api.quantity import QuantityError, int_value, milli_value

CPU, MEMORY, EPHEMERAL, PODS = "cpu", "memory", "ephemeral-storage", "pods"
# What scoring assumes of a container that requests nothing (upstream's
# DefaultMilliCPURequest and DefaultMemoryRequest), so that zero-request
# pods still spread.
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY = 200 * 1024 * 1024


@functools.lru_cache(maxsize=4096)
def _milli(value: str | int | float) -> int:
    try:
        return milli_value(value)
    except QuantityError:
        return 0


@functools.lru_cache(maxsize=4096)
def _value(value: str | int | float) -> int:
    try:
        return int_value(value)
    except QuantityError:
        return 0


def quantity_of(name: str, value: Any) -> int:
    """One resource quantity as the scheduler counts it."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return 0
    return _milli(value) if name == CPU else _value(value)


def is_scalar_resource(name: str) -> bool:
    """Extended resources (vendor.com/x), hugepages-*, attachable volumes:
    the resources besides cpu/memory/ephemeral-storage/pods that fit checks."""
    return name not in (CPU, MEMORY, EPHEMERAL, PODS) and (
        "/" in name or name.startswith("hugepages-"))


@dataclass(slots=True)
class Resources:
    milli_cpu: int = 0
    memory: int = 0
    ephemeral: int = 0
    pods: int = 0
    scalar: dict[str, int] = field(default_factory=dict)

    def clone(self) -> Resources:
        return Resources(self.milli_cpu, self.memory, self.ephemeral, self.pods, dict(self.scalar))

    def add(self, other: Resources, sign: int = 1) -> None:
        self.milli_cpu += sign * other.milli_cpu
        self.memory += sign * other.memory
        self.ephemeral += sign * other.ephemeral
        self.pods += sign * other.pods
        for k, v in other.scalar.items():
            self.scalar[k] = self.scalar.get(k, 0) + sign * v

    def set_max(self, other: Resources) -> None:
        self.milli_cpu = max(self.milli_cpu, other.milli_cpu)
        self.memory = max(self.memory, other.memory)
        self.ephemeral = max(self.ephemeral, other.ephemeral)
        for k, v in other.scalar.items():
            self.scalar[k] = max(self.scalar.get(k, 0), v)

    def get(self, name: str) -> int:
        if name == CPU:
            return self.milli_cpu
        if name == MEMORY:
            return self.memory
        if name == EPHEMERAL:
            return self.ephemeral
        if name == PODS:
            return self.pods
        return self.scalar.get(name, 0)

    def is_zero(self) -> bool:
        return not (self.milli_cpu or self.memory or self.ephemeral or any(self.scalar.values()))


def resource_list(rl: Any) -> Resources:
    """A ResourceList ({"cpu": "500m", ...}) as Resources."""
    r = Resources()
    if not isinstance(rl, dict):
        return r
    for name, value in rl.items():
        q = quantity_of(name, value)
        if name == CPU:
            r.milli_cpu = q
        elif name == MEMORY:
            r.memory = q
        elif name == EPHEMERAL:
            r.ephemeral = q
        elif name == PODS:
            r.pods = q
        elif is_scalar_resource(name):
            r.scalar[name] = q
    return r


def _requests_of(container: Any) -> dict[str, Any]:
    if not isinstance(container, dict):
        return {}
    req = (container.get("resources") or {}).get("requests")
    return req if isinstance(req, dict) else {}


def _non_zero(req: dict[str, Any]) -> tuple[int, int]:
    cpu = quantity_of(CPU, req[CPU]) if CPU in req else DEFAULT_MILLI_CPU
    mem = quantity_of(MEMORY, req[MEMORY]) if MEMORY in req else DEFAULT_MEMORY
    return cpu, mem


def pod_requests(spec: dict[str, Any]) -> tuple[Resources, int, int]:
    """(requests, non-zero milli cpu, non-zero memory) of a pod spec.

    The non-zero pair is what scoring uses (DEFAULT_* for containers that
    request nothing), computed with the same init-container rule."""
    reqs = Resources()
    nz_cpu = nz_mem = 0
    for c in spec.get("containers") or []:
        req = _requests_of(c)
        reqs.add(resource_list(req))
        cpu, mem = _non_zero(req)
        nz_cpu += cpu
        nz_mem += mem
    init_max = Resources()
    init_nz = [0, 0]
    sidecars = Resources()
    sidecar_nz = [0, 0]
    for c in spec.get("initContainers") or []:
        req = _requests_of(c)
        r = resource_list(req)
        cpu, mem = _non_zero(req)
        if isinstance(c, dict) and c.get("restartPolicy") == "Always":
            # A sidecar runs next to the app containers and every later init container.
            reqs.add(r)
            nz_cpu += cpu
            nz_mem += mem
            sidecars.add(r)
            sidecar_nz[0] += cpu
            sidecar_nz[1] += mem
            r = sidecars.clone()
            cpu, mem = sidecar_nz
        else:
            r.add(sidecars)
            cpu += sidecar_nz[0]
            mem += sidecar_nz[1]
        init_max.set_max(r)
        init_nz[0] = max(init_nz[0], cpu)
        init_nz[1] = max(init_nz[1], mem)
    reqs.set_max(init_max)
    nz_cpu = max(nz_cpu, init_nz[0])
    nz_mem = max(nz_mem, init_nz[1])
    # Pod-level resources, where given, replace the container sum for those resources.
    pod_level = (spec.get("resources") or {}).get("requests") if isinstance(
        spec.get("resources"), dict) else None
    if isinstance(pod_level, dict) and pod_level:
        lvl = resource_list(pod_level)
        if CPU in pod_level:
            reqs.milli_cpu = nz_cpu = lvl.milli_cpu
        if MEMORY in pod_level:
            reqs.memory = nz_mem = lvl.memory
        if EPHEMERAL in pod_level:
            reqs.ephemeral = lvl.ephemeral
        reqs.scalar.update(lvl.scalar)
    overhead = spec.get("overhead")
    if isinstance(overhead, dict) and overhead:
        ov = resource_list(overhead)
        reqs.add(ov)
        nz_cpu += ov.milli_cpu
        nz_mem += ov.memory
    reqs.pods = 1
    return reqs, nz_cpu, nz_mem
