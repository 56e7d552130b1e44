"""The async REST client every timonel component uses to talk to the API server.

One `aiohttp.ClientSession` per `Client`, keep-alive connections pooled for
many concurrent requests. Objects are plain dicts. A non-2xx answer raises
`ApiError` built from the returned Status; a server that cannot be reached
raises `ApiConnectionError` (a `ConnectionError`) naming its URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncGenerator
from typing import Any, Literal, TypeAlias
from urllib.parse import quote

import aiohttp

from timonel.api import jsonutil, resources, tls
from timonel.api.client.backoff import Backoff
from timonel.api.client.wire import LineSplitter, Obj, error_from_body, parse_event
from timonel.api.errors import ApiError
from timonel.api.kubeconfig import ClusterConfig, load_kubeconfig
from timonel.api.resources import ResourceType

log = logging.getLogger(__name__)

# A resource given as its registry row or as (apiVersion, kind), e.g. ("apps/v1", "Deployment").
RType: TypeAlias = ResourceType | tuple[str, str]
PatchType: TypeAlias = Literal["merge", "json", "strategic", "apply"]

PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    # Server-side apply takes YAML; JSON is YAML, so the body stays JSON.
    "apply": "application/apply-patch+yaml",
}

USER_AGENT = "timonel-client/0.1"


class ApiConnectionError(ConnectionError):
    """The API server could not be reached (refused, reset, timed out, TLS)."""

    def __init__(self, server: str, cause: BaseException | str) -> None:
        self.server = server
        self.cause = cause
        text = cause if isinstance(cause, str) else (str(cause) or type(cause).__name__)
        super().__init__(f"cannot reach the API server at {server}: {text}; check that it is "
                         "running and that the kubeconfig points at it")


def resolve(rtype: RType) -> ResourceType:
    if isinstance(rtype, ResourceType):
        return rtype
    api_version, kind = rtype
    found = resources.by_api_version_kind(api_version, kind)
    if found is None:
        raise ValueError(f"unknown resource {kind} in {api_version}: timonel does not serve it "
                         "(the served kinds are listed in api/resources.py)")
    return found


def rtype_of(obj: Obj) -> ResourceType:
    """The resource of an object, from its apiVersion and kind."""
    return resolve((str(obj.get("apiVersion") or ""), str(obj.get("kind") or "")))


def resource_path(rtype: ResourceType, namespace: str = "", name: str = "",
                  subresource: str = "") -> str:
    if rtype.namespaced and name and not namespace:
        raise ValueError(f'{rtype.plural} "{name}": a namespace is required for a namespaced '
                         "resource")
    path = rtype.path_prefix()
    if rtype.namespaced and namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    path += f"/{rtype.plural}"
    if name:
        path += f"/{quote(name, safe='')}"
    if subresource:
        path += f"/{subresource}"
    return path


def query(**params: Any) -> dict[str, str]:
    """Query parameters with Kubernetes spellings; unset ones are left out."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if value is None or value == "" or value is False:
            continue
        if value is True:
            out[key] = "true"
        else:
            out[key] = str(value)
    return out


def _split(obj: Obj, namespace: str) -> tuple[str, str]:
    md = obj.get("metadata") or {}
    return namespace or str(md.get("namespace") or ""), str(md.get("name") or "")


