"""One pod's sync against the runtime: what the kubelet's SyncPod and
KillPod do, driven by what the runtime reports (never by memory of past
actions, so a restarted agent takes over where the last one stopped).

Every call into the runtime's synchronous gRPC client goes through a thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import grpc

from timonel.api import meta
from timonel.api.client import Client
from timonel.api.client.events import NORMAL, WARNING, EventRecorder
from timonel.api.errors import ApiError
from timonel.node_agent.runtime.api import runtime_pb2 as pb
from timonel.node_agent.runtime.client import RuntimeClient

from . import containers as cfgs
from . import hooks
from .envvars import ConfigError, command_and_args, container_env
from .handlers import Target, sandbox_target
from .probes import ProbeManager
from .status import PodRuntimeState, Waiting, pod_status
from .volumes import (
    container_mounts,
    metadata_changed,
    mount_failure_message,
    prepare_volumes,
    remove_pod_dir,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]
T = TypeVar("T")
PODS = ("v1", "Pod")
BACKOFF_INITIAL = 10.0
BACKOFF_MAX = 300.0
# Retries of a container that could not be made (missing secret, bad command):
# quick at first, since the cause is often fixed within seconds.
FAILURE_BACKOFF_INITIAL = 1.0
FAILURE_BACKOFF_MAX = 60.0


IMAGE_SEEN_SECONDS = 1.0


@dataclass
class BackoffEntry:
    delay: float
    at: float  # monotonic time of the restart that set `delay`


@dataclass
class AgentContext:
    client: Client
    runtime: RuntimeClient
    recorder: EventRecorder
    node: str
    data_dir: str
    host_ip: str = "127.0.0.1"
    memory_capacity: int = 0
    allocatable: dict[str, str] = field(default_factory=dict)
    # IDs of images loaded from DIR/images: never pulled, even with Always (offline use).
    offline_images: set[str] = field(default_factory=set)
    backoff: dict[tuple[str, str], BackoffEntry] = field(default_factory=dict)
    pull_backoff: dict[str, BackoffEntry] = field(default_factory=dict)
    # (pod uid, container name) -> id of the dead container a BackOff event was posted for
    backoff_reported: dict[tuple[str, str], str] = field(default_factory=dict)
    # (pod uid, container name) -> (retry back-off, the reason shown meanwhile)
    start_failures: dict[tuple[str, str], tuple[BackoffEntry, Waiting]] = field(default_factory=dict)
    last_status: dict[str, Obj] = field(default_factory=dict)
    # What the runtime holds for a pod after a sync that started containers, in the form of
    # the agent's per-pass fingerprint: the next pass need not sync the pod again to find it so.
    synced_prints: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)
    # Pods killed and deleted by us that finalizers keep in the API: nothing left to do.
    terminated: set[str] = field(default_factory=set)
    # configMap and secret volumes are rewritten this often (upstream: about a minute).
    volume_refresh_seconds: float = 60.0
    volumes_at: dict[str, float] = field(default_factory=dict)
    probes: ProbeManager | None = None
    # The pods that had a sandbox in the sync pass's last listing of the runtime (None: no
    # listing yet), and those this process made one for: a pod in neither has no sandbox,
    # and its first sync need not ask the runtime again.
    listed_sandbox_pods: set[str] | None = None
    sandbox_made: set[str] = field(default_factory=set)
    # image reference -> (monotonic time, its ImageStatus image): a burst of pods of one image
    # asks the runtime once a second, not once per container.
    image_seen: dict[str, tuple[float, pb.Image]] = field(default_factory=dict)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    @property
    def ca_pem(self) -> bytes | None:
        """The cluster CA the agent trusts: the ca.crt of kube-api-access volumes."""
        return self.client.config.ca_pem

    async def get_object(self, kind: str, namespace: str, name: str) -> Obj | None:
        rtype = ("v1", "ConfigMap") if kind == "configmaps" else ("v1", "Secret")
        try:
            return await self.client.get(rtype, namespace, name)
        except ApiError as e:
            if e.code == 404:
                return None
            raise


def _pod_ref(pod: Obj) -> str:
    md = pod["metadata"]
    return f"{md['name']}_{md.get('namespace')}({md['uid']})"


class ImageError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


async def ensure_image(ctx: AgentContext, pod: Obj, c: Obj) -> pb.Image:
    image = str(c.get("image", ""))
    policy = c.get("imagePullPolicy") or "IfNotPresent"
    seen = ctx.image_seen.get(image)
    if seen is not None and time.monotonic() - seen[0] < IMAGE_SEEN_SECONDS and policy != "Always":
        present, found = True, seen[1]
    else:
        st = await ctx.call(ctx.runtime.image_status, image)
        present, found = st.HasField("image"), st.image
        if present:
            ctx.image_seen[image] = (time.monotonic(), found)
    if present and (policy != "Always" or found.id in ctx.offline_images):
        await ctx.recorder.event(pod, NORMAL, "Pulled", f'Container image "{image}" already present on machine')
        return found
    if policy == "Never":
        raise ImageError("ErrImageNeverPull",
                         f'Container image "{image}" is not present with pull policy of Never')
    entry = ctx.pull_backoff.get(image)
    if entry is not None and time.monotonic() - entry.at < entry.delay:
        raise ImageError("ImagePullBackOff", f'Back-off pulling image "{image}"')
    await ctx.recorder.event(pod, NORMAL, "Pulling", f'Pulling image "{image}"')
    started = time.monotonic()
    try:
        await ctx.call(ctx.runtime.pull_image, image)
    except grpc.RpcError as e:
        delay = min(entry.delay * 2, BACKOFF_MAX) if entry else BACKOFF_INITIAL
        ctx.pull_backoff[image] = BackoffEntry(delay, time.monotonic())
        msg = f'Failed to pull image "{image}": {e.details()}'  # type: ignore[attr-defined]
        await ctx.recorder.event(pod, WARNING, "Failed", msg)
        raise ImageError("ErrImagePull", msg) from None
    ctx.pull_backoff.pop(image, None)
    await ctx.recorder.event(pod, NORMAL, "Pulled", f'Successfully pulled image "{image}" in '
                                                    f"{time.monotonic() - started:.3f}s")
    st = await ctx.call(ctx.runtime.image_status, image)
    return st.image


class StartError(Exception):
    """The runtime refused to create or start the container (CreateContainerError, RunContainerError)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


