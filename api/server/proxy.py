"""pods/X/log, exec and attach: proxied to the node agent that runs the pod.

The API server finds the pod's node, reaches the agent at the Node's
InternalIP and `daemonEndpoints.kubeletEndpoint.Port` over HTTPS with its
kubelet client certificate (issued from the cluster CA at start, kept in
DATA/tls), and does not verify the agent's self-signed serving certificate,
as upstream without --kubelet-certificate-authority. Logs stream through as
text/plain; exec and attach WebSockets are upgraded on both sides with the
subprotocol the agent chose, and frames are piped until either side closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import WSMsgType, web

from timonel.api import tls
from timonel.api.errors import ApiError, bad_request

if TYPE_CHECKING:
    # Types only: these would load the server's storage and validation
    # (kubernetes-validate, aetcd: ~20 MB) into every importer.
    from timonel.api.server.context import Server
    from timonel.api.server.routing import RequestInfo

log = logging.getLogger(__name__)

Obj = dict[str, Any]
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
# What node agents speak (node_agent/agent/streaming/channels.py), newest first.
CHANNEL_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io",
                     "v2.channel.k8s.io", "channel.k8s.io", "base64.channel.k8s.io")
CONNECT_TIMEOUT = 10.0
NODES = ("", "v1", "nodes")


def kubelet_ssl(server: Server) -> ssl.SSLContext:
    """The context the API server calls node agents with (made once per process)."""
    ctx = server.extra.get("kubelet_ssl")
    if isinstance(ctx, ssl.SSLContext):
        return ctx
    tls_dir = server.extra.get("tls_dir")
    if not tls_dir:
        raise ApiError(503, "this API server has no cluster CA (it was started without TLS), so it "
                       "cannot authenticate to node agents for logs, exec and attach",
                       "ServiceUnavailable")
    # Made (or renewed) with the serving certificate at start: tls.ensure_apiserver_files.
    cert, key = tls.kubelet_client_files(str(tls_dir))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # Agents serve self-signed certificates (no --kubelet-certificate-authority upstream).
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(cert, key)
    server.extra["kubelet_ssl"] = ctx
    return ctx


def container_names(pod: Obj) -> list[str]:
    spec = pod.get("spec") or {}
    return [str(c.get("name")) for key in ("initContainers", "containers", "ephemeralContainers")
            for c in spec.get(key) or []]


def resolve_container(pod: Obj, container: str) -> str:
    """The container a request means (upstream's validateContainer, plus the
    default-container annotation kubectl also honours)."""
    name = pod["metadata"]["name"]
    names = container_names(pod)
    if container:
        if container not in names:
            raise bad_request(f"container {container} is not valid for pod {name}")
        return container
    annotated = ((pod["metadata"].get("annotations") or {}).get(DEFAULT_CONTAINER_ANNOTATION))
    if annotated and annotated in names:
        return str(annotated)
    regular = (pod.get("spec") or {}).get("containers") or []
    if len(regular) == 1:
        return str(regular[0]["name"])
    if not regular:
        raise bad_request(f"a container name must be specified for pod {name}")
    raise bad_request(f"a container name must be specified for pod {name}, "
                      f"choose one of: [{' '.join(names)}]")


async def agent_address(server: Server, node_name: str) -> str:
    """host:port of the node agent of `node_name`."""
    from timonel.api import resources

    rtype = resources.lookup(*NODES)
    assert rtype is not None
    try:
        node = await server.objects.get(rtype, "", node_name)
    except ApiError as e:
        if e.code == 404:
            raise ApiError(503, f'node "{node_name}" of the pod does not exist (any more): '
                           "no agent to ask", "ServiceUnavailable") from None
        raise
    status = node.get("status") or {}
    port = int(((status.get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port") or 0)
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    host = addresses.get("InternalIP") or addresses.get("ExternalIP") or addresses.get("Hostname")
    if not host or not port:
        raise ApiError(503, f'node "{node_name}" publishes no agent endpoint (status.addresses '
                       "InternalIP and status.daemonEndpoints.kubeletEndpoint.Port): its agent is "
                       "too old or not started yet", "ServiceUnavailable")
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _agent_error(code: int, text: str, url: str) -> ApiError:
    message = text.strip() or f"the node agent answered {code}"
    if code == 400:
        return bad_request(message)
    if code == 404:
        return ApiError(404, message, "NotFound")
    if code in (401, 403):
        return ApiError(500, f"the node agent refused the API server's credentials ({code}): "
                        f"{message}", "InternalError")
    return ApiError(500, f'{url}: {message}', "InternalError")


async def streaming(server: Server, request: web.Request, info: RequestInfo) -> web.StreamResponse:
    pod = await server.objects.get(info.rtype, info.namespace, info.name)
    sub = info.subresource
    if sub == "portforward":
        raise ApiError(503, "port forwarding is not supported by timonel yet", "ServiceUnavailable")
    container = resolve_container(pod, request.query.get("container", ""))
    node = (pod.get("spec") or {}).get("nodeName")
    query = [(k, v) for k, v in request.query.items() if k != "container"]
    if sub == "log":
        if not node:  # upstream: an empty log until the pod is scheduled
            return web.Response(text="", content_type="text/plain")
        return await _proxy_log(server, request, await agent_address(server, node),
                                f"/containerLogs/{_seg(info.namespace)}/{_seg(info.name)}/{_seg(container)}",
                                query)
    if not node:
        raise bad_request(f"pod {info.name} does not have a host assigned")
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise bad_request(f"cannot exec into or attach to a completed pod; current phase is {phase}")
    if not any(request.query.get(k, "").lower() in ("1", "true") for k in ("stdin", "stdout", "stderr")):
        raise bad_request("you must specify at least 1 of stdin, stdout, stderr")
    if sub == "exec" and not request.query.getall("command", []):
        raise bad_request("you must specify at least one command for the container")
    path = f"/{sub}/{_seg(info.namespace)}/{_seg(info.name)}/{_seg(container)}"
    return await _proxy_websocket(server, request, await agent_address(server, node), path, query)


def _seg(s: str) -> str:
    return quote(s, safe="")


async def _proxy_log(server: Server, request: web.Request, address: str, path: str,
                     query: list[tuple[str, str]]) -> web.StreamResponse:
    url = f"https://{address}{path}?{urlencode(query)}"
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            upstream = await session.get(url, ssl=kubelet_ssl(server))
        except (aiohttp.ClientError, OSError) as e:
            raise ApiError(500, f'Get "{url}": {e}', "InternalError") from None
        async with upstream:
            if upstream.status != 200:
                raise _agent_error(upstream.status, await upstream.text(), url)
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            if request.query.get("follow", "").lower() in ("1", "true"):
                resp.enable_chunked_encoding()
            await resp.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await resp.write(chunk)
            except (aiohttp.ClientError, ConnectionError) as e:
                log.info("log stream ended early url=%s err=%s", url, e)
            await resp.write_eof()
            return resp


async def _proxy_websocket(server: Server, request: web.Request, address: str, path: str,
                           query: list[tuple[str, str]]) -> web.StreamResponse:
    url = f"https://{address}{path}?{urlencode(query)}"
    upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")
               if p.strip()]
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        if offered and not set(offered) & set(CHANNEL_PROTOCOLS):
            raise bad_request("unable to upgrade connection: none of the offered WebSocket "
                              f"subprotocols ({', '.join(offered)}) is supported; use one of "
                              f"{', '.join(CHANNEL_PROTOCOLS)}")
        if not upgrade:
            # SPDY (kubectl's fallback) is not spoken here; say why, after the
            # agent's own checks (a container that is not running...).
            await _agent_check(session, server, url)
            raise bad_request("unable to upgrade connection: timonel speaks the WebSocket "
                              "protocols v5.channel.k8s.io and v4.channel.k8s.io only, not SPDY "
                              "(use kubectl 1.30 or newer)")
        try:
            agent_ws = await session.ws_connect(url, protocols=offered, ssl=kubelet_ssl(server),
                                                autoping=True, max_msg_size=0)
        except aiohttp.WSServerHandshakeError as e:
            await _agent_check(session, server, url)
            raise ApiError(500, f"unable to upgrade connection to the node agent: {e.message}",
                           "InternalError") from None
        except (aiohttp.ClientError, OSError) as e:
            raise ApiError(500, f'unable to upgrade connection: Get "{url}": {e}',
                           "InternalError") from None
        async with agent_ws:
            chosen = agent_ws.protocol
            client_ws = web.WebSocketResponse(protocols=[chosen] if chosen else [], max_msg_size=0)
            await client_ws.prepare(request)
            await _pipe(client_ws, agent_ws)
            return client_ws


async def _agent_check(session: aiohttp.ClientSession, server: Server, url: str) -> None:
    """The agent's answer to a plain GET of an upgrade URL: its reason for
    refusing (raised as the matching Status), if any."""
    try:
        async with session.get(url, ssl=kubelet_ssl(server)) as resp:
            # 426: the agent would have taken the upgrade.
            if resp.status not in (200, 426):
                raise _agent_error(resp.status, await resp.text(), url)
    except (aiohttp.ClientError, OSError) as e:
        raise ApiError(500, f'unable to upgrade connection: Get "{url}": {e}', "InternalError") from None


async def _pipe(client: web.WebSocketResponse, agent: aiohttp.ClientWebSocketResponse) -> None:
    async def client_to_agent() -> None:
        async for msg in client:
            if msg.type == WSMsgType.BINARY:
                await agent.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await agent.send_str(msg.data)

    async def agent_to_client() -> None:
        async for msg in agent:
            if msg.type == WSMsgType.BINARY:
                await client.send_bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                await client.send_str(msg.data)

    tasks = [asyncio.create_task(client_to_agent()), asyncio.create_task(agent_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(ConnectionError, RuntimeError):
            await agent.close()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await client.close()
