"""Taint eviction: pods on a node with NoExecute taints they do not
tolerate are deleted at once; pods tolerating them with tolerationSeconds
are deleted once that many seconds have passed (the admission default is
300 s for not-ready/unreachable, a pod's own value wins).

Timers live in memory like upstream's taint manager: the clock starts when
this loop first sees the pod on the tainted node and keeps the earliest
start while the taints stay, so a restart of the controller can only delay
an eviction, never run one early.
"""

from __future__ import annotations

import asyncio
import logging
import math

from timonel.api import meta
from timonel.api.client import Informer, WorkQueue, run_workers
from timonel.api.errors import ApiError
from timonel.controller.context import ControllerContext
from timonel.controller.node_lifecycle import taints as tt
from timonel.controller.node_lifecycle.nodeutil import (
    PODS,
    Obj,
    deep_copy,
    pod_node,
    pods_on_node,
    set_pod_condition,
)

log = logging.getLogger(__name__)

PodKey = tuple[str, str]


class TaintEvictor:
    def __init__(self, ctx: ControllerContext, nodes: Informer, pods: Informer) -> None:
        self.ctx = ctx
        self.client = ctx.client
        self.nodes = nodes
        self.pods = pods
        self.queue: WorkQueue[PodKey] = WorkQueue(name="taint-eviction")
        # pod -> (uid, our clock when its eviction timer started)
        self.started: dict[PodKey, tuple[str, float]] = {}

    def register(self) -> None:
        self.nodes.add_handler(self._node_added, self._node_updated, self._node_deleted)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    def _enqueue_node_pods(self, node: Obj) -> None:
        for pod in pods_on_node(self.pods, meta.name_of(node)):
            self.queue.add((meta.namespace_of(pod), meta.name_of(pod)))

    def _node_added(self, node: Obj) -> None:
        if tt.no_execute((node.get("spec") or {}).get("taints")):
            self._enqueue_node_pods(node)

    def _node_updated(self, old: Obj, new: Obj) -> None:
        if (tt.no_execute((old.get("spec") or {}).get("taints")) !=
                tt.no_execute((new.get("spec") or {}).get("taints"))):
            self._enqueue_node_pods(new)

    def _node_deleted(self, node: Obj) -> None:
        self._enqueue_node_pods(node)

    def _pod_added(self, pod: Obj) -> None:
        if pod_node(pod):
            self.queue.add((meta.namespace_of(pod), meta.name_of(pod)))

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if pod_node(new) and (pod_node(old) != pod_node(new) or
                              (old.get("spec") or {}).get("tolerations") !=
                              (new.get("spec") or {}).get("tolerations")):
            self.queue.add((meta.namespace_of(new), meta.name_of(new)))

    def _pod_deleted(self, pod: Obj) -> None:
        self.started.pop((meta.namespace_of(pod), meta.name_of(pod)), None)

    async def run(self) -> None:
        await run_workers(self.queue, self.sync, max(1, self.ctx.options.workers))

    async def _cancel(self, key: PodKey, pod: Obj | None) -> None:
        if self.started.pop(key, None) is not None and pod is not None:
            await self.ctx.recorder.event(pod, "Normal", "TaintManagerEviction",
                                          f"Cancelling deletion of Pod {key[0]}/{key[1]}")

    async def sync(self, key: PodKey) -> None:
        pod = self.pods.get(*key)
        if pod is None or (pod.get("metadata") or {}).get("deletionTimestamp"):
            self.started.pop(key, None)
            return
        node = self.nodes.get("", pod_node(pod)) if pod_node(pod) else None
        if node is None:
            # No node: pod GC's business, not ours.
            self.started.pop(key, None)
            return
        taints = (node.get("spec") or {}).get("taints") or []
        delay = tt.eviction_delay(taints, (pod.get("spec") or {}).get("tolerations") or [])
        if delay is None or math.isinf(delay):
            await self._cancel(key, pod)
            return
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        now = asyncio.get_running_loop().time()
        if delay > 0:
            started = self.started.get(key)
            if started is None or started[0] != uid:
                started = self.started[key] = (uid, now)
            remaining = started[1] + delay - now
            if remaining > 0:
                self.queue.add_after(key, remaining)
                return
        await self.evict(pod)
        self.started.pop(key, None)

    async def evict(self, pod: Obj) -> None:
        ns, name = meta.namespace_of(pod), meta.name_of(pod)
        log.info("evicting pod from tainted node pod=%s/%s node=%s", ns, name, pod_node(pod))
        await self.ctx.recorder.event(pod, "Normal", "TaintManagerEviction",
                                      f"Marking for deletion Pod {ns}/{name}")
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        fresh = deep_copy(pod)
        if set_pod_condition(fresh, {"type": "DisruptionTarget", "status": "True",
                                     "reason": "DeletionByTaintManager",
                                     "message": "Taint manager: deleting due to NoExecute taint"},
                             meta.now()):
            try:
                await self.client.update_status(PODS, fresh)
            except ApiError as e:
                if e.code == 404:
                    return
                if e.code != 409:
                    raise
                # A stale copy: the deletion below is what matters.
        try:
            await self.client.delete(PODS, ns, name, preconditions={"uid": uid} if uid else None)
        except ApiError as e:
            if e.code not in (404, 409):
                raise
