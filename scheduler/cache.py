"""The scheduler's view of the cluster, fed by informers.

Keeps the Snapshot (nodes and the pods on them) current, resolves pod
priorities from PriorityClasses, and *assumes* pods: a pod the scheduler
has just placed counts on its node at once, before the bind is written and
long before the watch reports it, so the next decision already sees it. The
assumption is confirmed when the informer shows the pod bound, or dropped
(`forget`) if the bind fails.
"""

from __future__ import annotations

import logging
from typing import Any

from timonel.scheduler.nodeinfo import NodeInfo, Snapshot
from timonel.scheduler.podinfo import Key, PodInfo, new_pod_info, pod_key

log = logging.getLogger(__name__)

TERMINAL_PHASES = ("Succeeded", "Failed")


def is_terminal(pod: dict[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in TERMINAL_PHASES


def node_name_of(pod: dict[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


class Cache:
    def __init__(self, snapshot: Snapshot | None = None) -> None:
        self.snapshot = snapshot or Snapshot()
        self.pods: dict[Key, PodInfo] = {}  # pods on nodes, assumed ones included
        self.assumed: set[Key] = set()
        # PriorityClass name -> (value, preemptionPolicy or "").
        self.priority_classes: dict[str, tuple[int, str]] = {}
        self._nominated_of: dict[Key, str] = {}

    # -- priorities -----------------------------------------------------------

    def set_priority_class(self, pc: dict[str, Any]) -> None:
        name = str((pc.get("metadata") or {}).get("name") or "")
        value = pc.get("value")
        self.priority_classes[name] = (value if isinstance(value, int) else 0,
                                       str(pc.get("preemptionPolicy") or ""))

    def remove_priority_class(self, pc: dict[str, Any]) -> None:
        self.priority_classes.pop(str((pc.get("metadata") or {}).get("name") or ""), None)

    def priority_of(self, pod: dict[str, Any]) -> int:
        """spec.priority, or the value of spec.priorityClassName's class when
        admission did not resolve it (upstream's Priority admission)."""
        spec = pod.get("spec") or {}
        cls = spec.get("priorityClassName")
        if cls and cls in self.priority_classes:
            return self.priority_classes[cls][0]
        p = spec.get("priority")
        return p if isinstance(p, int) and not isinstance(p, bool) else 0

    def preemption_policy(self, pod: dict[str, Any]) -> str:
        spec = pod.get("spec") or {}
        cls = spec.get("priorityClassName")
        if cls and cls in self.priority_classes and self.priority_classes[cls][1]:
            return self.priority_classes[cls][1]
        return str(spec.get("preemptionPolicy") or "PreemptLowerPriority")

    def pod_info(self, pod: dict[str, Any]) -> PodInfo:
        return new_pod_info(pod, self.priority_of(pod))

    # -- namespaces -----------------------------------------------------------

    def set_namespace(self, ns: dict[str, Any]) -> None:
        md = ns.get("metadata") or {}
        self.snapshot.namespace_labels[str(md.get("name") or "")] = md.get("labels") or {}

    def remove_namespace(self, ns: dict[str, Any]) -> None:
        self.snapshot.namespace_labels.pop(str((ns.get("metadata") or {}).get("name") or ""), None)

    # -- nodes ----------------------------------------------------------------

    def set_node(self, node: dict[str, Any]) -> NodeInfo:
        return self.snapshot.set_node(node)

    def remove_node(self, node: dict[str, Any]) -> None:
        self.snapshot.remove_node(str((node.get("metadata") or {}).get("name") or ""))

    # -- pods on nodes --------------------------------------------------------

    def add_pod(self, pod: dict[str, Any]) -> None:
        """An assigned pod seen by the informer (add or update)."""
        key = pod_key(pod)
        old = self.pods.get(key)
        if is_terminal(pod):
            if old is not None:
                self._remove(old)
            return
        if old is not None and self._unchanged(old, pod):
            # The watch confirming our bind, or a status update: same pod
            # for scheduling purposes, so keep the worked-out PodInfo.
            old.pod = pod
            self.assumed.discard(key)
            self.clear_nominated(key)
            return
        pi = self.pod_info(pod)
        if old is not None:
            if key in self.assumed and old.node_name != pi.node_name:
                log.warning("pod bound elsewhere than assumed pod=%s/%s assumed=%s node=%s",
                            key[0], key[1], old.node_name, pi.node_name)
            self.snapshot.remove_pod(old)
        self.assumed.discard(key)
        self.pods[key] = pi
        self.snapshot.add_pod(pi)
        self.clear_nominated(key)

    @staticmethod
    def _unchanged(old: PodInfo, pod: dict[str, Any]) -> bool:
        md = pod.get("metadata") or {}
        return (old.node_name == node_name_of(pod) and old.uid == md.get("uid")
                and old.terminating == bool(md.get("deletionTimestamp"))
                and old.labels == (md.get("labels") or {})
                and old.pod.get("spec") == pod.get("spec"))

    def remove_pod(self, pod: dict[str, Any]) -> None:
        key = pod_key(pod)
        self.clear_nominated(key)
        old = self.pods.get(key)
        if old is not None:
            self._remove(old)

    def _remove(self, pi: PodInfo) -> None:
        self.pods.pop(pi.key, None)
        self.assumed.discard(pi.key)
        self.snapshot.remove_pod(pi)

    def assume(self, pi: PodInfo, node_name: str) -> PodInfo:
        """Count `pi` on `node_name` now; returns the assumed pod info."""
        pod = dict(pi.pod)
        pod["spec"] = {**(pi.pod.get("spec") or {}), "nodeName": node_name}
        assumed = new_pod_info(pod, pi.priority)
        assumed.signature = pi.signature
        self.pods[pi.key] = assumed
        self.assumed.add(pi.key)
        self.snapshot.add_pod(assumed)
        self.clear_nominated(pi.key)
        return assumed

    def forget(self, pi: PodInfo) -> None:
        """Drop an assumption whose bind failed."""
        if pi.key in self.assumed:
            old = self.pods.get(pi.key)
            if old is not None:
                self._remove(old)

    def is_assumed(self, key: Key) -> bool:
        return key in self.assumed

    # -- nominations (preemption) ---------------------------------------------

    def set_nominated(self, pi: PodInfo, node_name: str) -> None:
        self.clear_nominated(pi.key)
        if not node_name:
            return
        self._nominated_of[pi.key] = node_name
        self.snapshot.nominated.setdefault(node_name, {})[pi.key] = pi

    def clear_nominated(self, key: Key) -> None:
        node = self._nominated_of.pop(key, None)
        if node is None:
            return
        pods = self.snapshot.nominated.get(node)
        if pods is not None:
            pods.pop(key, None)
            if not pods:
                del self.snapshot.nominated[node]

    def nominated_node(self, key: Key) -> str:
        return self._nominated_of.get(key, "")