async def start_container(ctx: AgentContext, pod: Obj, c: Obj, kind: str, attempt: int,
                          sid: str, sandbox_cfg: pb.PodSandboxConfig, pod_ip: str = "") -> str:
    """Create and start the container; its ID."""
    name = str(c["name"])
    image = await ensure_image(ctx, pod, c)
    cfgs.check_non_root(pod, c, image)
    if (pod.get("spec") or {}).get("hostNetwork"):
        pod_ip = ctx.host_ip
    env = await container_env(pod, c, ctx.get_object, ctx.host_ip, ctx.allocatable, pod_ip)
    command, args = command_and_args(c, env)
    mounts = container_mounts(ctx.data_dir, pod, c)
    config = cfgs.container_config(pod, c, kind, attempt, ctx.node, image.id or str(c["image"]),
                                   command, args, env, mounts, ctx.memory_capacity)
    try:
        cid = await ctx.call(ctx.runtime.create_container, sid, config, sandbox_cfg)
    except grpc.RpcError as e:
        raise StartError("CreateContainerError", str(e.details())) from None  # type: ignore[attr-defined]
    await ctx.recorder.event(pod, NORMAL, "Created", f"Created container: {name}")
    await _start_created(ctx, pod, name, cid)
    err = await hooks.post_start(ctx.runtime, pod, c, cid, lambda: pod_target(ctx, pod, sid, pod_ip))
    if err is not None:
        # The output stays out of the event (it may hold secrets), as upstream.
        await ctx.recorder.event(pod, WARNING, "FailedPostStartHook", "PostStartHook failed")
        await kill_container(ctx, pod, c, cid, sid, pod_ip, pod_grace(pod), "FailedPostStartHook")
        raise StartError("PostStartHookError", err)
    return cid


def pod_grace(pod: Obj) -> int:
    return int((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))


async def pod_target(ctx: AgentContext, pod: Obj, sid: str, pod_ip: str) -> Target:
    """Where the pod's network hooks and probes connect: its namespace, its address."""
    host_net = bool((pod.get("spec") or {}).get("hostNetwork"))
    if ctx.probes is not None:
        return await ctx.probes.target(str(pod["metadata"]["uid"]), sid, pod_ip, host_net)
    return await sandbox_target(ctx.runtime, sid, pod_ip, host_net)


