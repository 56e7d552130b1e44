"""The agent's loops: node registration and heartbeat, and pod syncs.

Pods come from an informer on `spec.nodeName=<node>`. Each pod is synced by
at most one task at a time; every second (and at once on a change) a pod
without a running task gets one. Sandboxes of this node whose pod is gone
are orphans and are removed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web

from timonel.api.client import Client, InformerFactory
from timonel.api.client.events import EventRecorder
from timonel.api.errors import ApiError
from timonel.node_agent.runtime.api import runtime_pb2 as pb
from timonel.node_agent.runtime.client import RuntimeClient

from . import containers as cfgs
from . import eviction
from . import node as nodes
from .pods import AgentContext, stop_pod, sync_pod, terminate_pod
from .probes import ProbeManager
from .streaming import server as streaming

log = logging.getLogger(__name__)

Obj = dict[str, Any]
STATUS_REPORT_SECONDS = 60.0
# A settled pod is synced at least this often even if nothing seems to change.
RESYNC_SECONDS = 10.0
# The kubelet's eventRecordQPS and eventBurst defaults: events are written in the background.
EVENT_QPS, EVENT_BURST = 50.0, 100
# More pod syncs than this at once: events wait (up to the recorder's max_delay) until
# fewer run, so the pods' own status writes go first. With 8, the tail of a burst of 100
# pod starts wrote 0.35-0.44 events per pod while its last pods started; with 1, 0-0.22.
# A pod started alone still has its events written as soon as they happen.
BURST_SYNCS = 1


@dataclass
class AgentConfig:
    node_name: str
    data_dir: str
    runtime_socket: str
    heartbeat_seconds: float = 10.0
    sync_seconds: float = 1.0
    min_sync_interval: float = 0.1
    # Hard eviction thresholds, in the syntax of the kubelet's --eviction-hard.
    eviction_hard: str = eviction.DEFAULT_EVICTION_HARD
    # How long a pressure condition outlives its signal (--eviction-pressure-transition-period).
    pressure_transition_seconds: float = eviction.DEFAULT_PRESSURE_TRANSITION_SECONDS
    # The HTTPS endpoint for logs/exec (streaming/): address ("" = detected), port
    # (0 = any free one), and the cluster CA its callers' certificates must chain to.
    node_ip: str = ""
    port: int = 10250
    client_ca_pem: bytes | None = None


def _own_status_echo(old: Obj, new: Obj, written: dict[str, Obj]) -> bool:
    """True for the watch's echo of the status this agent just wrote, and nothing else.

    Re-syncing on it cost each new pod a second pass of runtime calls (a third of
    the calls of a 100-pod burst) to find nothing to do; upstream's kubelet does not
    sync on a status-only update either. A terminal phase still syncs: that pass
    stops the pod's sandbox.
    """
    status = new.get("status") or {}
    uid = str((new.get("metadata") or {}).get("uid", ""))
    if not uid or status != written.get(uid) or status.get("phase") in ("Succeeded", "Failed"):
        return False
    return _beyond_status(old) == _beyond_status(new)


def _beyond_status(pod: Obj) -> Obj:
    md = {k: v for k, v in (pod.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")}
    return {**{k: v for k, v in pod.items() if k != "status"}, "metadata": md}


def import_offline_images(runtime: RuntimeClient, images_dir: str) -> set[str]:
    """Load every archive in `images_dir` (docker save or OCI); the IDs loaded."""
    ids: set[str] = set()
    if not os.path.isdir(images_dir):
        return ids
    for name in sorted(os.listdir(images_dir)):
        path = os.path.join(images_dir, name)
        try:
            for image in runtime.import_image(path):
                ids.add(image.id)
            log.info("image archive imported path=%s", path)
        except grpc.RpcError as e:
            log.warning("image archive not imported path=%s err=%s", path, e.details())  # type: ignore[attr-defined]
    return ids


class Agent:
    def __init__(self, client: Client, config: AgentConfig) -> None:
        self.client = client
        self.config = config
        self.runtime = RuntimeClient(config.runtime_socket, timeout=60.0)
        self.ctx = AgentContext(client=client, runtime=self.runtime,
                                recorder=EventRecorder(client, "kubelet", config.node_name, background=True,
                                                       qps=EVENT_QPS, burst=EVENT_BURST,
                                                       busy=lambda: len(self._tasks) > BURST_SYNCS),
                                node=config.node_name, data_dir=config.data_dir)
        self.ctx.probes = ProbeManager(self.runtime, self.ctx.recorder, self._wake_pod, lambda: self.ctx.host_ip)
        self.factory = InformerFactory(client)
        self.pods = self.factory.informer(("v1", "Pod"), field_selector=f"spec.nodeName={config.node_name}")
        self.node: Obj = {}
        self._wake = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._dirty: set[str] = set()  # pods the informer saw change
        self._unsettled: set[str] = set()  # pods whose last sync left work to retry
        self._fingerprints: dict[str, tuple[tuple[str, int], ...]] = {}
        self._synced_at: dict[str, float] = {}
        self.thresholds = eviction.parse_thresholds(config.eviction_hard)
        self.pressure = nodes.Pressure()  # as last observed: new pods are admitted against it
        self._pressure_seen: dict[str, float] = {}
        self._streaming: web.AppRunner | None = None
        self.streaming_port = 0

    async def _runtime_state(self) -> tuple[bool, str]:
        try:
            # Short: a hung runtime must not hold up the heartbeat.
            st = await asyncio.to_thread(self.runtime.runtime.Status, pb.StatusRequest(), timeout=5)
        except grpc.RpcError as e:
            return False, str(e.details())  # type: ignore[attr-defined]
        down = [c.type for c in st.status.conditions if not c.status]
        return not down, ", ".join(down)

    async def _wait_runtime(self) -> pb.VersionResponse:
        """The runtime may start after the agent (`timonel up`): wait, saying so."""
        while True:
            try:
                return await asyncio.to_thread(self.runtime.wait_ready, 30.0)
            except grpc.RpcError as e:
                log.warning("runtime not answering socket=%s err=%s; still waiting",
                            self.config.runtime_socket, e.details())  # type: ignore[attr-defined]

    async def _register_until_done(self) -> None:
        # Like the kubelet: keep trying until the API server takes the Node.
        delay = 0.5
        while True:
            try:
                await self.register()
                return
            except (ConnectionError, ApiError) as e:
                if isinstance(e, ApiError) and e.code < 500 and e.code != 429:
                    raise
                log.warning("node registration failed node=%s err=%s retry_in=%.1fs",
                            self.config.node_name, e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def register(self) -> None:
        version = await self._wait_runtime()
        self.ctx.offline_images = await asyncio.to_thread(
            import_offline_images, self.runtime, os.path.join(self.config.data_dir, "images"))
        m = nodes.machine(self.config.data_dir)
        if self.config.node_ip:
            m.internal_ip = self.config.node_ip
        self.ctx.host_ip = m.internal_ip
        self.ctx.memory_capacity = m.memory_bytes
        self.ctx.allocatable = eviction.allocatable(nodes.capacity(m), self.thresholds)
        ready, why = await self._runtime_state()
        self._observe()
        conds = nodes.node_conditions([], self.pressure, ready, why)
        obj = nodes.node_object(self.config.node_name, m,
                                f"{version.runtime_name}://{version.runtime_version}", conds)
        obj["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] = self.streaming_port
        obj["status"]["allocatable"] = dict(self.ctx.allocatable)
        self.node = await nodes.register(self.client, obj)
        await nodes.renew_lease(self.client, self.node)

    async def run(self) -> None:
        # Runtime calls are blocking gRPC in threads: the default pool (cores + 4)
        # would let a few slow calls (a StopContainer's grace period) hold up every pod.
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="runtime"))
        await self._serve_streams()
        await self._register_until_done()
        self.pods.add_handler(self._mark, self._on_update, self._mark)
        self.factory.start()
        try:
            await self.factory.wait_synced()
            await asyncio.gather(self._heartbeat_loop(), self._sync_loop())
        finally:
            for task in self._tasks.values():
                task.cancel()
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
            if self.ctx.probes is not None:
                await self.ctx.probes.close()
            await self.ctx.recorder.close()
            await self.factory.stop()
            if self._streaming is not None:
                await self._streaming.cleanup()
            self.runtime.close()

    def _pod_for_streams(self, namespace: str, name: str) -> Obj | None:
        pod = self.pods.get(namespace, name)
        if pod is None:
            return None
        # The status this agent wrote last may be newer than the informer's copy.
        written = self.ctx.last_status.get(str(pod["metadata"].get("uid", "")))
        return {**pod, "status": written} if written else pod

    async def _serve_streams(self) -> None:
        cfg = streaming.StreamingConfig(node_ip=self.config.node_ip or nodes.internal_ip(),
                                        port=self.config.port, data_dir=self.config.data_dir,
                                        hostname=self.config.node_name,
                                        client_ca_pem=self.config.client_ca_pem)
        try:
            self._streaming, self.streaming_port = await streaming.start(cfg, self.runtime,
                                                                         self._pod_for_streams)
        except OSError as e:
            # Pods still run; only logs/exec/attach are missing (the Node shows port 0).
            log.error("agent endpoint not served address=%s port=%s err=%s: logs, exec and attach "
                      "are unavailable; pass a free --port (0 for any) or another --node-ip",
                      cfg.node_ip, cfg.port, e.strerror or e)

    async def _heartbeat_loop(self) -> None:
        last_report = time.monotonic()
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            try:
                await nodes.renew_lease(self.client, self.node)
                ready, why = await self._runtime_state()
                old = (self.node.get("status") or {}).get("conditions") or []
                observed, met = self._observe()
                conds = nodes.node_conditions(old, self.pressure, ready, why)

                def strip(cs: list[Obj]) -> list[tuple[str, str, str]]:
                    return [(c["type"], c["status"], c.get("reason", "")) for c in cs]

                if strip(conds) != strip(old) or time.monotonic() - last_report > STATUS_REPORT_SECONDS:
                    self.node = await self.client.patch(nodes.NODES, "", self.config.node_name,
                                                        {"status": {"conditions": conds}},
                                                        subresource="status")
                    last_report = time.monotonic()
                if not await self._evict_outgrown() and met:
                    await self._evict_one(observed, met)
            except (ApiError, ConnectionError) as e:
                log.warning("heartbeat failed node=%s err=%s", self.config.node_name, e)

    def _observe(self) -> tuple[dict[str, eviction.Observation], list[eviction.Threshold]]:
        """The eviction signals now, and the thresholds they are under (Node conditions come from them)."""
        observed = eviction.observe(self.config.data_dir)
        met = eviction.thresholds_met(self.thresholds, observed)
        self.pressure = eviction.held_pressure(met, self._pressure_seen, time.monotonic(),
                                               self.config.pressure_transition_seconds)
        return observed, met

    async def _evict_one(self, observed: dict[str, eviction.Observation],
                         met: list[eviction.Threshold]) -> None:
        """Under pressure: evict the first-ranked pod as that pod's only task (no sync runs
        it meanwhile); one per pass, as the kubelet, so the next observation sees what it freed."""
        chosen = await eviction.choose_victim(self.ctx, self.pods.list(), met, observed)
        if chosen is None:
            return
        pod, message = chosen
        uid = str(pod["metadata"]["uid"])
        if uid not in self._tasks:  # else a sync of it is running: next pass
            self._spawn(uid, self._evict(pod, message))

    async def _evict_outgrown(self) -> bool:
        """Evict every pod over its own local storage limits (whatever the node's pressure,
        as upstream; a pass that does so evicts nothing else). True if there were any."""
        outgrown = await asyncio.to_thread(eviction.local_storage_evictions, self.config.data_dir,
                                           self.pods.list())
        for pod, message in outgrown:
            uid = str(pod["metadata"]["uid"])
            if uid not in self._tasks:
                self._spawn(uid, self._evict(pod, message))
        return bool(outgrown)

    async def _evict(self, pod: Obj, message: str, rejected: bool = False) -> None:
        if rejected:
            await eviction.reject_pod(self.ctx, pod, message)
        else:
            await eviction.evict_pod(self.ctx, pod, message)
        # A sync of the informer's older copy (not yet Failed) would start the pod again.
        md = pod["metadata"]
        for _ in range(100):
            cur = self.pods.get(str(md["namespace"]), str(md["name"]))
            if cur is None or cur["metadata"].get("uid") != md["uid"] or \
                    (cur.get("status") or {}).get("phase") == "Failed":
                return
            await asyncio.sleep(0.1)

    async def _sync_loop(self) -> None:
        last = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.sync_seconds)
            # Every pass lists all of the node's sandboxes and containers, and every pod
            # event or finished pod sync wakes the loop: in a burst of pod starts that was
            # a full listing per pod (O(pods^2) runtime work). Wakes within the interval
            # are served by one pass, like a relist period (upstream's PLEG: 1 s).
            wait = last + self.config.min_sync_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            last = time.monotonic()
            self._wake.clear()
            try:
                await self.sync_once()
            except (ApiError, ConnectionError, grpc.RpcError) as e:
                log.warning("sync failed node=%s err=%s", self.config.node_name, e)

    def _spawn(self, uid: str, coro: Any) -> None:
        task: asyncio.Task[Any] = asyncio.create_task(coro)
        self._tasks[uid] = task

        def done(t: asyncio.Task[Any]) -> None:
            if self._tasks.get(uid) is t:
                del self._tasks[uid]
            failed = not t.cancelled() and t.exception() is not None
            if failed:
                log.warning("pod sync failed uid=%s err=%r", uid, t.exception())
            if failed or t.cancelled() or t.result() is False:
                self._unsettled.add(uid)
            else:
                self._unsettled.discard(uid)
            # The containers this sync started are no news to the next pass (upstream's
            # PLEG relist would sync the pod again for them, to find nothing to do).
            synced = self.ctx.synced_prints.pop(uid, None)
            if synced is not None and not failed and not t.cancelled() and uid in self._fingerprints:
                self._fingerprints[uid] = synced
            self._wake.set()
        task.add_done_callback(done)

    def _wake_pod(self, uid: str) -> None:
        # A probe's verdict changed: the pod's status (or a liveness kill) is due.
        self._dirty.add(uid)
        self._wake.set()

    def _mark(self, obj: Obj) -> None:
        self._dirty.add(str((obj.get("metadata") or {}).get("uid", "")))
        self._wake.set()

    def _on_update(self, old: Obj, new: Obj) -> None:
        if not _own_status_echo(old, new, self.ctx.last_status):
            self._mark(new)

    async def sync_once(self) -> None:
        """Like the kubelet's PLEG: one listing of the runtime per pass; a pod is
        synced when it changed, its containers or sandbox changed, it has work
        pending (back-off, failure), or RESYNC_SECONDS passed."""
        now = time.monotonic()
        node_filter = {cfgs.NODE: self.config.node_name}
        sandboxes = await asyncio.to_thread(self.runtime.list_sandboxes,
                                            pb.PodSandboxFilter(label_selector=node_filter))
        listed = await asyncio.to_thread(self.runtime.list_containers,
                                         pb.ContainerFilter(label_selector=node_filter))
        seen: dict[str, list[tuple[str, int]]] = {}
        for sb in sandboxes:
            seen.setdefault(sb.labels.get(cfgs.POD_UID, ""), []).append((sb.id, sb.state))
        for c in listed:
            seen.setdefault(c.labels.get(cfgs.POD_UID, ""), []).append((c.id, c.state))
        prints = {uid: tuple(sorted(v)) for uid, v in seen.items()}
        self.ctx.listed_sandbox_pods = {sb.labels.get(cfgs.POD_UID, "") for sb in sandboxes}
        live: set[str] = set()
        for pod in self.pods.list():
            uid = str(pod["metadata"]["uid"])
            live.add(uid)
            if uid in self._tasks:
                continue
            if pod["metadata"].get("deletionTimestamp"):
                if uid not in self.ctx.terminated:
                    self._spawn(uid, terminate_pod(self.ctx, pod))
                continue
            status = pod.get("status") or {}
            if uid not in prints and not status.get("startTime") and \
                    status.get("phase") not in ("Succeeded", "Failed"):
                # New here: admitted only if the node's pressure allows it (upstream's eviction admission).
                rejected = eviction.admit(pod, self.pressure)
                if rejected is not None:
                    self._spawn(uid, self._evict(pod, rejected, rejected=True))
                    continue
            fingerprint = prints.get(uid, ())
            if uid not in self._dirty and uid not in self._unsettled and \
                    self._fingerprints.get(uid) == fingerprint and \
                    now - self._synced_at.get(uid, 0.0) < RESYNC_SECONDS:
                continue
            self._dirty.discard(uid)
            self._fingerprints[uid] = fingerprint
            self._synced_at[uid] = now
            self._spawn(uid, sync_pod(self.ctx, pod))
        self.ctx.terminated &= live
        for table in (self._fingerprints, self._synced_at):
            for uid in [u for u in table if u not in live]:
                del table[uid]
        self._unsettled &= live | set(self._tasks)
        self._dirty &= live
        for uid in prints:
            if uid and uid not in live and uid not in self._tasks:
                log.info("removing orphan pod uid=%s", uid)
                self._spawn(uid, stop_pod(self.ctx, None, uid, grace=0, remove=True))
