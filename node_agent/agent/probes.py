"""Liveness, readiness and startup probes, as the kubelet's prober runs them.

One asyncio task per probe of a running container (keyed by pod uid,
container name and probe kind; a restarted container gets fresh ones). Each
keeps its verdict in the table the pod's sync reads: `update` starts and
stops workers from what the runtime reports and fills in `started`/`ready`;
`failed` names the containers a liveness or startup probe condemned. A
verdict that changes wakes the pod's sync through `on_change`.

Semantics (pkg/kubelet/prober upstream): readiness is false and startup
unknown until their first success, liveness true until proven otherwise; a
verdict flips after `successThreshold` / `failureThreshold` results in a row;
nothing is probed before `initialDelaySeconds` after the container started;
while a startup probe has not succeeded, liveness and readiness are not run;
a startup probe that succeeded is not run again; after a liveness or startup
failure the worker holds until the container is restarted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from timonel.api.client.events import WARNING, EventRecorder
from timonel.node_agent.runtime.api import runtime_pb2 as pb
from timonel.node_agent.runtime.client import RuntimeClient

from . import handlers
from .grpcprobe import grpc_check
from .handlers import HandlerError, Outcome, Target
from .status import PodRuntimeState

log = logging.getLogger(__name__)

Obj = dict[str, Any]
KINDS = ("startup", "liveness", "readiness")
# The verdict before the first probe: readiness must be earned, liveness is presumed.
INITIAL: dict[str, bool | None] = {"startup": None, "liveness": True, "readiness": False}
TITLE = {"startup": "Startup", "liveness": "Liveness", "readiness": "Readiness"}


@dataclass
class ProbeSpec:
    handler: Obj
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    grace: int | None = None  # the probe's terminationGracePeriodSeconds


def probe_spec(kind: str, p: Obj) -> ProbeSpec:
    """The probe with the API's defaults; liveness and startup always need one success."""
    return ProbeSpec(
        handler=p, initial_delay=float(p.get("initialDelaySeconds") or 0),
        period=float(max(1, int(p.get("periodSeconds") or 10))),
        timeout=float(max(1, int(p.get("timeoutSeconds") or 1))),
        success_threshold=1 if kind != "readiness" else max(1, int(p.get("successThreshold") or 1)),
        failure_threshold=max(1, int(p.get("failureThreshold") or 3)),
        grace=int(p["terminationGracePeriodSeconds"]) if p.get("terminationGracePeriodSeconds") is not None
        else None)


@dataclass
class Worker:
    uid: str
    name: str
    kind: str
    cid: str
    spec: ProbeSpec
    started_at: float  # wall-clock seconds the container started
    pod: Obj
    container: Obj
    sid: str
    pod_ip: str
    result: bool | None = None
    last: bool | None = None
    run: int = 0
    on_hold: bool = False
    message: str = ""  # of the last failure, for the kill's log line
    task: asyncio.Task[None] | None = field(default=None, repr=False)


def observe(w: Worker, ok: bool) -> bool:
    """Count one probe result; True when the worker's verdict changed."""
    if w.last == ok:
        w.run += 1
    else:
        w.last, w.run = ok, 1
    if w.run < (w.spec.success_threshold if ok else w.spec.failure_threshold):
        return False
    changed = w.result != ok
    w.result = ok
    if not ok and w.kind != "readiness":
        # Upstream: hold until the container is restarted (a new worker).
        w.on_hold, w.run = True, 0
    return changed


Runner = Callable[[Worker], Awaitable[Outcome]]