async def kill_container(ctx: AgentContext, pod: Obj, c: Obj, cid: str, sid: str, pod_ip: str,
                         grace: int, message: str = "") -> None:
    """The kubelet's killContainer: the Killing event, preStop within the grace, then the stop."""
    await ctx.recorder.event(pod, NORMAL, "Killing", message or f"Stopping container {c['name']}")
    if c.get("lifecycle"):
        grace, err = await hooks.pre_stop(ctx.runtime, pod, c, cid, lambda: pod_target(ctx, pod, sid, pod_ip),
                                          grace)
        if err is not None:
            await ctx.recorder.event(pod, WARNING, "FailedPreStopHook", "PreStopHook failed")
    await ctx.call(ctx.runtime.stop_container, cid, grace)


async def _start_created(ctx: AgentContext, pod: Obj, name: str, cid: str) -> None:
    try:
        await ctx.call(ctx.runtime.start_container, cid)
    except grpc.RpcError as e:
        # Not left half-made: the next attempt creates it afresh.
        await ctx.call(ctx.runtime.remove_container, cid)
        raise StartError("RunContainerError", str(e.details())) from None  # type: ignore[attr-defined]
    await ctx.recorder.event(pod, NORMAL, "Started", f"Started container: {name}")


def _should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def runtime_print(sid: str, state: PodRuntimeState) -> tuple[tuple[str, int], ...]:
    """The sandbox's and containers' (ID, state) pairs, sorted, as the agent's sync pass lists them."""
    pairs: list[tuple[str, int]] = [(sid, pb.SANDBOX_READY if state.sandbox_ready else pb.SANDBOX_NOTREADY)]
    pairs += [(st.id, st.state) for hist in state.containers.values() for st in hist]
    return tuple(sorted(pairs))


async def read_state(ctx: AgentContext, uid: str, sid: str, sandbox: PodRuntimeState | None = None,
                     fresh: bool = False) -> PodRuntimeState:
    """The pod's sandbox `sid` and its containers as the runtime has them.

    `sandbox`: its sandbox as just read (ready, IP), not asked again; `fresh`: the
    sandbox was just created, so it has no containers to list. Each runtime call
    saved here is one fewer per pod in a burst of pod starts.
    """
    state = PodRuntimeState()
    if sandbox is not None:
        state.sandbox_ready, state.sandbox_ip = sandbox.sandbox_ready, sandbox.sandbox_ip
    elif sid:
        sb = await ctx.call(ctx.runtime.sandbox_status, sid)
        state.sandbox_ready = sb.status.state == pb.SANDBOX_READY
        state.sandbox_ip = sb.status.network.ip
    if fresh:
        return state
    listed = await ctx.call(ctx.runtime.list_containers,
                            pb.ContainerFilter(label_selector={cfgs.POD_UID: uid}))
    return await _add_statuses(ctx, state, [c.id for c in listed if not sid or c.pod_sandbox_id == sid])


async def _read_started(ctx: AgentContext, started: PodRuntimeState) -> PodRuntimeState:
    """The containers `started` lists as started, read back from the runtime."""
    state = PodRuntimeState(sandbox_ip=started.sandbox_ip, sandbox_ready=started.sandbox_ready)
    return await _add_statuses(ctx, state, started.started_ids)


async def _add_statuses(ctx: AgentContext, state: PodRuntimeState, cids: list[str]) -> PodRuntimeState:
    """`state` with the runtime's statuses of `cids` (gone ones skipped), newest attempt first."""
    for cid in cids:
        try:
            st = (await ctx.call(ctx.runtime.container_status, cid)).status
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                continue
            raise
        state.containers.setdefault(st.metadata.name, []).append(st)
    for hist in state.containers.values():
        hist.sort(key=lambda s: (s.metadata.attempt, s.created_at), reverse=True)
    return state


