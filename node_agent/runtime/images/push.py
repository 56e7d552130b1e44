"""Push images to an OCI distribution registry (blob upload + manifest PUT).

Used by tests to fill a local registry and by the multi-node test cluster
to share images between nodes. Monolithic uploads: POST to open an upload,
PUT with `?digest=` to finish it; blobs the registry already has are skipped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from yarl import URL

from .errors import ImageError, RegistryError
from .refs import Reference, normalize, sha256_digest
from .registry import RegistryClient
from .store import ImageStore

log = logging.getLogger(__name__)


async def blob_exists(client: RegistryClient, ref: Reference, digest: str) -> bool:
    resp = await client.request("HEAD", ref, client.url(ref, "blobs", digest), actions="pull,push")
    resp.release()
    if resp.status in (200, 404):
        return resp.status == 200
    raise RegistryError(f"checking blob {digest} in {ref.repository}: HTTP {resp.status}", resp.status)


async def push_blob(client: RegistryClient, ref: Reference, digest: str,
                    source: bytes | str | os.PathLike[str]) -> bool:
    """Upload one blob (bytes or a file) unless the registry has it; True when uploaded."""
    if await blob_exists(client, ref, digest):
        return False
    start = client.base_url(ref.domain).with_path(f"/v2/{ref.path}/blobs/uploads/")
    resp = await client.request("POST", ref, start, actions="pull,push", headers={"Content-Length": "0"})
    if resp.status != 202 or "Location" not in resp.headers:
        raise await client.error(resp, f"starting upload of {digest} to {ref.repository}")
    location = start.join(URL(resp.headers["Location"]))
    resp.release()
    target = location.with_query({**location.query, "digest": digest})
    size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
    headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
    if isinstance(source, bytes):
        resp = await client.request("PUT", ref, target, actions="pull,push", headers=headers, data=source)
    else:
        with open(source, "rb") as f:
            resp = await client.request("PUT", ref, target, actions="pull,push", headers=headers, data=f)
    if resp.status != 201:
        raise await client.error(resp, f"uploading blob {digest} to {ref.repository}")
    resp.release()
    log.debug("blob=%s pushed repo=%s size=%d", digest, ref.repository, size)
    return True


async def push_manifest(client: RegistryClient, ref: Reference, reference: str, data: bytes,
                        media_type: str) -> str:
    """PUT a manifest or index under a tag or its digest; returns its digest."""
    url = client.url(ref, "manifests", reference)
    resp = await client.request("PUT", ref, url, actions="pull,push",
                                headers={"Content-Type": media_type}, data=data)
    if resp.status != 201:
        raise await client.error(resp, f"pushing manifest {ref.repository}:{reference}")
    digest = resp.headers.get("Docker-Content-Digest") or sha256_digest(data)
    resp.release()
    return digest


async def push_image(store: ImageStore, image: str, target: str, *,
                     client: RegistryClient | None = None,
                     insecure_registries: tuple[str, ...] = ()) -> str:
    """Push a stored image to `target` (`registry/name[:tag]`); returns the manifest digest."""
    rec = store.resolve(image)
    dest = normalize(target)
    if dest.digest:
        raise ImageError(f"push target {target!r} must be a name with a tag, not a digest")
    own = client is None
    if client is None:
        client = RegistryClient(insecure_registries=insecure_registries)
    try:
        for digest in [rec.config_digest, *(x.digest for x in rec.layers)]:
            await push_blob(client, dest, digest, store.blobs.path(digest))
        data = store.blobs.read(rec.manifest_digest)
        digest = await push_manifest(client, dest, dest.tag or "latest", data, rec.manifest_media_type)
        log.info("image=%s pushed to=%s manifest=%s", rec.id, dest, digest)
        return digest
    finally:
        if own:
            await client.close()
