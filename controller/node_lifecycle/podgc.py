"""Pod garbage collection for pods bound to nodes that no longer exist.

No kubelet will ever finish such a pod, so after a quarantine (upstream:
40 s, in case the node is only being re-registered) and a live check that
the node is really gone, the pod is marked Failed with a DisruptionTarget
condition and force-deleted (grace period 0), so its controller replaces it.
"""

from __future__ import annotations

import asyncio
import logging

from timonel.api import meta
from timonel.api.client import Informer
from timonel.api.errors import ApiError
from timonel.controller.context import ControllerContext
from timonel.controller.node_lifecycle.nodeutil import (
    NODES,
    PODS,
    Obj,
    deep_copy,
    pod_node,
    set_pod_condition,
)

log = logging.getLogger(__name__)

DEFAULT_QUARANTINE = 40.0


class OrphanPodGC:
    def __init__(self, ctx: ControllerContext, nodes: Informer, pods: Informer) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.nodes = nodes
        self.pods = pods
        self.quarantine = float(ctx.options.extra.get("pod_gc_quarantine",  # type: ignore[arg-type]
                                                      DEFAULT_QUARANTINE))
        self.period = float(ctx.options.extra.get("pod_gc_period",  # type: ignore[arg-type]
                                                  min(20.0, ctx.options.node_monitor_period)))
        # node name -> our clock when we first saw pods bound to it while it was absent
        self.missing_since: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.gc()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("orphan pod gc pass failed")
            await asyncio.sleep(self.period)

    async def gc(self) -> None:
        now = asyncio.get_running_loop().time()
        known = {meta.name_of(n) for n in self.nodes.list()}
        orphans: dict[str, list[Obj]] = {}
        for pod in self.pods.list():
            node = pod_node(pod)
            if node and node not in known:
                orphans.setdefault(node, []).append(pod)
        for node in list(self.missing_since):
            if node not in orphans:
                del self.missing_since[node]
        for node, pods in orphans.items():
            since = self.missing_since.setdefault(node, now)
            if now - since < self.quarantine:
                continue
            try:
                await self.client.get(NODES, "", node)
                continue  # the informer lags: the node exists
            except ApiError as e:
                if e.code != 404:
                    raise
            for pod in pods:
                await self.delete_orphan(pod, node)

    async def delete_orphan(self, pod: Obj, node: str) -> None:
        ns, name = meta.namespace_of(pod), meta.name_of(pod)
        log.info("deleting pod bound to a node that no longer exists pod=%s/%s node=%s",
                 ns, name, node)
        phase = (pod.get("status") or {}).get("phase")
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        if phase not in ("Succeeded", "Failed"):
            fresh = deep_copy(pod)
            fresh["status"]["phase"] = "Failed"
            set_pod_condition(fresh, {"type": "DisruptionTarget", "status": "True",
                                      "reason": "DeletionByPodGC",
                                      "message": "PodGC: node no longer exists"}, meta.now())
            try:
                await self.client.update_status(PODS, fresh)
            except ApiError as e:
                if e.code == 404:
                    return
                if e.code != 409:
                    raise
        try:
            await self.client.delete(PODS, ns, name, grace_period_seconds=0,
                                     preconditions={"uid": uid} if uid else None)
        except ApiError as e:
            if e.code not in (404, 409):
                raise