async def _restart_or_wait(ctx: AgentContext, pod: Obj, c: Obj, hist: list[pb.ContainerStatus],
                           state: PodRuntimeState) -> int | None:
    """The attempt to start now, or None while the container backs off."""
    uid, name = str(pod["metadata"]["uid"]), str(c["name"])
    latest = hist[0]
    key = (uid, name)
    entry = ctx.backoff.get(key)
    now = time.monotonic()
    if entry is not None and now - entry.at > 2 * BACKOFF_MAX:
        del ctx.backoff[key]  # ran fine long enough: the back-off starts over
        entry = None
    finished_ago = max(0.0, time.time() - latest.finished_at / 1e9) if latest.finished_at else 1e9
    if entry is not None and finished_ago < entry.delay:
        msg = f"back-off {int(entry.delay)}s restarting failed container={name} pod={_pod_ref(pod)}"
        state.waiting[name] = Waiting("CrashLoopBackOff", msg)
        if ctx.backoff_reported.get(key) != latest.id:
            ctx.backoff_reported[key] = latest.id
            await ctx.recorder.event(pod, WARNING, "BackOff",
                                     f"Back-off restarting failed container {name} in pod {_pod_ref(pod)}")
        return None
    ctx.backoff[key] = BackoffEntry(min(entry.delay * 2, BACKOFF_MAX) if entry else BACKOFF_INITIAL, now)
    # Keep the run before this one for `lastState` and previous logs; older ones go.
    for old in hist[1:]:
        await ctx.call(ctx.runtime.remove_container, old.id)
    return int(latest.metadata.attempt) + 1


async def _start_guarded(ctx: AgentContext, pod: Obj, c: Obj, kind: str, attempt: int, sid: str,
                         sandbox_cfg: pb.PodSandboxConfig, state: PodRuntimeState) -> bool:
    """Start the container unless an earlier failure still backs off; True when it started."""
    key = (str(pod["metadata"]["uid"]), str(c["name"]))
    failed = ctx.start_failures.get(key)
    if failed is not None and time.monotonic() - failed[0].at < failed[0].delay:
        state.waiting[key[1]] = failed[1]
        return False
    try:
        state.started_ids.append(await start_container(ctx, pod, c, kind, attempt, sid, sandbox_cfg,
                                                       state.sandbox_ip))
    except (ImageError, ConfigError, StartError) as e:
        if isinstance(e, StartError) and e.reason == "PostStartHookError":
            # It ran and was killed: its restarts go through the crash back-off (upstream).
            ctx.start_failures.pop(key, None)
            state.waiting[key[1]] = Waiting(e.reason, str(e))
            return False
        if isinstance(e, ImageError):
            waiting = Waiting(e.reason, e.message)
        else:
            reason = e.reason if isinstance(e, StartError) else "CreateContainerConfigError"
            waiting = Waiting(reason, str(e))
            await ctx.recorder.event(pod, WARNING, "Failed", f"Error: {e}")
        delay = min(failed[0].delay * 2, FAILURE_BACKOFF_MAX) if failed else FAILURE_BACKOFF_INITIAL
        ctx.start_failures[key] = (BackoffEntry(delay, time.monotonic()), waiting)
        state.waiting[key[1]] = waiting
        return False
    ctx.start_failures.pop(key, None)
    return True


async def _resume_created(ctx: AgentContext, pod: Obj, st: pb.ContainerStatus,
                          state: PodRuntimeState) -> bool:
    """A container created but never started (an agent stopped in between): start it now."""
    try:
        await _start_created(ctx, pod, st.metadata.name, st.id)
    except StartError as e:
        state.waiting[st.metadata.name] = Waiting(e.reason, str(e))
        await ctx.recorder.event(pod, WARNING, "Failed", f"Error: {e}")
        return False
    return True


