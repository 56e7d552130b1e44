"""The scheduler process: informers in, decisions out.

Informers feed the cache (nodes, pods on nodes, namespaces, priority
classes) and the queue (pending pods whose spec.schedulerName is one of
our profiles). One loop takes the best pending pod, runs the algorithm
synchronously on the snapshot, assumes the pod on the chosen node and
hands the bind to a task, so the next decision starts at once. A pod that
fits nowhere may preempt lower-priority pods; otherwise it waits in the
unschedulable queue and is explained with a FailedScheduling event and a
PodScheduled=False condition.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from timonel.api import meta
from timonel.api.client import ApiConnectionError, Client, InformerFactory, run_with_leader_election
from timonel.api.client.events import NORMAL, WARNING, EventRecorder
from timonel.api.client.informer import namespace_index
from timonel.api.errors import ApiError
from timonel.scheduler import algorithm, binder, preemption
from timonel.scheduler.cache import Cache, is_terminal, node_name_of
from timonel.scheduler.config import DEFAULT_SCHEDULER_NAME, SchedulerConfiguration
from timonel.scheduler.framework import (
    NODE_ADD,
    NODE_DELETE,
    NODE_UPDATE,
    POD_ADD,
    POD_DELETE,
    POD_UPDATE,
    FitError,
    Profile,
)
from timonel.scheduler.metrics import ERROR, SCHEDULED, UNSCHEDULABLE, SchedulerMetrics
from timonel.scheduler.owners import OwnerSelectors
from timonel.scheduler.podinfo import pod_key
from timonel.scheduler.queue import QueuedPod, SchedulingQueue
from timonel.scheduler.sampling import RoundRobin

log = logging.getLogger(__name__)

PODS = ("v1", "Pod")
NODES = ("v1", "Node")
NAMESPACES = ("v1", "Namespace")
PRIORITY_CLASSES = ("scheduling.k8s.io/v1", "PriorityClass")
SERVICES = ("v1", "Service")
REPLICASETS = ("apps/v1", "ReplicaSet")
STATEFULSETS = ("apps/v1", "StatefulSet")
FLUSH_PERIOD = 30.0
# How long a pod we bound counts as starting (our events wait meanwhile) unless it starts sooner.
STARTING_HOLD_SECONDS = 5.0
# Binds in flight at once: enough to keep the API server busy, few enough
# not to queue hundreds of requests behind the client's connection pool.
MAX_CONCURRENT_BINDS = 64
# Decisions run back to back for at most this long before the loop lets
# binds and watch events through (one loop pass per pod costs more than a
# decision).
TIME_SLICE = 0.002


def _relevant_node_change(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Changes that can make a pod fit (heartbeats cannot)."""
    def view(n: dict[str, Any]) -> tuple[Any, ...]:
        spec, status = n.get("spec") or {}, n.get("status") or {}
        ready = [c.get("status") for c in status.get("conditions") or []
                 if isinstance(c, dict) and c.get("type") == "Ready"]
        return ((n.get("metadata") or {}).get("labels"), spec.get("taints"),
                spec.get("unschedulable"), status.get("allocatable"), ready)
    return view(old) != view(new)


def _spec_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """upstream isPodUpdated: anything but status and bookkeeping."""
    o, n = old.get("metadata") or {}, new.get("metadata") or {}
    return (o.get("labels") != n.get("labels") or o.get("annotations") != n.get("annotations")
            or old.get("spec") != new.get("spec"))


