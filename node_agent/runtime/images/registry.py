"""Pull images from OCI distribution (Docker v2) registries.

HTTPS by default; plain HTTP for registries on loopback or listed as
insecure. Handles the bearer token flow, redirects for blobs (dropping the
Authorization header when the redirect leaves the registry's origin),
manifest lists / OCI indexes (picking the host platform), and verifies
every manifest and blob against its digest before it is stored.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from yarl import URL

from timonel.api.streams import read_at_most

from .errors import DigestMismatchError, ImageNotFoundError, InvalidImageError, RegistryError
from .manifests import (
    ACCEPT_MANIFESTS,
    INDEX_TYPES,
    MANIFEST_TYPES,
    Descriptor,
    Platform,
    detect_media_type,
    load_json,
    parse_index,
    parse_manifest,
    select_manifest,
)
from .refs import DEFAULT_DOMAIN, Reference, lookup_key, normalize, sha256_digest
from .registry_auth import Credentials, TokenCache, fetch_token, parse_challenges
from .store import ImageRecord, ImageStore, Lease

if TYPE_CHECKING:
    # Imported where a pull needs it instead: ~10 MB resident in the runtime daemon, which
    # may never pull (`timonel up` imports image archives from files).
    import aiohttp

log = logging.getLogger(__name__)

DOCKER_HUB_API = "registry-1.docker.io"
_MAX_REDIRECTS = 5
_MAX_MANIFEST = 4 << 20
_MAX_INDEX_DEPTH = 4
_PARALLEL_BLOBS = 3

CredentialSource = Mapping[str, Credentials] | Callable[[str], Credentials | None] | None


def is_loopback(host: str) -> bool:
    """`localhost[:port]`, `127.x.y.z[:port]`, `[::1][:port]`."""
    h = host
    if h.startswith("["):
        h = h[1:h.find("]")] if "]" in h else h
    elif h.count(":") == 1:
        h = h.split(":")[0]
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host or "", url.port)


@dataclass
class _Resp:
    status: int
    headers: Mapping[str, str]
    url: URL


class RegistryClient:
    """Talks the distribution API to any number of registries; reuse it for many pulls."""

    def __init__(
        self,
        *,
        credentials: CredentialSource = None,
        insecure_registries: Collection[str] = (),
        session: aiohttp.ClientSession | None = None,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 30,
        read_timeout: float = 300,
    ) -> None:
        """`credentials` maps a registry host (as in references, e.g. `docker.io`,
        `localhost:5000`) to Credentials, or is a function of the host.
        `insecure_registries` lists hosts spoken to over plain HTTP."""
        self._credentials = credentials
        self._insecure = set(insecure_registries)
        self._own_session = session is None
        self._session = session
        self._ssl = ssl_context
        self._timeouts = (connect_timeout, read_timeout)
        self._tokens = TokenCache()
        self._auth: dict[tuple[str, str], str] = {}  # (host, scope) → Authorization value

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            import aiohttp

            connect, read = self._timeouts
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read))
        return self._session

    def creds_for(self, host: str) -> Credentials | None:
        if self._credentials is None:
            return None
        if callable(self._credentials):
            return self._credentials(host)
        return self._credentials.get(host)

    def base_url(self, host: str) -> URL:
        api_host = DOCKER_HUB_API if host == DEFAULT_DOMAIN else host
        scheme = "http" if is_loopback(host) or host in self._insecure else "https"
        return URL(f"{scheme}://{api_host}")

    def url(self, ref: Reference, kind: str, reference: str) -> URL:
        """`/v2/<name>/<kind>/<reference>` on the registry of `ref`."""
        return self.base_url(ref.domain).with_path(f"/v2/{ref.path}/{kind}/{reference}")

    async def request(
        self,
        method: str,
        ref: Reference,
        url: URL,
        *,
        actions: str = "pull",
        headers: Mapping[str, str] | None = None,
        data: Any = None,
        follow_redirects: bool = True,
    ) -> aiohttp.ClientResponse:
        """Send a request with auth; the caller must release the response.

        On 401 it answers the challenge once and retries. Redirects are
        followed by hand so credentials never travel to another origin.
        `data` must be re-sendable (bytes) when a retry may be needed.
        """
        scope = f"repository:{ref.path}:{actions}"
        key = (ref.domain, scope)
        for attempt in range(2):
            hdrs = dict(headers or {})
            if key in self._auth:
                hdrs["Authorization"] = self._auth[key]
            resp = await self._send(method, url, hdrs, data, follow_redirects)
            if resp.status != 401 or attempt == 1:
                return resp
            challenge_hdr = resp.headers.get("WWW-Authenticate", "")
            resp.release()
            if key in self._auth:
                # The credential we sent was refused (expired or revoked): fetch anew.
                del self._auth[key]
                self._tokens.clear()
            self._auth[key] = await self._answer(ref.domain, challenge_hdr, scope)
        raise AssertionError("unreachable")

    async def _answer(self, host: str, header: str, scope: str) -> str:
        creds = self.creds_for(host)
        for ch in parse_challenges(header):
            if ch.scheme == "bearer":
                # Ours covers the repository and actions of this request; keep
                # any other scope the registry asked for as well.
                extra = [x for x in ch.params.get("scope", "").split() if not x.startswith(f"repository:{scope.split(':')[1]}:")]
                token = await fetch_token(self.session, ch, " ".join([scope, *extra]), creds, self._tokens)
                return f"Bearer {token}"
            if ch.scheme == "basic":
                basic = creds.basic() if creds else None
                if basic:
                    return basic
        raise RegistryError(
            f"registry {host} requires authentication ({header or 'no challenge given'}); "
            "give credentials for it", 401)

    async def _send(self, method: str, url: URL, headers: dict[str, str], data: Any,
                    follow: bool) -> aiohttp.ClientResponse:
        import aiohttp

        origin = _origin(url)
        for _ in range(_MAX_REDIRECTS + 1):
            try:
                resp = await self.session.request(method, url, headers=headers, data=data,
                                                  allow_redirects=False, ssl=self._ssl or True)
            except aiohttp.ClientError as e:
                raise RegistryError(f"cannot reach registry at {url.origin()}: {e}") from None
            if not follow or resp.status not in (301, 302, 303, 307, 308) or "Location" not in resp.headers:
                return resp
            nxt = url.join(URL(resp.headers["Location"]))
            resp.release()
            if _origin(nxt) != origin:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if resp.status == 303:
                method, data = "GET", None
            log.debug("redirect from=%s to=%s", url, nxt.with_query(None))
            url = nxt
        raise RegistryError(f"too many redirects fetching {url.with_query(None)}")

    async def error(self, resp: aiohttp.ClientResponse, what: str) -> RegistryError:
        """Turn an unexpected response into an error carrying the registry's own message."""
        import aiohttp

        try:
            body = await resp.json(content_type=None)
            msgs = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in body.get("errors", []))
        except (ValueError, AttributeError, aiohttp.ClientError):
            msgs = ""
        resp.release()
        detail = f" ({msgs})" if msgs else ""
        return RegistryError(f"{what}: registry answered HTTP {resp.status}{detail}", resp.status)

    async def get_manifest(self, ref: Reference, reference: str) -> tuple[bytes, str, str]:
        """Fetch a manifest or index by tag or digest: (bytes, media type, digest)."""
        url = self.url(ref, "manifests", reference)
        what = f"manifest {ref.repository}:{reference}" if ":" not in reference else f"manifest {ref.repository}@{reference}"
        resp = await self.request("GET", ref, url, headers={"Accept": ", ".join(ACCEPT_MANIFESTS)})
        try:
            if resp.status == 404:
                err = await self.error(resp, what)
                raise ImageNotFoundError(f"{what} not found in registry {ref.domain}: {err}")
            if resp.status != 200:
                raise await self.error(resp, f"fetching {what}")
            data = await read_at_most(resp.content, _MAX_MANIFEST + 1)
            if len(data) > _MAX_MANIFEST:
                raise InvalidImageError(f"{what}: manifest larger than {_MAX_MANIFEST} bytes")
            content_type = resp.headers.get("Content-Type", "")
            header_digest = resp.headers.get("Docker-Content-Digest")
        finally:
            resp.release()
        digest = sha256_digest(data)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatchError(f"{what}: content hashes to {digest}; the registry sent something else")
        if header_digest and header_digest.startswith("sha256:") and header_digest != digest:
            raise DigestMismatchError(
                f"{what}: content hashes to {digest} but the registry announced {header_digest}")
        mt = detect_media_type(load_json(data, what), content_type, what)
        return data, mt, digest

    async def fetch_blob(self, store: ImageStore, ref: Reference, desc: Descriptor) -> None:
        """Download a blob into the store, verified against its digest and size."""
        import aiohttp

        where = f"blob {desc.digest} of {ref.repository}"
        resp = await self.request("GET", ref, self.url(ref, "blobs", desc.digest))
        try:
            if resp.status != 200:
                raise await self.error(resp, f"fetching {where}")
            with store.blobs.writer(desc.digest, desc.size, where=where) as writer:
                async for chunk in resp.content.iter_chunked(1 << 20):
                    writer.write(chunk)
                await asyncio.to_thread(writer.commit)
        except aiohttp.ClientError as e:
            raise RegistryError(f"{where}: download failed: {e}") from None
        finally:
            resp.release()


