"""Nodes as the scheduler sees them, and the snapshot every cycle reads.

A `NodeInfo` is a node plus the sums over the pods on it (requests, host
ports, pods with affinity terms); a `Snapshot` is all node infos plus the
cluster-wide facts plugins need (namespace labels, which nodes hold which
image). The cache keeps one Snapshot current from the informers; tests and
benchmarks build one directly. Scheduling runs without awaiting, so the
snapshot cannot change under a cycle.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from timonel.scheduler.podinfo import Key, PodInfo
from timonel.scheduler.resources import Resources, resource_list

_generation = itertools.count(1)

HARD_EFFECTS = ("NoSchedule", "NoExecute")


def normalized_image(name: str) -> str:
    """Upstream's image key: a name without a tag means `:latest`."""
    if name.rfind(":") <= name.rfind("/") and "@" not in name:
        return name + ":latest"
    return name


def node_ready(node: dict[str, Any]) -> bool:
    for c in (node.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


@dataclass(slots=True)
class NodeInfo:
    name: str
    node: dict[str, Any] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    allocatable: Resources = field(default_factory=Resources)
    requested: Resources = field(default_factory=Resources)
    non_zero_cpu: int = 0
    non_zero_mem: int = 0
    pods: dict[Key, PodInfo] = field(default_factory=dict)
    pods_with_affinity: dict[Key, PodInfo] = field(default_factory=dict)
    pods_with_required_anti_affinity: dict[Key, PodInfo] = field(default_factory=dict)
    # (protocol, port) -> host IPs in use, with how many pods use each.
    used_ports: dict[tuple[str, int], dict[str, int]] = field(default_factory=dict)
    images: dict[str, int] = field(default_factory=dict)  # normalized name -> size
    taints: list[dict[str, Any]] = field(default_factory=list)
    hard_taints: list[dict[str, Any]] = field(default_factory=list)
    prefer_taints: list[dict[str, Any]] = field(default_factory=list)
    unschedulable: bool = False
    ready: bool = False
    generation: int = 0

    def set_node(self, node: dict[str, Any]) -> None:
        self.node = node
        md = node.get("metadata") or {}
        spec = node.get("spec") or {}
        status = node.get("status") or {}
        self.labels = md.get("labels") or {}
        self.allocatable = resource_list(status.get("allocatable") or status.get("capacity") or {})
        self.taints = [t for t in spec.get("taints") or [] if isinstance(t, dict)]
        self.hard_taints = [t for t in self.taints if t.get("effect") in HARD_EFFECTS]
        self.prefer_taints = [t for t in self.taints if t.get("effect") == "PreferNoSchedule"]
        self.unschedulable = bool(spec.get("unschedulable"))
        self.ready = node_ready(node)
        images: dict[str, int] = {}
        for img in status.get("images") or []:
            if not isinstance(img, dict):
                continue
            size = img.get("sizeBytes") or 0
            for n in img.get("names") or []:
                if isinstance(n, str):
                    images[normalized_image(n)] = size if isinstance(size, int) else 0
        self.images = images
        self.generation = next(_generation)

    def add_pod(self, pi: PodInfo) -> None:
        self.pods[pi.key] = pi
        self.requested.add(pi.requests)
        self.non_zero_cpu += pi.non_zero_cpu
        self.non_zero_mem += pi.non_zero_mem
        if pi.has_affinity:
            self.pods_with_affinity[pi.key] = pi
        if pi.required_anti_affinity:
            self.pods_with_required_anti_affinity[pi.key] = pi
        for proto, ip, port in pi.ports:
            ips = self.used_ports.setdefault((proto, port), {})
            ips[ip] = ips.get(ip, 0) + 1
        self.generation = next(_generation)

    def remove_pod(self, key: Key) -> PodInfo | None:
        pi = self.pods.pop(key, None)
        if pi is None:
            return None
        self.requested.add(pi.requests, -1)
        self.non_zero_cpu -= pi.non_zero_cpu
        self.non_zero_mem -= pi.non_zero_mem
        self.pods_with_affinity.pop(key, None)
        self.pods_with_required_anti_affinity.pop(key, None)
        for proto, ip, port in pi.ports:
            ips = self.used_ports.get((proto, port))
            if ips is not None and ip in ips:
                ips[ip] -= 1
                if ips[ip] <= 0:
                    del ips[ip]
                if not ips:
                    del self.used_ports[(proto, port)]
        self.generation = next(_generation)
        return pi

    def clone(self) -> NodeInfo:
        """A copy whose pods can be added and removed freely (preemption
        simulates on clones)."""
        return NodeInfo(
            name=self.name, node=self.node, labels=self.labels, allocatable=self.allocatable,
            requested=self.requested.clone(), non_zero_cpu=self.non_zero_cpu,
            non_zero_mem=self.non_zero_mem, pods=dict(self.pods),
            pods_with_affinity=dict(self.pods_with_affinity),
            pods_with_required_anti_affinity=dict(self.pods_with_required_anti_affinity),
            used_ports={k: dict(v) for k, v in self.used_ports.items()}, images=self.images,
            taints=self.taints, hard_taints=self.hard_taints, prefer_taints=self.prefer_taints,
            unschedulable=self.unschedulable, ready=self.ready, generation=self.generation)


# Called with (pod info, node info, +1 or -1) whenever a pod joins or leaves a node.
PodWatcher = Callable[[PodInfo, NodeInfo, int], None]


class Snapshot:
    """Every node the scheduler knows, in a stable order for sampling."""

    def __init__(self) -> None:
        self.nodes: list[NodeInfo] = []
        self.by_name: dict[str, NodeInfo] = {}
        self.namespace_labels: dict[str, dict[str, str]] = {}
        # Pods assigned to nodes not (yet) known: kept until the node shows up.
        self.orphans: dict[str, dict[Key, PodInfo]] = {}
        # How many nodes hold each image (ImageLocality spreads by it).
        self.image_nodes: dict[str, int] = {}
        self.pods_with_affinity = 0
        self.pods_with_required_anti_affinity = 0
        self.pod_watchers: list[PodWatcher] = []
        # Pods nominated to a node by preemption: node -> key -> pod.
        self.nominated: dict[str, dict[Key, PodInfo]] = {}
        # Plugin-owned indexes kept with the snapshot (by plugin name).
        self.extras: dict[str, Any] = {}
        # The selector of the Services/ReplicaSets/StatefulSets a pod belongs
        # to, for PodTopologySpread's system default constraints (None: off).
        self.default_spread_selector: Callable[[PodInfo], Any] | None = None
        # Bumped whenever the set of nodes or any node's labels change.
        self.node_generation = 0

    def __len__(self) -> int:
        return len(self.nodes)

    # -- nodes -----------------------------------------------------------------

    def set_node(self, node: dict[str, Any]) -> NodeInfo:
        name = str((node.get("metadata") or {}).get("name") or "")
        ni = self.by_name.get(name)
        if ni is None:
            ni = NodeInfo(name)
            self.by_name[name] = ni
            self.nodes.append(ni)
            ni.set_node(node)
            self._count_images(ni, 1)
            self.node_generation += 1
            for pi in self.orphans.pop(name, {}).values():
                self._attach(pi, ni)
            return ni
        old_labels = ni.labels
        self._count_images(ni, -1)
        ni.set_node(node)
        self._count_images(ni, 1)
        if old_labels != ni.labels:
            self.node_generation += 1
        return ni

    def remove_node(self, name: str) -> None:
        ni = self.by_name.pop(name, None)
        if ni is None:
            return
        self.nodes = [n for n in self.nodes if n.name != name]
        self._count_images(ni, -1)
        self.node_generation += 1
        # Its pods stay known (they still exist) until their own deletes arrive.
        if ni.pods:
            for pi in list(ni.pods.values()):
                self._detach(pi, ni)
            self.orphans[name] = {k: p for k, p in ni.pods.items()}
            ni.pods = {}

    def _count_images(self, ni: NodeInfo, sign: int) -> None:
        for img in ni.images:
            n = self.image_nodes.get(img, 0) + sign
            if n > 0:
                self.image_nodes[img] = n
            else:
                self.image_nodes.pop(img, None)

    # -- pods ------------------------------------------------------------------

    def add_pod(self, pi: PodInfo) -> None:
        ni = self.by_name.get(pi.node_name)
        if ni is None:
            self.orphans.setdefault(pi.node_name, {})[pi.key] = pi
            return
        self._attach(pi, ni)

    def remove_pod(self, pi: PodInfo) -> None:
        ni = self.by_name.get(pi.node_name)
        if ni is None:
            orphans = self.orphans.get(pi.node_name)
            if orphans is not None:
                orphans.pop(pi.key, None)
                if not orphans:
                    del self.orphans[pi.node_name]
            return
        old = ni.pods.get(pi.key)
        if old is not None:
            ni.remove_pod(pi.key)
            self._after(old, ni, -1)

    def _attach(self, pi: PodInfo, ni: NodeInfo) -> None:
        ni.add_pod(pi)
        self._after(pi, ni, 1)

    def _detach(self, pi: PodInfo, ni: NodeInfo) -> None:
        self._after(pi, ni, -1)

    def _after(self, pi: PodInfo, ni: NodeInfo, sign: int) -> None:
        if pi.has_affinity:
            self.pods_with_affinity += sign
        if pi.required_anti_affinity:
            self.pods_with_required_anti_affinity += sign
        for w in self.pod_watchers:
            w(pi, ni, sign)