async def _ensure_sandbox(ctx: AgentContext, pod: Obj) -> tuple[str, pb.PodSandboxConfig, bool] | None:
    """(sandbox ID, its config, whether it was created just now), or None after a failure."""
    uid = str(pod["metadata"]["uid"])
    if ctx.listed_sandbox_pods is not None and uid not in ctx.listed_sandbox_pods and \
            uid not in ctx.sandbox_made:
        sandboxes: list[pb.PodSandbox] = []  # a new pod (see AgentContext.listed_sandbox_pods)
    else:
        sandboxes = await ctx.call(ctx.runtime.list_sandboxes,
                                   pb.PodSandboxFilter(label_selector={cfgs.POD_UID: uid}))
    ready = sorted((s for s in sandboxes if s.state == pb.SANDBOX_READY), key=lambda s: s.created_at)
    if ready:
        sb = ready[-1]
        if time.monotonic() - ctx.volumes_at.get(uid, 0.0) > ctx.volume_refresh_seconds or \
                metadata_changed(pod):
            try:
                await prepare_volumes(ctx.data_dir, pod, ctx.get_object, ctx.allocatable, ctx.ca_pem)
            except ConfigError as e:  # a source deleted later: the files stay as they were
                log.info("volumes not refreshed pod=%s err=%s", _pod_ref(pod), e)
            ctx.volumes_at[uid] = time.monotonic()
        return sb.id, cfgs.sandbox_config(pod, ctx.node, ctx.data_dir, sb.metadata.attempt), False
    attempt = max((s.metadata.attempt + 1 for s in sandboxes), default=0)
    for old in sandboxes:  # a sandbox that died takes its containers with it (upstream)
        await ctx.call(ctx.runtime.stop_sandbox, old.id)
        await ctx.call(ctx.runtime.remove_sandbox, old.id)
    await prepare_volumes(ctx.data_dir, pod, ctx.get_object, ctx.allocatable, ctx.ca_pem)
    ctx.volumes_at[uid] = time.monotonic()
    cfg = cfgs.sandbox_config(pod, ctx.node, ctx.data_dir, attempt)
    key = (uid, "")  # the sandbox's own retry back-off
    failed = ctx.start_failures.get(key)
    if failed is not None and time.monotonic() - failed[0].at < failed[0].delay:
        return None
    ctx.sandbox_made.add(uid)  # before the call: a call that fails may still have made it
    try:
        sid = await ctx.call(ctx.runtime.run_sandbox, cfg)
    except grpc.RpcError as e:
        delay = min(failed[0].delay * 2, FAILURE_BACKOFF_MAX) if failed else FAILURE_BACKOFF_INITIAL
        msg = f"Failed to create pod sandbox: {e.details()}"  # type: ignore[attr-defined]
        ctx.start_failures[key] = (BackoffEntry(delay, time.monotonic()), Waiting("ContainerCreating"))
        await ctx.recorder.event(pod, WARNING, "FailedCreatePodSandBox", msg)
        log.warning("sandbox not created pod=%s err=%s", _pod_ref(pod), msg)
        return None
    ctx.start_failures.pop(key, None)
    log.info("sandbox created pod=%s sandbox=%s", _pod_ref(pod), sid)
    return sid, cfg, True


async def sync_pod(ctx: AgentContext, pod: Obj) -> bool:
    """Bring a live pod one step closer to its spec, then write its status.

    True when the pod is settled: nothing to do until the runtime or the pod
    changes (False: a back-off or a failure to retry soon)."""
    md, spec = pod["metadata"], pod.get("spec") or {}
    uid = str(md["uid"])
    terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
    state = PodRuntimeState()
    if terminal:
        await stop_pod(ctx, pod, uid, grace=0, remove=False)
        return True
    if past_deadline(pod):
        msg = "Pod was active on the node longer than the specified deadline"
        await ctx.recorder.event(pod, NORMAL, "DeadlineExceeded", msg)
        await stop_pod(ctx, pod, uid, int(spec.get("terminationGracePeriodSeconds", 30)), remove=False)
        await write_status(ctx, pod, await read_state(ctx, uid, ""),
                           {"phase": "Failed", "reason": "DeadlineExceeded", "message": msg})
        return True
    try:
        ensured = await _ensure_sandbox(ctx, pod)
    except ConfigError as e:
        for c in list(spec.get("initContainers") or []) + list(spec.get("containers") or []):
            state.waiting[str(c["name"])] = Waiting("CreateContainerConfigError", str(e))
        await ctx.recorder.event(pod, WARNING, "FailedMount", mount_failure_message(e))
        await write_status(ctx, pod, state)
        return False
    if ensured is None:  # the runtime could not make it; retried after a back-off
        await write_status(ctx, pod, state)
        return False
    sid, sandbox_cfg, fresh = ensured
    state = await read_state(ctx, uid, sid, fresh=fresh)
    if ctx.probes is not None and ctx.probes.failed(uid):
        state = await _kill_unhealthy(ctx, pod, state, sid)
    policy = str(spec.get("restartPolicy") or "Always")
    started = False
    inits_done = True
    for c in spec.get("initContainers") or []:
        hist = state.containers.get(c["name"], [])
        if hist and hist[0].state == pb.CONTAINER_EXITED and hist[0].exit_code == 0:
            continue
        inits_done = False
        if not hist:
            started |= await _start_guarded(ctx, pod, c, "init", 0, sid, sandbox_cfg, state)
        elif hist[0].state == pb.CONTAINER_CREATED:
            started |= await _resume_created(ctx, pod, hist[0], state)
        elif hist[0].state == pb.CONTAINER_EXITED and policy != "Never":
            attempt = await _restart_or_wait(ctx, pod, c, hist, state)
            if attempt is not None:
                started |= await _start_guarded(ctx, pod, c, "init", attempt, sid, sandbox_cfg, state)
        break
    if inits_done:
        for c in spec.get("containers") or []:
            hist = state.containers.get(c["name"], [])
            if not hist:
                started |= await _start_guarded(ctx, pod, c, "regular", 0, sid, sandbox_cfg, state)
            elif hist[0].state == pb.CONTAINER_CREATED:
                started |= await _resume_created(ctx, pod, hist[0], state)
            elif hist[0].state == pb.CONTAINER_EXITED and _should_restart(policy, hist[0].exit_code):
                attempt = await _restart_or_wait(ctx, pod, c, hist, state)
                if attempt is not None:
                    started |= await _start_guarded(ctx, pod, c, "regular", attempt, sid, sandbox_cfg,
                                                    state)
    if started:
        waiting = state.waiting
        before = {st.id for hist in state.containers.values() for st in hist}
        # A sandbox made in this sync holds only what this sync started: ask for those.
        state = await (_read_started(ctx, state) if fresh else read_state(ctx, uid, sid, sandbox=state))
        state.waiting = waiting
        # Only containers still running are no news: one that already exited
        # must be seen by the next pass (its restart must not wait for a resync).
        if all(st.state == pb.CONTAINER_RUNNING for hist in state.containers.values() for st in hist
               if st.id not in before):
            ctx.synced_prints[uid] = runtime_print(sid, state)
    if ctx.probes is not None:
        ctx.probes.update(pod, state, sid)
    await write_status(ctx, pod, state)
    # A deadline must be checked while it runs.
    return not state.waiting and spec.get("activeDeadlineSeconds") is None


