"""The agent's HTTPS endpoint: `/containerLogs`, `/exec` and `/attach` as
the kubelet serves them to the API server (which is its only caller).

Which container a request means comes from the pod's status as the agent
last wrote it (as the kubelet's validateContainerLogStatus), so `previous`
is the run before the current one and the errors read like upstream's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from aiohttp import web

from timonel.node_agent.runtime.api import runtime_pb2 as pb
from timonel.node_agent.runtime.client import RuntimeClient

from .. import containers as cfgs
from ..status import ID_PREFIX
from . import certs, logs, sessions

log = logging.getLogger(__name__)

Obj = dict[str, Any]
PodLookup = Callable[[str, str], Obj | None]


@dataclass
class StreamingConfig:
    node_ip: str
    port: int
    data_dir: str
    hostname: str
    client_ca_pem: bytes | None


def _text(code: int, message: str) -> web.Response:
    return web.Response(status=code, text=message + "\n", content_type="text/plain")


@web.middleware
async def _authorize(request: web.Request, handler: Any) -> web.StreamResponse:
    peer = request.transport.get_extra_info("peercert") if request.transport else None
    refused = certs.check_caller(peer)
    if refused is not None:
        log.info("agent endpoint refused path=%s code=%s", request.path, refused[0])
        return _text(*refused)
    return await handler(request)


def _container_spec(pod: Obj, name: str) -> Obj | None:
    spec = pod.get("spec") or {}
    for c in list(spec.get("initContainers") or []) + list(spec.get("containers") or []) + \
            list(spec.get("ephemeralContainers") or []):
        if c.get("name") == name:
            return dict(c)
    return None


def _status_of(pod: Obj, name: str) -> Obj | None:
    st = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"):
        for cs in st.get(key) or []:
            if cs.get("name") == name:
                return dict(cs)
    return None


class LogError(Exception):
    """What the kubelet answers 400 with: no log to show for this container."""


def container_for_logs(pod: Obj, name: str, previous: bool) -> str:
    """The runtime ID of the container whose log to read (upstream's
    validateContainerLogStatus, with its messages)."""
    pod_name = pod["metadata"]["name"]
    cs = _status_of(pod, name)
    if cs is None:
        raise LogError(f'container "{name}" in pod "{pod_name}" is not available')
    state, last = cs.get("state") or {}, (cs.get("lastState") or {}).get("terminated")
    running, terminated, waiting = state.get("running"), state.get("terminated"), state.get("waiting")
    cid = ""
    if previous:
        if not last or not last.get("containerID"):
            raise LogError(f'previous terminated container "{name}" in pod "{pod_name}" not found')
        cid = last["containerID"]
    elif running is not None:
        cid = cs.get("containerID", "")
    elif terminated is not None:
        cid = terminated.get("containerID") or (last or {}).get("containerID", "")
        if not cid:
            raise LogError(f'container "{name}" in pod "{pod_name}" is terminated')
    elif last:
        cid = last.get("containerID", "")
        if not cid:
            raise LogError(f'container "{name}" in pod "{pod_name}" is terminated')
    elif waiting is not None:
        reason = waiting.get("reason", "")
        why = {"ErrImagePull": "image can't be pulled",
               "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
        raise LogError(f'container "{name}" in pod "{pod_name}" is waiting to start: {why}')
    else:
        raise LogError(f'container "{name}" in pod "{pod_name}" is waiting to start - no logs yet')
    return cid.removeprefix(ID_PREFIX)


class Handlers:
    def __init__(self, runtime: RuntimeClient, pod_of: PodLookup) -> None:
        self.runtime = runtime
        self.pod_of = pod_of

    def _pod_and_container(self, request: web.Request) -> tuple[Obj, str]:
        ns, name = request.match_info["namespace"], request.match_info["pod"]
        container = request.match_info["container"]
        pod = self.pod_of(ns, name)
        if pod is None:
            raise web.HTTPNotFound(text=f'pod "{ns}/{name}" does not exist on this node\n')
        if _container_spec(pod, container) is None:
            raise web.HTTPNotFound(text=f'container "{container}" not found in pod "{name}"\n')
        return pod, container

    async def _state(self, cid: str) -> int | None:
        try:
            st = await asyncio.to_thread(self.runtime.container_status, cid)
        except grpc.RpcError:
            return None
        return int(st.status.state)

    async def container_logs(self, request: web.Request) -> web.StreamResponse:
        pod, container = self._pod_and_container(request)
        try:
            opts = logs.parse_options(request.query)
            cid = container_for_logs(pod, container, opts.previous)
        except (logs.OptionError, LogError) as e:
            return _text(400, str(e))
        try:
            st = (await asyncio.to_thread(self.runtime.container_status, cid)).status
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:  # type: ignore[attr-defined]
                raise
            return _text(400, f'container "{container}" in pod "{pod["metadata"]["name"]}" is not '
                              "available: its runtime container is gone")
        opts.follow = opts.follow and st.state in (pb.CONTAINER_RUNNING, pb.CONTAINER_CREATED)

        async def alive() -> bool:
            return await self._state(cid) in (pb.CONTAINER_RUNNING, pb.CONTAINER_CREATED)

        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        if opts.follow:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            async for chunk in logs.read_log(st.log_path, opts, alive):
                await resp.write(chunk)
        except FileNotFoundError:
            log.info("log file gone path=%s", st.log_path)
        await resp.write_eof()
        return resp

    async def _running_container(self, pod: Obj, container: str) -> str | None:
        uid = str(pod["metadata"].get("uid", ""))
        listed = await asyncio.to_thread(self.runtime.list_containers, pb.ContainerFilter(
            state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING),
            label_selector={cfgs.POD_UID: uid, cfgs.CONTAINER_NAME: container}))
        listed.sort(key=lambda c: (c.metadata.attempt, c.created_at), reverse=True)
        return listed[0].id if listed else None

    def _stream_flags(self, request: web.Request) -> tuple[bool, bool, bool, bool]:
        q = request.query

        def flag(*names: str) -> bool:
            return any(q.get(n, "").lower() in ("1", "true") for n in names)

        # The kubelet's names (input/output/error) and the API's (stdin/stdout/stderr).
        return (flag("stdin", "input"), flag("stdout", "output"), flag("stderr", "error"),
                flag("tty"))

    async def _upgrade_target(self, request: web.Request) -> tuple[str, str, Obj, str] | web.Response:
        pod, container = self._pod_and_container(request)
        cid = await self._running_container(pod, container)
        if cid is None:
            return _text(400, f'container not found ("{container}"): it is not running')
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return _text(426, "this endpoint speaks WebSocket only (v5.channel.k8s.io, "
                              "v4.channel.k8s.io); SPDY is not supported")
        protocol = sessions.pick_protocol(request)
        if protocol is None:
            return _text(400, "none of the offered WebSocket subprotocols is supported; use one of "
                              + ", ".join(sessions.ch.PROTOCOLS))
        return cid, protocol, pod, container

    async def exec(self, request: web.Request) -> web.StreamResponse:
        cmd = request.query.getall("command", [])
        if not cmd:
            return _text(400, "you must specify at least one command for the container")
        target = await self._upgrade_target(request)
        if isinstance(target, web.Response):
            return target
        cid, protocol, _, _ = target
        stdin, stdout, stderr, tty = self._stream_flags(request)
        ws = await sessions.open_socket(request, protocol)
        log.info("exec cid=%s cmd=%s tty=%s stdin=%s protocol=%s", cid, cmd[0], tty, stdin, protocol)
        await sessions.run_exec(ws, protocol,
                                lambda: self.runtime.exec(cid, cmd, tty=tty, stdin=stdin),
                                cmd, stdin, stdout, stderr and not tty, tty)
        return ws

    async def attach(self, request: web.Request) -> web.StreamResponse:
        target = await self._upgrade_target(request)
        if isinstance(target, web.Response):
            return target
        cid, protocol, pod, container = target
        stdin, stdout, stderr, _ = self._stream_flags(request)
        # As the kubelet: the container decides tty and whether there is a stdin to attach to.
        pod_spec = pod.get("spec") or {}
        spec: dict[str, Any] = next((c for c in [*(pod_spec.get("containers") or []),
                                                 *(pod_spec.get("initContainers") or [])]
                                     if c.get("name") == container), {})
        tty = bool(spec.get("tty"))
        stdin = stdin and bool(spec.get("stdin"))
        ws = await sessions.open_socket(request, protocol)
        log.info("attach cid=%s stdin=%s tty=%s protocol=%s", cid, stdin, tty, protocol)
        await sessions.run_exec(ws, protocol,
                                lambda: self.runtime.attach(cid, stdin=stdin, tty=tty, stdout=stdout,
                                                            stderr=stderr and not tty),
                                [], stdin, stdout, stderr and not tty, tty, attach=True)
        return ws


def make_app(runtime: RuntimeClient, pod_of: PodLookup) -> web.Application:
    h = Handlers(runtime, pod_of)
    app = web.Application(middlewares=[_authorize])
    app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", h.container_logs)
    for verb, fn in (("exec", h.exec), ("attach", h.attach)):
        # The kubelet also has /{verb}/{ns}/{pod}/{uid}/{container}; the API server uses this one.
        app.router.add_route("GET", f"/{verb}/{{namespace}}/{{pod}}/{{container}}", fn)
        app.router.add_route("POST", f"/{verb}/{{namespace}}/{{pod}}/{{container}}", fn)
    return app


async def start(config: StreamingConfig, runtime: RuntimeClient,
                pod_of: PodLookup) -> tuple[web.AppRunner, int]:
    """Serve HTTPS on node_ip:port (0: any free port); the runner and the bound port."""
    if not config.client_ca_pem:
        log.warning("no cluster CA known (plain http API server?): the agent endpoint will refuse "
                    "every caller, so logs and exec are unavailable")
    cert, key = await asyncio.to_thread(certs.ensure_serving_cert, config.data_dir, config.node_ip,
                                        config.hostname)
    ctx = certs.server_context(cert, key, config.client_ca_pem)
    runner = web.AppRunner(make_app(runtime, pod_of), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.node_ip, config.port, ssl_context=ctx, reuse_address=True)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    port = int(runner.addresses[0][1]) if runner.addresses else config.port
    log.info("agent endpoint serving address=%s port=%s", config.node_ip, port)
    return runner, port