class Client:
    def __init__(self, config: ClusterConfig, *, pool_size: int = 100, timeout: float = 30.0,
                 connect_timeout: float = 10.0, retries: int = 3,
                 retry_backoff: Backoff | None = None, user_agent: str = USER_AGENT) -> None:
        self.config = config
        self.server = config.server.rstrip("/")
        # The kubeconfig context's namespace, for callers that need a default.
        self.namespace = config.namespace
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.retry_backoff = retry_backoff or Backoff(initial=0.2, factor=2.0, cap=2.0)
        self._pool_size = pool_size
        self._headers = {"Accept": "application/json", "User-Agent": user_agent}
        if config.token:
            self._headers["Authorization"] = f"Bearer {config.token}"
        self._ssl: ssl.SSLContext | bool = self._ssl_context(config)
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None,
                        **kwargs: Any) -> Client:
        return cls(load_kubeconfig(path, context), **kwargs)

    @staticmethod
    def _ssl_context(config: ClusterConfig) -> ssl.SSLContext | bool:
        if not config.server.startswith("https://"):
            return False
        if config.ca_pem and not config.insecure:
            return tls.client_ssl_context(config.ca_pem, config.client_cert_pem,
                                          config.client_key_pem)
        ctx = ssl.create_default_context()
        if config.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if config.client_cert_pem and config.client_key_pem:
            tls._load_chain(ctx, config.client_cert_pem, config.client_key_pem)
        return ctx

    def session(self) -> aiohttp.ClientSession:
        # Created on first use: a ClientSession belongs to the running loop
        # (so a Client is used from one event loop).
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=self._connector(self._pool_size), headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout, sock_connect=self.connect_timeout),
            )
        return self._session

    def _connector(self, limit: int) -> aiohttp.BaseConnector:
        if self.config.unix_socket:
            return aiohttp.UnixConnector(path=self.config.unix_socket, limit=limit, keepalive_timeout=30)
        return aiohttp.TCPConnector(limit=limit, ssl=self._ssl, keepalive_timeout=30)

    def watch_session(self) -> aiohttp.ClientSession:
        # Every open watch holds its connection for minutes: give watches a
        # pool of their own without a limit, so many informers can never
        # starve ordinary requests of connections (nor the other way round).
        if self._watch_session is None or self._watch_session.closed:
            self._watch_session = aiohttp.ClientSession(connector=self._connector(0), headers=self._headers)
        return self._watch_session

    async def close(self) -> None:
        for s in (self._session, self._watch_session):
            if s is not None:
                await s.close()
        self._session = self._watch_session = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the raw request -----------------------------------------------------

    async def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                      body: Any = None, content_type: str = "application/json") -> Any:
        """One API call; returns the decoded JSON (or text) of a 2xx answer.

        Retried with backoff: connections that could not be opened (any verb:
        nothing was sent), other connection failures of GETs (idempotent), and
        answers carrying Retry-After (429, or 5xx during overload/start-up).
        """
        url = self.server + path
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": content_type} if data is not None else None
        backoff = self.retry_backoff.fresh()
        attempt = 0
        while True:
            attempt += 1
            last = attempt > self.retries
            try:
                async with self.session().request(method, url, params=params, data=data,
                                                  headers=headers) as resp:
                    raw = await resp.read()
                    if 200 <= resp.status < 300:
                        return _decode(raw, resp.content_type)
                    err = error_from_body(raw, resp.status, resp.headers.get("Retry-After"))
                    if last or not _retry_after(resp.status, resp.headers):
                        raise err
                    delay = min(float(err.retry_after or 1), 10.0)
                    log.debug("server asked to retry method=%s path=%s code=%d after=%.1fs",
                              method, path, resp.status, delay)
                    await asyncio.sleep(delay)
                    continue
            except aiohttp.ClientConnectorCertificateError as e:
                raise ApiConnectionError(self.server, f"TLS verification failed: {e}") from e
            except aiohttp.ClientConnectorError as e:
                if last:
                    raise ApiConnectionError(self.server, e) from e
            except (aiohttp.ClientError, TimeoutError) as e:
                if last or method != "GET":
                    raise ApiConnectionError(self.server, e) from e
            delay = await backoff.sleep()
            log.debug("retrying method=%s path=%s attempt=%d delay=%.2fs", method, path,
                      attempt, delay)

    # -- verbs -----------------------------------------------------------------

    async def get(self, rtype: RType, namespace: str, name: str) -> Obj:
        rt = resolve(rtype)
        result: Obj = await self.request("GET", resource_path(rt, namespace, name))
        return result

    async def list(self, rtype: RType, namespace: str = "", *, label_selector: str = "",
                   field_selector: str = "", limit: int = 0, continue_: str = "",
                   resource_version: str = "", resource_version_match: str = "") -> Obj:
        """One page of a list: the `<Kind>List` dict with metadata.resourceVersion
        and, when `limit` cut it short, metadata.continue."""
        rt = resolve(rtype)
        params = query(labelSelector=label_selector, fieldSelector=field_selector,
                       limit=limit or None, resourceVersion=resource_version,
                       resourceVersionMatch=resource_version_match, **{"continue": continue_})
        result: Obj = await self.request("GET", resource_path(rt, namespace), params=params)
        if result.get("items") is None:
            result["items"] = []
        return result

    async def list_all(self, rtype: RType, namespace: str = "", *, label_selector: str = "",
                       field_selector: str = "", page_size: int = 500) -> Obj:
        """Every matching object, following `continue` page by page. All pages
        are read at the first page's revision, so the result is one snapshot
        with that resourceVersion (the one to start a watch from)."""
        first = await self.list(rtype, namespace, label_selector=label_selector,
                                field_selector=field_selector, limit=page_size)
        items = list(first["items"])
        token = (first.get("metadata") or {}).get("continue") or ""
        while token:
            try:
                page = await self.list(rtype, namespace, label_selector=label_selector,
                                       field_selector=field_selector, limit=page_size,
                                       continue_=token)
            except ApiError as e:
                if e.code != 410:
                    raise
                # The snapshot revision was compacted mid-way: like client-go's
                # pager, fall back to one unpaginated list.
                log.info("continue token expired, listing in one request rtype=%s",
                         resolve(rtype).plural)
                return await self.list(rtype, namespace, label_selector=label_selector,
                                       field_selector=field_selector)
            items.extend(page["items"])
            token = (page.get("metadata") or {}).get("continue") or ""
        md = dict(first.get("metadata") or {})
        md.pop("continue", None)
        md.pop("remainingItemCount", None)
        return {**first, "metadata": md, "items": items}

    async def create(self, rtype: RType, obj: Obj, *, namespace: str = "",
                     field_manager: str = "", dry_run: bool = False) -> Obj:
        rt = resolve(rtype)
        ns, _ = _split(obj, namespace)
        if rt.namespaced and not ns:
            raise ValueError(f"cannot create {rt.kind}: no namespace given and none in "
                             "metadata.namespace")
        params = query(fieldManager=field_manager, dryRun="All" if dry_run else None)
        result: Obj = await self.request("POST", resource_path(rt, ns if rt.namespaced else ""),
                                         params=params, body=obj)
        return result

    async def update(self, rtype: RType, obj: Obj, *, namespace: str = "",
                     field_manager: str = "", dry_run: bool = False,
                     subresource: str = "") -> Obj:
        """PUT the whole object. Its metadata.resourceVersion makes it a
        compare-and-swap: 409 Conflict when someone else wrote first."""
        rt = resolve(rtype)
        ns, name = _split(obj, namespace)
        if not name:
            raise ValueError(f"cannot update {rt.kind}: the object has no metadata.name")
        params = query(fieldManager=field_manager, dryRun="All" if dry_run else None)
        result: Obj = await self.request(
            "PUT", resource_path(rt, ns if rt.namespaced else "", name, subresource),
            params=params, body=obj)
        return result

    async def update_status(self, rtype: RType, obj: Obj, *, namespace: str = "",
                            field_manager: str = "", dry_run: bool = False) -> Obj:
        return await self.update(rtype, obj, namespace=namespace, field_manager=field_manager,
                                 dry_run=dry_run, subresource="status")

    async def patch(self, rtype: RType, namespace: str, name: str, patch: Any, *,
                    patch_type: PatchType = "merge", field_manager: str = "",
                    force: bool = False, subresource: str = "", dry_run: bool = False) -> Obj:
        """PATCH with a JSON merge patch (dict), JSON patch (list of operations),
        strategic merge patch, or a server-side apply configuration."""
        rt = resolve(rtype)
        if patch_type not in PATCH_CONTENT_TYPES:
            raise ValueError(f"unknown patch type {patch_type!r}: use one of "
                             f"{', '.join(PATCH_CONTENT_TYPES)}")
        if patch_type == "apply" and not field_manager:
            raise ValueError("server-side apply needs a field_manager")
        params = query(fieldManager=field_manager, force=force if patch_type == "apply" else None,
                       dryRun="All" if dry_run else None)
        result: Obj = await self.request(
            "PATCH", resource_path(rt, namespace, name, subresource), params=params, body=patch,
            content_type=PATCH_CONTENT_TYPES[patch_type])
        return result

    async def delete(self, rtype: RType, namespace: str, name: str, *,
                     propagation_policy: str | None = None,
                     grace_period_seconds: int | None = None,
                     preconditions: dict[str, str] | None = None,
                     dry_run: bool = False) -> Obj:
        """Delete one object. Returns what the server answered: the deleted
        object, or the object marked for deletion when finalizers or a grace
        period keep it around (202)."""
        rt = resolve(rtype)
        result: Obj = await self.request(
            "DELETE", resource_path(rt, namespace, name),
            params=query(dryRun="All" if dry_run else None),
            body=_delete_options(propagation_policy, grace_period_seconds, preconditions))
        return result

    async def delete_collection(self, rtype: RType, namespace: str = "", *,
                                label_selector: str = "", field_selector: str = "",
                                propagation_policy: str | None = None,
                                grace_period_seconds: int | None = None,
                                dry_run: bool = False) -> Obj:
        rt = resolve(rtype)
        params = query(labelSelector=label_selector, fieldSelector=field_selector,
                       dryRun="All" if dry_run else None)
        result: Obj = await self.request(
            "DELETE", resource_path(rt, namespace), params=params,
            body=_delete_options(propagation_policy, grace_period_seconds, None))
        return result

    async def get_subresource(self, rtype: RType, namespace: str, name: str, subresource: str,
                              params: dict[str, Any] | None = None) -> Any:
        """GET a subresource: a dict for JSON answers (scale, status), text
        for text ones (log)."""
        rt = resolve(rtype)
        return await self.request("GET", resource_path(rt, namespace, name, subresource),
                                  params=query(**(params or {})))

    async def post_subresource(self, rtype: RType, namespace: str, name: str, subresource: str,
                               body: Obj, params: dict[str, Any] | None = None) -> Obj:
        """POST to a subresource: pods/binding, pods/eviction."""
        rt = resolve(rtype)
        result: Obj = await self.request("POST", resource_path(rt, namespace, name, subresource),
                                         params=query(**(params or {})), body=body)
        return result

    async def put_subresource(self, rtype: RType, namespace: str, name: str, subresource: str,
                              body: Obj, params: dict[str, Any] | None = None) -> Obj:
        """PUT to a subresource: deployments/scale, namespaces/finalize."""
        rt = resolve(rtype)
        result: Obj = await self.request("PUT", resource_path(rt, namespace, name, subresource),
                                         params=query(**(params or {})), body=body)
        return result

    async def watch(self, rtype: RType, namespace: str = "", *, resource_version: str = "",
                    label_selector: str = "", field_selector: str = "",
                    allow_bookmarks: bool = True, timeout_seconds: int | None = None,
                    send_initial_events: bool = False) -> AsyncGenerator[tuple[str, Obj], None]:
        """One watch request as `(type, object)` pairs: ADDED, MODIFIED,
        DELETED and BOOKMARK. Ends when the server closes the stream (its
        timeout); raises ApiError for an ERROR event (410 Expired: relist) and
        ApiConnectionError when the connection breaks. Use
        `watcher.watch_forever` for a watch that resumes by itself. Leaving
        the loop early: wrap in `contextlib.aclosing` so the connection is
        closed at once, not when the generator is garbage-collected."""
        rt = resolve(rtype)
        params = query(watch=True, resourceVersion=resource_version,
                       labelSelector=label_selector, fieldSelector=field_selector,
                       allowWatchBookmarks=allow_bookmarks, timeoutSeconds=timeout_seconds,
                       sendInitialEvents=send_initial_events,
                       resourceVersionMatch="NotOlderThan" if send_initial_events else None)
        # No read timeout: a quiet watch is normal. The server ends the stream
        # at timeoutSeconds; the total timeout is only a safety net past it.
        timeout = aiohttp.ClientTimeout(
            total=timeout_seconds + 30 if timeout_seconds else None,
            sock_connect=self.connect_timeout)
        url = self.server + resource_path(rt, namespace)
        try:
            async with self.watch_session().get(url, params=params, timeout=timeout) as resp:
                if resp.status != 200:
                    raise error_from_body(await resp.read(), resp.status,
                                          resp.headers.get("Retry-After"))
                splitter = LineSplitter()
                async for chunk in resp.content.iter_any():
                    for line in splitter.feed(chunk):
                        yield parse_event(line)
                tail = splitter.tail()
                if tail:
                    yield parse_event(tail)
        except aiohttp.ClientConnectorCertificateError as e:
            raise ApiConnectionError(self.server, f"TLS verification failed: {e}") from e
        except (aiohttp.ClientError, TimeoutError) as e:
            raise ApiConnectionError(self.server, e) from e


def _delete_options(propagation_policy: str | None, grace_period_seconds: int | None,
                    preconditions: dict[str, str] | None) -> Obj | None:
    options: Obj = {}
    if propagation_policy:
        options["propagationPolicy"] = propagation_policy
    if grace_period_seconds is not None:
        options["gracePeriodSeconds"] = grace_period_seconds
    if preconditions:
        options["preconditions"] = preconditions
    if not options:
        return None
    return {"kind": "DeleteOptions", "apiVersion": "v1", **options}


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        return {}
    if content_type.endswith("json") or raw[:1] in (b"{", b"["):
        try:
            return jsonutil.loads(raw)
        except ValueError:
            if content_type.endswith("json"):
                raise ApiError(500, f"the server sent invalid JSON: {raw[:200]!r}",
                               "InternalError") from None
    return raw.decode(errors="replace")


def _retry_after(status: int, headers: Any) -> bool:
    return status == 429 or (status >= 500 and "Retry-After" in headers)