async def _kill_unhealthy(ctx: AgentContext, pod: Obj, state: PodRuntimeState,
                          sid: str) -> PodRuntimeState:
    """Containers a liveness or startup probe failed are killed; the restart policy
    then restarts them like any container that ended."""
    assert ctx.probes is not None
    uid = str(pod["metadata"]["uid"])
    pod_ip = ctx.host_ip if (pod.get("spec") or {}).get("hostNetwork") else state.sandbox_ip
    killed = False
    for w in ctx.probes.failed(uid):
        hist = state.containers.get(w.name) or []
        if not hist or hist[0].id != w.cid or hist[0].state != pb.CONTAINER_RUNNING:
            continue
        grace = w.spec.grace if w.spec.grace is not None else pod_grace(pod)
        log.info("killing unhealthy container pod=%s container=%s probe=%s output=%r",
                 _pod_ref(pod), w.name, w.kind, w.message[:200])
        await kill_container(ctx, pod, w.container, w.cid, sid, pod_ip, grace,
                             f"Container {w.name} failed {w.kind} probe, will be restarted")
        killed = True
    return await read_state(ctx, uid, sid) if killed else state


def past_deadline(pod: Obj) -> bool:
    """activeDeadlineSeconds counted from status.startTime, as upstream."""
    deadline = (pod.get("spec") or {}).get("activeDeadlineSeconds")
    start = (pod.get("status") or {}).get("startTime")
    if deadline is None or not start:
        return False
    return (datetime.now(UTC) - meta.parse_time(str(start))).total_seconds() >= int(deadline)


async def write_status(ctx: AgentContext, pod: Obj, state: PodRuntimeState,
                       override: Obj | None = None) -> None:
    md = pod["metadata"]
    old = pod.get("status") or {}
    # Fields others own (nominatedNodeName, an eviction's reason...) are kept.
    status = {**old, **pod_status(pod, state, ctx.host_ip), **(override or {})}
    uid = str(md["uid"])
    if status == old or status == ctx.last_status.get(uid):
        return
    # The uid test keeps a stale sync from writing onto a new pod of the same name.
    patch = [{"op": "test", "path": "/metadata/uid", "value": uid},
             {"op": "add", "path": "/status", "value": status}]
    try:
        await ctx.client.patch(PODS, str(md["namespace"]), str(md["name"]), patch, patch_type="json",
                               subresource="status")
        ctx.last_status[uid] = status
    except ApiError as e:
        if e.code not in (404, 409, 422):
            raise
        # 422: a new pod of that name, or a status the server refuses (a bug: say so).
        (log.warning if e.code == 422 else log.info)("pod status not written pod=%s code=%s err=%s",
                                                     _pod_ref(pod), e.code, e)