class ProbeManager:
    def __init__(self, runtime: RuntimeClient | None, recorder: EventRecorder | None,
                 on_change: Callable[[str], None], host_ip: Callable[[], str] = lambda: "",
                 runner: Runner | None = None, clock: Callable[[], float] = time.time,
                 spawn: bool = True) -> None:
        self.runtime = runtime
        self.recorder = recorder
        self.on_change = on_change
        self.host_ip = host_ip
        self.runner = runner or self._run_handler
        self.clock = clock
        self.spawn = spawn  # False: workers only tick when told (unit tests)
        self.workers: dict[tuple[str, str, str], Worker] = {}
        # sandbox id -> (pod uid, where its network probes go)
        self.targets: dict[str, tuple[str, Target]] = {}

    # -- the table the pod's sync reads --
    def update(self, pod: Obj, state: PodRuntimeState, sid: str, start: bool = True) -> None:
        """Workers for the running containers' probes (new ones when `start`), none for
        the others; and the containers' `started`/`ready` into `state`."""
        uid = str(pod["metadata"]["uid"])
        spec = pod.get("spec") or {}
        pod_ip = self.host_ip() if spec.get("hostNetwork") else state.sandbox_ip
        wanted: set[tuple[str, str, str]] = set()
        for c in spec.get("containers") or []:
            name = str(c["name"])
            hist = state.containers.get(name) or []
            running = bool(hist) and hist[0].state == pb.CONTAINER_RUNNING
            for kind in KINDS:
                p = c.get(f"{kind}Probe")
                if not p or not running:
                    continue
                key = (uid, name, kind)
                w = self.workers.get(key)
                if w is not None and w.cid != hist[0].id:
                    self._stop(key)
                    w = None
                if w is None:
                    if not start:
                        continue
                    w = Worker(uid, name, kind, hist[0].id, probe_spec(kind, p),
                               hist[0].started_at / 1e9, pod, c, sid, pod_ip, result=INITIAL[kind])
                    self.workers[key] = w
                    if self.spawn:
                        w.task = asyncio.create_task(self._loop(w), name=f"probe-{kind}-{name}-{uid}")
                else:
                    w.pod, w.pod_ip, w.sid = pod, pod_ip, sid
                wanted.add(key)
            if running:
                started = self.started(uid, name, hist[0].id)
                rw = self.workers.get((uid, name, "readiness"))
                state.started[name] = started
                state.ready[name] = started and (rw is None or rw.result is True)
        for key in [k for k in self.workers if k[0] == uid and k not in wanted]:
            self._stop(key)

    def started(self, uid: str, name: str, cid: str) -> bool:
        sw = self.workers.get((uid, name, "startup"))
        return sw is None or sw.cid != cid or sw.result is True

    def failed(self, uid: str) -> list[Worker]:
        """Liveness and startup workers whose container must be killed."""
        return [w for k, w in self.workers.items()
                if k[0] == uid and w.kind != "readiness" and w.result is False]

    def forget(self, uid: str) -> None:
        for key in [k for k in self.workers if k[0] == uid]:
            self._stop(key)
        for sid in [s for s, (u, _) in self.targets.items() if u == uid]:
            del self.targets[sid]

    async def close(self) -> None:
        tasks = [w.task for w in self.workers.values() if w.task is not None]
        self.workers.clear()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _stop(self, key: tuple[str, str, str]) -> None:
        w = self.workers.pop(key, None)
        if w is not None and w.task is not None:
            w.task.cancel()

    # -- the workers --
    async def _loop(self, w: Worker) -> None:
        try:
            while await self.tick(w):
                await asyncio.sleep(w.spec.period)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not end probing silently
            log.exception("probe worker failed pod_uid=%s container=%s kind=%s", w.uid, w.name, w.kind)

    async def tick(self, w: Worker) -> bool:
        """One period of the worker: probe if due; False when it has nothing more to do."""
        if w.on_hold or (w.kind == "startup" and w.result is True):
            return False
        if w.kind != "startup" and not self.started(w.uid, w.name, w.cid):
            return True
        if self.clock() - w.started_at < w.spec.initial_delay:
            return True
        outcome = await self.runner(w)
        if self.workers.get((w.uid, w.name, w.kind)) is not w:
            return False  # stopped while probing: the verdict is of a container gone
        if not outcome.ok:
            w.message = outcome.message
            verb = "errored" if outcome.errored else "failed"
            log.info("probe %s pod_uid=%s container=%s kind=%s output=%r", verb, w.uid, w.name, w.kind,
                     outcome.message[:200])
            if self.recorder is not None:
                await self.recorder.event(w.pod, WARNING, "Unhealthy",
                                          f"{TITLE[w.kind]} probe {verb}: {outcome.message}")
        if observe(w, outcome.ok):
            log.info("probe verdict changed pod_uid=%s container=%s kind=%s result=%s",
                     w.uid, w.name, w.kind, w.result)
            self.on_change(w.uid)
        return not w.on_hold and not (w.kind == "startup" and w.result is True)

    async def target(self, uid: str, sid: str, pod_ip: str, host_network: bool) -> Target:
        known = self.targets.get(sid)
        if known is not None and known[1].pod_ip == pod_ip:
            return known[1]
        assert self.runtime is not None
        t = await handlers.sandbox_target(self.runtime, sid, pod_ip, host_network)
        self.targets[sid] = (uid, t)
        return t

    async def _run_handler(self, w: Worker) -> Outcome:
        h, timeout = w.spec.handler, w.spec.timeout
        kind = handlers.handler_kind(h)
        try:
            if kind == "exec":
                assert self.runtime is not None
                command = [str(x) for x in (h["exec"].get("command") or [])]
                return await handlers.exec_check(self.runtime, w.cid, command, timeout)
            if kind not in ("httpGet", "tcpSocket", "grpc"):
                return Outcome(False, "the probe names no action (exec, httpGet, tcpSocket, grpc)",
                               errored=True)
            host_net = bool((w.pod.get("spec") or {}).get("hostNetwork"))
            target = await self.target(w.uid, w.sid, w.pod_ip, host_net)
            action = h[kind]
            if kind == "httpGet":
                return (await handlers.http_get(target, action, w.container, timeout, handlers.PROBE_AGENT))[1]
            if kind == "grpc":
                return await grpc_check(target, int(action.get("port") or 0), str(action.get("service") or ""),
                                        timeout)
            port = handlers.resolve_port(action.get("port"), w.container)
            return await handlers.tcp_check(target, str(action.get("host") or ""), port, timeout)
        except HandlerError as e:
            return Outcome(False, str(e), errored=True)
        except OSError as e:  # the namespace could not be entered (the sandbox is going away)
            return Outcome(False, f"cannot reach the pod's network: {e}", errored=True)