class Scheduler:
    def __init__(self, client: Client, config: SchedulerConfiguration | None = None, *,
                 seed: int | None = None, metrics: SchedulerMetrics | None = None) -> None:
        self.client = client
        self.config = config or SchedulerConfiguration()
        self.profiles: dict[str, Profile] = {
            p.scheduler_name: p for p in self.config.build_profiles()}
        self.cache = Cache()
        self.queue = SchedulingQueue(self.config.pod_initial_backoff_seconds,
                                     self.config.pod_max_backoff_seconds,
                                     self.config.pod_max_in_unschedulable_seconds)
        self.metrics = metrics or SchedulerMetrics()
        self.metrics.pending_source = self.queue.counts
        self.recorder = EventRecorder(client, DEFAULT_SCHEDULER_NAME)
        self.writes = binder.Background(busy=self._busy)
        # Called with (pod key, node) after each successful bind (tests, benchmarks).
        self.on_bound: Callable[[tuple[str, str], str], None] | None = None
        self._bind_slots = asyncio.Semaphore(MAX_CONCURRENT_BINDS)
        # Set to a list to collect every attempt's duration in seconds (benchmarks).
        self.attempt_samples: list[float] | None = None
        self.rr = RoundRobin()
        self.rng = random.Random(seed)
        self.informers = InformerFactory(client)
        self.pods = self.informers.informer(PODS)
        # Binds and evictions in flight (other writes wait for them).
        self._inflight: set[asyncio.Task[None]] = set()
        # Pods we bound that have not started yet: when we bound them (time.monotonic()).
        self._starting: dict[tuple[str, str], float] = {}
        self._register()

    def _busy(self) -> bool:
        """Binds in flight, pods ready to schedule, or pods we bound in the last few seconds
        still starting: best-effort writes (events) wait. In a burst of pod starts on two
        CPUs, our 100 `Scheduled` events were written while those pods' nodes were starting
        them, and their status writes queued behind ours."""
        # Entries are in the order they were bound (see _bind), so the expired ones are at
        # the front: 8 writers ask every 20 ms through a burst, so no rebuilding per call.
        cutoff = time.monotonic() - STARTING_HOLD_SECONDS
        while self._starting:
            key, at = next(iter(self._starting.items()))
            if at > cutoff:
                break
            del self._starting[key]
        return bool(self._inflight) or self.queue.has_ready() or bool(self._starting)

    # -- informer handlers ------------------------------------------------------

    def _register(self) -> None:
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.informers.informer(NODES).add_handler(
            self._node_added, self._node_updated, self._node_deleted)
        self.informers.informer(NAMESPACES).add_handler(
            self.cache.set_namespace, lambda old, new: self.cache.set_namespace(new),
            self.cache.remove_namespace)
        self.informers.informer(PRIORITY_CLASSES).add_handler(
            self.cache.set_priority_class, lambda old, new: self.cache.set_priority_class(new),
            self.cache.remove_priority_class)
        services = self.informers.informer(SERVICES)
        services.add_index("namespace", namespace_index)
        self.cache.snapshot.default_spread_selector = OwnerSelectors(
            services, self.informers.informer(REPLICASETS),
            self.informers.informer(STATEFULSETS))

    def responsible(self, pod: dict[str, Any]) -> bool:
        name = (pod.get("spec") or {}).get("schedulerName") or DEFAULT_SCHEDULER_NAME
        return name in self.profiles

    def _pending(self, pod: dict[str, Any]) -> bool:
        # Pods with spec.schedulingGates wait outside the queue until the
        # gates are removed (upstream's SchedulingGates PreEnqueue plugin).
        return (not node_name_of(pod) and self.responsible(pod) and not is_terminal(pod)
                and not (pod.get("metadata") or {}).get("deletionTimestamp")
                and not (pod.get("spec") or {}).get("schedulingGates"))

    def _pod_added(self, pod: dict[str, Any]) -> None:
        if node_name_of(pod):
            self.cache.add_pod(pod)
            self.queue.move_all(POD_ADD)
        elif self._pending(pod):
            pi = self.cache.pod_info(pod)
            self._track_nomination(pi)
            self.queue.add(pi)

    def _pod_updated(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        key = pod_key(new)
        if key in self._starting and (new.get("status") or {}).get("phase") != "Pending":
            del self._starting[key]
        if node_name_of(new):
            if not node_name_of(old):
                self.queue.delete(key)
            freed = is_terminal(new) and not is_terminal(old)
            self.cache.add_pod(new)
            if freed:
                self.queue.move_all(POD_DELETE)
            elif (old.get("metadata") or {}).get("labels") != (new.get("metadata") or {}).get(
                    "labels"):
                self.queue.move_all(POD_UPDATE)
            return
        if not self._pending(new):
            self.queue.delete(key)
            self.cache.clear_nominated(key)
            return
        if self.cache.is_assumed(key):
            return  # our bind is in flight; the watch will show it bound
        pi = self.cache.pod_info(new)
        self._track_nomination(pi)
        if key not in self.queue or _spec_changed(old, new):
            self.queue.update(pi)

    def _track_nomination(self, pi: Any) -> None:
        nominated = str(((pi.pod.get("status") or {}).get("nominatedNodeName")) or "")
        if nominated:
            self.cache.set_nominated(pi, nominated)
        else:
            self.cache.clear_nominated(pi.key)

    def _pod_deleted(self, pod: dict[str, Any]) -> None:
        key = pod_key(pod)
        self._starting.pop(key, None)
        self.queue.delete(key)
        was_on_node = key in self.cache.pods
        self.cache.remove_pod(pod)
        if was_on_node or node_name_of(pod):
            self.queue.move_all(POD_DELETE)

    def _node_added(self, node: dict[str, Any]) -> None:
        self.cache.set_node(node)
        self.queue.move_all(NODE_ADD)

    def _node_updated(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self.cache.set_node(new)
        if _relevant_node_change(old, new):
            self.queue.move_all(NODE_UPDATE)

    def _node_deleted(self, node: dict[str, Any]) -> None:
        self.cache.remove_node(node)
        self.queue.move_all(NODE_DELETE)

    # -- the loop ------------------------------------------------------------------

    async def run(self) -> None:
        """Schedule until cancelled."""
        self.writes.start()
        self.informers.start()
        flusher = asyncio.create_task(self._flush_loop(), name="scheduler-flush")
        try:
            while not await self.informers.wait_synced(timeout=30):
                log.warning("scheduler informers not synced yet; waiting")
            log.info("scheduler started profiles=%s nodes=%d", ",".join(self.profiles),
                     len(self.cache.snapshot))
            loop = asyncio.get_running_loop()
            slice_end = loop.time() + TIME_SLICE
            while True:
                q = await self.queue.pop()
                self.schedule_one(q)
                if loop.time() >= slice_end:
                    # Let binds, writes and informer events run between decisions.
                    await asyncio.sleep(0)
                    slice_end = loop.time() + TIME_SLICE
        finally:
            flusher.cancel()
            for t in list(self._inflight):
                t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await asyncio.gather(*self._inflight, return_exceptions=True)
            await self.writes.stop()
            await self.informers.stop()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_PERIOD)
            moved = self.queue.flush_unschedulable()
            if moved:
                log.info("retrying long-unschedulable pods count=%d", moved)

    def schedule_one(self, q: QueuedPod) -> None:
        t0 = time.perf_counter()
        self._schedule_one(q)
        if self.attempt_samples is not None:
            self.attempt_samples.append(time.perf_counter() - t0)

    def _schedule_one(self, q: QueuedPod) -> None:
        pi = q.info
        key = pi.key
        current = self.pods.get(*key)
        if current is None or not self._pending(current):
            self.queue.done(key)
            return
        if self.cache.is_assumed(key):
            assumed = self.cache.pods.get(key)
            if assumed is not None and assumed.uid == (current.get("metadata") or {}).get("uid"):
                self.queue.done(key)  # our bind is in flight
                return
            if assumed is not None:
                # A new pod under the old one's name: the old bind fails on its uid.
                self.cache.forget(assumed)
        if current is not pi.pod:
            pi = q.info = self.cache.pod_info(current)
        profile = self.profiles[(current.get("spec") or {}).get("schedulerName")
                                or DEFAULT_SCHEDULER_NAME]
        t0 = time.perf_counter()
        try:
            result = algorithm.schedule(profile, self.cache.snapshot, pi, self.rr, self.rng)
        except FitError as err:
            self.metrics.algorithm_duration.observe(time.perf_counter() - t0)
            self._unschedulable(q, profile, err)
            self.metrics.attempt(UNSCHEDULABLE, profile.scheduler_name, time.perf_counter() - t0)
            return
        except algorithm.NoNodesError as err:
            self.queue.add_unschedulable(q, None)
            self._explain(pi.pod, str(err), None)
            self.metrics.attempt(UNSCHEDULABLE, profile.scheduler_name, time.perf_counter() - t0)
            return
        except Exception:
            log.exception("scheduling failed pod=%s/%s", *key)
            self.queue.add_backoff(q)
            self.metrics.attempt(ERROR, profile.scheduler_name, time.perf_counter() - t0)
            return
        self.metrics.algorithm_duration.observe(time.perf_counter() - t0)
        assumed = self.cache.assume(pi, result.node)
        self.queue.done(key)
        self.metrics.attempt(SCHEDULED, profile.scheduler_name, time.perf_counter() - t0)
        self._spawn(self._bind(q, assumed, result.node))

    async def _bind(self, q: QueuedPod, assumed: Any, node: str) -> None:
        pod = q.info.pod
        ns, name = q.info.key
        t0 = time.perf_counter()
        try:
            async with self._bind_slots:
                await binder.bind(self.client, pod, node)
        except (ApiError, ApiConnectionError) as e:
            self.cache.forget(assumed)
            code = e.code if isinstance(e, ApiError) else 0
            log.info("bind failed pod=%s/%s node=%s err=%s", ns, name, node, e)
            # What was assumed on the node is free again.
            self.queue.move_all(POD_DELETE)
            if code == 404:
                return  # the pod is gone
            # Retried after the backoff; by then the watch may show the pod
            # bound by someone else or being deleted, and it is dropped.
            self.queue.add_backoff(q)
            if code != 409:
                self.writes.submit(functools.partial(
                    self.recorder.event, pod, WARNING, "FailedScheduling",
                    f"Binding rejected: {e}"))
            return
        now = time.perf_counter()
        self.metrics.binding_duration.observe(now - t0)
        self.metrics.e2e_duration.observe(max(0.0, time.monotonic() - q.initial))
        self._starting.pop(q.info.key, None)  # a pod bound again goes to the back
        self._starting[q.info.key] = time.monotonic()
        if self.on_bound is not None:
            self.on_bound(q.info.key, node)
        self.writes.submit(functools.partial(
            self.recorder.event, pod, NORMAL, "Scheduled",
            f"Successfully assigned {ns}/{name} to {node}"))

    # -- failures -------------------------------------------------------------------

    def _unschedulable(self, q: QueuedPod, profile: Profile, err: FitError) -> None:
        pi = q.info
        nominated: str | None = None
        if profile.preemption:
            self.metrics.preemption_attempts.inc()
            cand, msg = preemption.find_candidate(profile, self.cache.snapshot, err,
                                                  self.cache.preemption_policy(pi.pod))
            if cand is not None:
                nominated = cand.node
                self._preempt(pi, cand)
            else:
                err.diagnosis.post_filter_msg = msg
                # A nomination that no longer helps is cleared.
                if self.cache.nominated_node(pi.key):
                    nominated = ""
                    self.cache.clear_nominated(pi.key)
        self.queue.add_unschedulable(q, profile.plugin_events(err.diagnosis.unschedulable_plugins))
        message = str(err)
        log.debug("unschedulable pod=%s/%s msg=%s", *pi.key, message)
        self._explain(pi.pod, message, nominated)

    def _explain(self, pod: dict[str, Any], message: str, nominated: str | None) -> None:
        self.writes.submit(functools.partial(self.recorder.event, pod, WARNING, "FailedScheduling",
                                             message))
        self.writes.submit(functools.partial(binder.set_unschedulable, self.client, pod, message,
                                             nominated))

    def _preempt(self, pi: Any, cand: preemption.Candidate) -> None:
        self.cache.set_nominated(pi, cand.node)
        self.metrics.preemption_victims.inc(len(cand.victims))
        uid = (pi.pod.get("metadata") or {}).get("uid", "")
        for v in cand.victims:
            log.info("preempting pod=%s/%s victim=%s/%s node=%s", *pi.key, *v.key, cand.node)
            # Evictions do not wait behind binds like other writes: the
            # preemptor waits for them.
            self._spawn(self._evict(v.pod))
            self.writes.submit(functools.partial(
                self.recorder.event, v.pod, NORMAL, "Preempted",
                f"Preempted by pod {uid} on node {cand.node}"))
        # Lower-priority pods nominated to the node lose their claim.
        for other in list(self.cache.snapshot.nominated.get(cand.node, {}).values()):
            if other.priority < pi.priority:
                self.cache.clear_nominated(other.key)
                self.writes.submit(functools.partial(binder.clear_nominated, self.client,
                                                     other.pod))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _evict(self, victim: dict[str, Any]) -> None:
        md = victim.get("metadata") or {}
        ns, name = str(md.get("namespace") or ""), str(md.get("name") or "")
        cond = {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
                "message": f"{DEFAULT_SCHEDULER_NAME}: preempting to accommodate a higher "
                           "priority pod", "lastTransitionTime": meta.now()}
        with contextlib.suppress(ApiError, ApiConnectionError):
            await self.client.patch(PODS, ns, name, {"status": {"conditions": [cond]}},
                                    patch_type="strategic", subresource="status")
        try:
            # The victim's own terminationGracePeriodSeconds applies.
            await self.client.delete(PODS, ns, name, preconditions={"uid": str(md.get("uid"))})
        except (ApiError, ApiConnectionError) as e:
            if not (isinstance(e, ApiError) and e.code in (404, 409)):
                log.warning("could not evict victim=%s/%s err=%s", ns, name, e)


async def run_scheduler(client: Client, config: SchedulerConfiguration | None = None, *,
                        leader_elect: bool = False, identity: str = "",
                        metrics: SchedulerMetrics | None = None) -> None:
    """Run the scheduler until cancelled; with leader_elect, only while
    holding the Lease named in the configuration (kube-system/kube-scheduler).
    `metrics` (optional) outlives leadership terms, for serving /metrics."""
    config = config or SchedulerConfiguration()
    if not leader_elect:
        await Scheduler(client, config, metrics=metrics).run()
        return
    identity = identity or f"{socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    while True:
        sched = Scheduler(client, config, metrics=metrics)
        await run_with_leader_election(client, config.lease_name, config.lease_namespace,
                                       identity, sched.run)
        log.warning("scheduler lost leadership identity=%s; campaigning again", identity)