async def stop_pod(ctx: AgentContext, pod: Obj | None, uid: str, grace: int, remove: bool) -> None:
    """Stop every container of the pod (SIGTERM, SIGKILL after `grace` s) and its
    sandboxes; with `remove`, also remove them and the pod's files."""
    if ctx.probes is not None:
        ctx.probes.forget(uid)
    listed = await ctx.call(ctx.runtime.list_containers,
                            pb.ContainerFilter(label_selector={cfgs.POD_UID: uid}))
    running = [c for c in listed if c.state in (pb.CONTAINER_RUNNING, pb.CONTAINER_CREATED)]
    await asyncio.gather(*(_stop_one(ctx, pod, c, grace) for c in running))
    sandboxes = await ctx.call(ctx.runtime.list_sandboxes,
                               pb.PodSandboxFilter(label_selector={cfgs.POD_UID: uid}))
    for sb in sandboxes:
        if sb.state == pb.SANDBOX_READY:
            await ctx.call(ctx.runtime.stop_sandbox, sb.id)
        if remove:
            await ctx.call(ctx.runtime.remove_sandbox, sb.id)
    if remove:
        for c in listed:  # containers whose sandbox was already gone
            await ctx.call(ctx.runtime.remove_container, c.id)
        await asyncio.to_thread(remove_pod_dir, ctx.data_dir, uid)
        for table in (ctx.backoff, ctx.backoff_reported, ctx.start_failures):
            for key in [k for k in table if k[0] == uid]:
                table.pop(key, None)  # type: ignore[attr-defined]
        ctx.last_status.pop(uid, None)
        ctx.volumes_at.pop(uid, None)
        ctx.sandbox_made.discard(uid)


async def _stop_one(ctx: AgentContext, pod: Obj | None, c: pb.Container, grace: int) -> None:
    if pod is None or c.state != pb.CONTAINER_RUNNING:
        await ctx.call(ctx.runtime.stop_container, c.id, grace)
        return
    spec = pod.get("spec") or {}
    c_spec: Obj = next((x for x in spec.get("containers") or [] if x.get("name") == c.metadata.name),
                       {"name": c.metadata.name})
    pod_ip = ctx.host_ip if spec.get("hostNetwork") else ""
    if not pod_ip and grace > 0 and (c_spec.get("lifecycle") or {}).get("preStop"):
        pod_ip = (await ctx.call(ctx.runtime.sandbox_status, c.pod_sandbox_id)).status.network.ip
    await kill_container(ctx, pod, c_spec, c.id, c.pod_sandbox_id, pod_ip, grace)


async def terminate_pod(ctx: AgentContext, pod: Obj) -> None:
    """A pod marked for deletion: kill it within its grace period, then delete
    the object for good (grace 0, only this incarnation: uid precondition)."""
    md = pod["metadata"]
    uid = str(md["uid"])
    grace = md.get("deletionGracePeriodSeconds")
    if grace is None:
        grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
    log.info("terminating pod=%s grace=%s", _pod_ref(pod), grace)
    await stop_pod(ctx, pod, uid, int(grace), remove=False)
    # As the kubelet since 1.27: a deleted pod ends in a terminal phase, so whoever
    # holds it by a finalizer (a Job) sees how its containers ended.
    state = await read_state(ctx, uid, "")
    status = pod_status(pod, state, ctx.host_ip)
    ok = all((s["state"].get("terminated") or {}).get("exitCode", 1) == 0
             for s in status.get("containerStatuses") or [])
    await write_status(ctx, pod, state, {"phase": "Succeeded" if ok else "Failed"})
    await stop_pod(ctx, pod, uid, 0, remove=True)
    try:
        await ctx.client.delete(PODS, str(md["namespace"]), str(md["name"]), grace_period_seconds=0,
                                preconditions={"uid": uid})
    except ApiError as e:
        if e.code not in (404, 409):
            raise
    ctx.terminated.add(uid)
