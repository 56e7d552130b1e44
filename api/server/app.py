"""The API server: the aiohttp application and its lifecycle.

Request path: middleware (errors → Status, metrics, authentication) →
routing (path → RequestInfo) → the verb's handler → admission → storage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from timonel.api import resources
from timonel.api.admission import Chain
from timonel.api.admission.namespace_lifecycle import SYSTEM_NAMESPACES, namespace_lifecycle
from timonel.api.auth.authn import Authenticator, unauthorized_status
from timonel.api.auth.join import CA_PATH, CREDENTIALS_PATH, JoinToken
from timonel.api.errors import ApiError
from timonel.api.server import codec, discovery, join, openapi, openapi_v2, rest, subresources
from timonel.api.server import watch as watch_mod
from timonel.api.server.context import Server
from timonel.api.server.metrics import Metrics, render
from timonel.api.server.objects import Objects, key_of, prefix_of
from timonel.api.server.routing import RequestInfo, resolve
from timonel.api.storage.etcd import Store
from timonel.api.storage.watch_cache import WatchCaches

log = logging.getLogger(__name__)

Handler = Callable[[Server, web.Request, RequestInfo], Awaitable[web.StreamResponse]]

# Paths anyone may read (upstream's system:public-info-viewer role), and the
# node join endpoints, which check the join token themselves.
PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/version", CA_PATH,
                CREDENTIALS_PATH)


@dataclass
class ServerConfig:
    etcd_endpoints: list[str]
    token_file: str | None = None
    allow_anonymous: bool = False
    # Where the cluster CA lives; with it (and a join token) agents can join.
    tls_dir: str | None = None
    join_token: JoinToken | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _handler_for(info: RequestInfo) -> Handler:
    sub, verb = info.subresource, info.verb
    if sub in subresources.STREAMING:
        return subresources.streaming
    if sub == "scale":
        return subresources.scale
    if sub == "binding":
        return subresources.binding
    if sub == "eviction":
        return subresources.eviction
    if sub == "finalize":
        return subresources.finalize
    if sub == "status" and verb not in ("get", "update", "patch"):
        raise ApiError(405, f"{verb} is not supported on the status subresource", "MethodNotAllowed")
    handlers: dict[str, Handler] = {
        "get": rest.get, "list": rest.list_, "watch": watch_mod.watch, "create": rest.create,
        "update": rest.update, "patch": rest.patch, "delete": rest.delete,
        "deletecollection": rest.delete_collection,
    }
    return handlers[verb]


async def resource_handler(request: web.Request) -> web.StreamResponse:
    server: Server = request.app["server"]
    info = resolve(request.method, request.path, codec.query_bool(request, "watch"))
    request["info"] = info
    return await _handler_for(info)(server, request, info)


async def api_root(request: web.Request) -> web.Response:
    """/api and /apis: aggregated discovery when asked for, else legacy lists."""
    core = request.path.rstrip("/") == "/api"
    ctype = discovery.wants_aggregated(request.headers.get("Accept", ""))
    if ctype is not None:
        resp = codec.json_response(discovery.aggregated(core, ctype))
        # kubectl checks this exact content type, parameters included.
        resp.headers["Content-Type"] = ctype
        return resp
    return codec.json_response(discovery.api_versions() if core else discovery.api_group_list())


async def api_group_or_version(request: web.Request) -> web.Response:
    parts = [p for p in request.path.split("/") if p]
    doc: dict[str, Any] | None = None
    if parts[0] == "api" and len(parts) == 2:
        doc = discovery.resource_list("", parts[1])
    elif parts[0] == "apis" and len(parts) == 2:
        doc = discovery.api_group(parts[1])
    elif parts[0] == "apis" and len(parts) == 3:
        doc = discovery.resource_list(parts[1], parts[2])
    if doc is None:
        raise ApiError(404, f"the server could not find the requested resource ({request.path})")
    return codec.json_response(doc)


async def version(request: web.Request) -> web.Response:
    return codec.json_response(discovery.version_info())


async def health(request: web.Request) -> web.Response:
    server: Server = request.app["server"]
    if request.path.startswith(("/readyz", "/healthz")):
        try:
            await asyncio.wait_for(server.store.current_revision(), 2)
        except Exception as e:
            return web.Response(status=500, text=f"[-]etcd failed: {e}\nhealthz check failed\n")
    return web.Response(text="ok")


async def metrics_handler(request: web.Request) -> web.Response:
    server: Server = request.app["server"]
    body, ctype = render(server.metrics, request.headers.get("Accept", ""))
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = ctype
    return resp


async def openapi_index(request: web.Request) -> web.Response:
    return codec.json_response(openapi.openapi_v3_index())


async def openapi_document(request: web.Request) -> web.Response:
    found = openapi.openapi_v3_bytes(request.match_info["gv"])
    if found is None:
        raise ApiError(404, f"no OpenAPI document for {request.match_info['gv']}")
    body, digest = found
    resp = web.Response(body=body, content_type="application/json")
    resp.headers["ETag"] = f'"{digest}"'
    if request.query.get("hash") == digest:
        # The index links documents by hash: such a URL never changes content.
        resp.headers["Cache-Control"] = "public, immutable"
    return resp


def _verb_label(request: web.Request) -> tuple[str, str]:
    info: RequestInfo | None = request.get("info")
    if info is None:
        return request.method, ""
    resource = info.rtype.plural + (f"/{info.subresource}" if info.subresource else "")
    return info.verb.upper(), resource


@web.middleware
async def errors_and_metrics(request: web.Request, handler: Any) -> web.StreamResponse:
    t0 = time.perf_counter()
    code = 500
    try:
        resp: web.StreamResponse = await handler(request)
        code = resp.status
        return resp
    except ApiError as e:
        code = e.code
        resp = codec.json_response(e.status(), e.code)
        if e.retry_after:
            resp.headers["Retry-After"] = str(e.retry_after)
        return resp
    except web.HTTPException as e:
        code = e.status
        if e.status >= 400:
            return codec.json_response(ApiError(e.status, e.reason or "error").status(), e.status)
        raise
    except (asyncio.CancelledError, ConnectionResetError):
        code = 499
        raise
    except Exception:
        log.exception("internal error method=%s path=%s", request.method, request.path)
        code = 500
        return codec.json_response(ApiError(500, "Internal error occurred: see the server log",
                                            "InternalError").status(), 500)
    finally:
        server: Server = request.app["server"]
        if server.metrics is not None:
            verb, resource = _verb_label(request)
            if verb != "WATCH":
                server.metrics.observe_request(verb, resource, code, time.perf_counter() - t0)


@web.middleware
async def authenticate(request: web.Request, handler: Any) -> web.StreamResponse:
    server: Server = request.app["server"]
    if request.path in PUBLIC_PATHS or request.path.startswith(("/healthz/", "/livez/", "/readyz/")):
        return await handler(request)
    authn = server.authenticator
    if authn is not None:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        user = authn.authenticate(request.headers, peer)
        if user is None:
            return codec.json_response(unauthorized_status(), 401)
        request["user"] = user
    return await handler(request)


async def _get_namespace(server: Server, name: str) -> dict[str, Any] | None:
    """From the watch cache (no etcd round trip per create), falling back to a
    live read when the cache may not have seen a just-created namespace yet."""
    rtype = resources.lookup("", "v1", "namespaces")
    assert rtype is not None
    cache = await server.caches.get(prefix_of(rtype))
    cached = cache.objects.get(key_of(rtype, "", name))
    if cached is not None:
        return cached
    try:
        return await server.objects.get(rtype, "", name)
    except ApiError as e:
        if e.code == 404:
            return None
        raise


async def ensure_system_namespaces(server: Server) -> None:
    rtype = resources.lookup("", "v1", "namespaces")
    assert rtype is not None
    for name in SYSTEM_NAMESPACES:
        try:
            await server.objects.create(rtype, "", {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": name}})
        except ApiError as e:
            if e.code != 409:
                raise


def make_app(config: ServerConfig) -> web.Application:
    """The application; storage connects on startup and closes on cleanup."""
    metrics = Metrics()
    store = Store(config.etcd_endpoints,
                  observe=metrics.observe_etcd)
    caches = WatchCaches(store)
    server = Server(
        store=store, caches=caches, objects=Objects(store, caches), admission=Chain(),
        metrics=metrics,
        authenticator=Authenticator(config.token_file, allow_anonymous=config.allow_anonymous),
    )
    server.admission.validating.append(namespace_lifecycle(lambda n: _get_namespace(server, n)))
    if config.tls_dir:  # the kubelet client certificate for logs/exec is issued from its CA
        server.extra["tls_dir"] = config.tls_dir

    app = web.Application(middlewares=[errors_and_metrics, authenticate],
                          client_max_size=codec.MAX_BODY + 1)
    app["server"] = server
    app.router.add_get("/version", version)
    app.router.add_get("/version/", version)
    for p in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(p, health)
        app.router.add_get(p + "/{check:.*}", health)
    app.router.add_get("/metrics", metrics_handler)
    if config.tls_dir:
        join.add_routes(app, config.tls_dir, config.join_token)
    app.router.add_get("/openapi/v2", openapi_v2.handler)
    app.router.add_get("/openapi/v3", openapi_index)
    app.router.add_get("/openapi/v3/{gv:.*}", openapi_document)
    for root in ("/api", "/apis"):
        app.router.add_get(root, api_root)
        app.router.add_get(root + "/", api_root)
    app.router.add_get("/api/{v}", api_group_or_version)
    app.router.add_get("/apis/{g}", api_group_or_version)
    app.router.add_get("/apis/{g}/{v}", api_group_or_version)
    app.router.add_route("*", "/api/{v}/{tail:.+}", resource_handler)
    app.router.add_route("*", "/apis/{g}/{v}/{tail:.+}", resource_handler)

    async def on_startup(app: web.Application) -> None:
        await store.connect()
        await ensure_system_namespaces(server)
        # Every resource's watch cache starts now, as upstream's do: a client
        # that lists and then watches from the list's revision must find that
        # revision inside the cache's window, not before the cache existed.
        await asyncio.gather(*(caches.get(prefix_of(r)) for r in resources.RESOURCES))

    async def on_cleanup(app: web.Application) -> None:
        await caches.stop()
        await store.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app