async def _resolve_manifest(client: RegistryClient, store: ImageStore, lease: Lease, ref: Reference,
                            platform: Platform | None) -> tuple[str, str | None]:
    """Fetch (and store) the top manifest and, through indexes, the platform's one."""
    assert ref.digest or ref.tag
    data, mt, digest = await client.get_manifest(ref, ref.digest or ref.tag or "latest")
    store.blobs.put_bytes(data, digest, where=f"manifest {digest}")
    lease.add(digest)
    top = digest
    for _ in range(_MAX_INDEX_DEPTH):
        if mt in MANIFEST_TYPES:
            return digest, (top if top != digest else None)
        assert mt in INDEX_TYPES
        where = f"{ref.repository}@{digest}"
        choice = select_manifest(parse_index(load_json(data, where), where), platform, where)
        data, mt, digest = await client.get_manifest(ref, choice.digest)
        store.blobs.put_bytes(data, digest, where=f"manifest {digest}")
        lease.add(digest)
    raise InvalidImageError(f"{ref}: indexes nested deeper than {_MAX_INDEX_DEPTH} levels")


async def pull_image(
    store: ImageStore,
    image: str,
    *,
    client: RegistryClient | None = None,
    credentials: Credentials | None = None,
    insecure_registries: Collection[str] = (),
    platform: Platform | None = None,
) -> ImageRecord:
    """Pull `image` (any spelling; a digest wins over a tag) into the store.

    Pass a shared `client` to reuse connections and tokens; otherwise one is
    made for this pull with `credentials` for the image's registry.
    Returns the image record (tagged when pulled by tag).
    """
    ref = lookup_key(normalize(image))
    own = client is None
    if client is None:
        client = RegistryClient(
            credentials={ref.domain: credentials} if credentials else None,
            insecure_registries=insecure_registries,
        )
    try:
        with store.lease() as lease:
            manifest_digest, index_digest = await _resolve_manifest(client, store, lease, ref, platform)
            where = f"{ref.repository}@{manifest_digest}"
            manifest = parse_manifest(load_json(store.blobs.read(manifest_digest), where), where)
            sem = asyncio.Semaphore(_PARALLEL_BLOBS)

            async def get(desc: Descriptor) -> None:
                lease.add(desc.digest)
                if store.blobs.has(desc.digest):
                    return
                async with sem:
                    await client.fetch_blob(store, ref, desc)

            # Every download ends (or fails) before the lease does: with a plain gather, the
            # first failure returned while the others ran on and published their blobs after
            # the lease, where nothing holds or expects them.
            results = await asyncio.gather(*(get(d) for d in (manifest.config, *manifest.layers)),
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            rec = await asyncio.to_thread(store.add_image, manifest_digest, [ref],
                                          index_digest=index_digest, where=str(ref))
        log.info("image=%s pulled ref=%s manifest=%s", rec.id, ref, manifest_digest)
        return rec
    finally:
        if own:
            await client.close()
