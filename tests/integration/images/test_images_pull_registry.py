"""Pull from a real local registry (Debian's docker-registry on 127.0.0.1).

The registry holds the offline busybox image, pushed by the fixture with our
own push helper. Also: manifest lists, tampered blobs, and blob redirects
(with a small aiohttp registry, since the filesystem driver never redirects).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from timonel.node_agent.runtime.images.builder import BuiltImage, make_config, write_oci_layout
from timonel.node_agent.runtime.images.errors import DigestMismatchError, ImageNotFoundError
from timonel.node_agent.runtime.images.manifests import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    Platform,
    canonical_json,
    host_platform,
)
from timonel.node_agent.runtime.images.push import push_blob, push_manifest
from timonel.node_agent.runtime.images.refs import normalize, sha256_digest
from timonel.node_agent.runtime.images.registry import RegistryClient, pull_image
from timonel.node_agent.runtime.images.registry_auth import Credentials
from timonel.node_agent.runtime.images.service import ImageService
from timonel.node_agent.runtime.images.store import ImageStore

from .conftest import LocalRegistry, needs_busybox, needs_registry

pytestmark = [needs_registry, needs_busybox]


async def test_pull_by_tag_and_by_digest(busybox_registry: LocalRegistry, busybox_built: BuiltImage,
                                         tmp_path: Path) -> None:
    host = busybox_registry.host
    digest = busybox_registry.pushed[f"{host}/library/busybox:latest"]
    assert digest == busybox_built.manifest_digest

    store = ImageStore(tmp_path / "by-tag", unpack="never")
    rec = await pull_image(store, f"{host}/library/busybox")
    assert rec.id == busybox_built.config_digest
    assert rec.repo_tags == [f"{host}/library/busybox:latest"]
    assert rec.repo_digests == [f"{host}/library/busybox@{digest}"]
    for spelling in (f"{host}/library/busybox", f"{host}/library/busybox:latest", f"{host}/library/busybox@{digest}"):
        assert store.resolve(spelling).id == rec.id
    assert store.image_config(f"{host}/library/busybox")["cmd"] == ["sh"]
    assert set(store.blobs.all()) == set(busybox_built.blobs())

    store2 = ImageStore(tmp_path / "by-digest", unpack="never")
    rec2 = await pull_image(store2, f"{host}/timonel/busybox:ignored-tag@{digest}")
    assert rec2.id == rec.id
    assert rec2.repo_tags == []  # pulled by digest: no tag, like containerd
    assert rec2.repo_digests == [f"{host}/timonel/busybox@{digest}"]
    assert store2.resolve(f"{host}/timonel/busybox@{digest}").id == rec.id
    assert store2.image_status(f"{host}/timonel/busybox:1.0") is None


async def test_tampered_blob_in_the_registry_is_rejected(busybox_registry: LocalRegistry,
                                                         busybox_built: BuiltImage, tmp_path: Path) -> None:
    layer = busybox_built.layers[0]
    data_file = busybox_registry.blob_data(layer.digest)
    data = bytearray(data_file.read_bytes())
    data[len(data) // 2] ^= 0x01  # the registry serves what is on disk without re-checking
    data_file.write_bytes(bytes(data))
    store = ImageStore(tmp_path / "store", unpack="never")
    with pytest.raises(DigestMismatchError, match=f"expected {layer.digest}; the blob is corrupt or was tampered"):
        await pull_image(store, f"{busybox_registry.host}/library/busybox:latest")
    assert store.list_images() == []
    assert not store.blobs.has(layer.digest)
    store.gc()
    assert store.blobs.all() == []


async def test_missing_image_is_a_clear_error(busybox_registry: LocalRegistry, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store", unpack="never")
    with pytest.raises(ImageNotFoundError, match="not found in registry"):
        await pull_image(store, f"{busybox_registry.host}/library/busybox:nope")


async def test_manifest_list_picks_the_platform(busybox_registry: LocalRegistry, busybox_built: BuiltImage,
                                                tmp_path: Path) -> None:
    host = busybox_registry.host
    ref = normalize(f"{host}/multi/busybox:all")
    layers = busybox_built.layers
    foreign = BuiltImage(layers, make_config(layers, cmd=["foreign"], architecture="s390x"), [])
    native = busybox_built
    async with RegistryClient() as client:
        for img in (foreign, native):
            for digest, data in img.blobs().items():
                if digest != img.manifest_digest:
                    await push_blob(client, ref, digest, data)
            await push_manifest(client, ref, img.manifest_digest, img.manifest, OCI_MANIFEST)
        index = canonical_json({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST_LIST, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": foreign.manifest_digest, "size": len(foreign.manifest),
             "platform": {"os": "linux", "architecture": "s390x"}},
            {"mediaType": OCI_MANIFEST, "digest": native.manifest_digest, "size": len(native.manifest),
             "platform": {"os": "linux", "architecture": host_platform().architecture}},
        ]})
        index_digest = await push_manifest(client, ref, "all", index, DOCKER_MANIFEST_LIST)
    assert index_digest == sha256_digest(index)

    store = ImageStore(tmp_path / "store", unpack="never")
    rec = await pull_image(store, str(ref))
    assert rec.id == native.config_digest and rec.index_digest == index_digest
    assert rec.repo_digests == [f"{host}/multi/busybox@{index_digest}"]
    assert store.resolve(f"{host}/multi/busybox@{index_digest}").id == rec.id

    other = await pull_image(ImageStore(tmp_path / "s390x", unpack="never"), str(ref),
                             platform=Platform("linux", "s390x"))
    assert other.id == foreign.config_digest


# ---- redirects and the token flow against a small aiohttp registry ------------


class FakeRegistry:
    """Serves one image; blobs redirect to a second server (another origin).

    Manifests need a bearer token from /token, which needs basic credentials.
    """

    def __init__(self, image: BuiltImage) -> None:
        self.image = image
        self.blob_auth_headers: list[str | None] = []
        self.token_requests: list[dict[str, Any]] = []
        self.url = ""
        self.cdn_url = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self.token)
        app.router.add_get("/v2/{name:.+}/manifests/{ref}", self.manifest)
        app.router.add_get("/v2/{name:.+}/blobs/{digest}", self.blob_redirect)
        return app

    def cdn(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/cdn/{digest}", self.blob)
        return app

    async def token(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        self.token_requests.append({"auth": auth, "scope": request.query.getall("scope", [])})
        if auth != "Basic " + base64.b64encode(b"bob:hunter2").decode():
            return web.json_response({"error": "bad credentials"}, status=401)
        return web.json_response({"access_token": "tok-123", "expires_in": 120})

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == "Bearer tok-123"

    def _challenge(self, name: str) -> web.Response:
        hdr = f'Bearer realm="{self.url}/token",service="fake",scope="repository:{name}:pull"'
        return web.json_response({"errors": [{"code": "UNAUTHORIZED", "message": "auth"}]}, status=401,
                                 headers={"WWW-Authenticate": hdr})

    async def manifest(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._challenge(request.match_info["name"])
        return web.Response(body=self.image.manifest, content_type="application/vnd.oci.image.manifest.v1+json",
                            headers={"Docker-Content-Digest": self.image.manifest_digest})

    async def blob_redirect(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._challenge(request.match_info["name"])
        raise web.HTTPTemporaryRedirect(f"{self.cdn_url}/cdn/{request.match_info['digest']}?sig=abc")

    async def blob(self, request: web.Request) -> web.Response:
        self.blob_auth_headers.append(request.headers.get("Authorization"))
        data = self.image.blobs().get(request.match_info["digest"])
        if data is None or request.query.get("sig") != "abc":
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def fake_registry(busybox_built: BuiltImage) -> AsyncIterator[FakeRegistry]:
    fake = FakeRegistry(busybox_built)
    r1, fake.url = await _serve(fake.app())
    r2, fake.cdn_url = await _serve(fake.cdn())
    try:
        yield fake
    finally:
        await r1.cleanup()
        await r2.cleanup()


async def test_token_flow_and_blob_redirects_to_another_origin(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    host = fake_registry.url.removeprefix("http://")
    store = ImageStore(tmp_path / "store", unpack="never")
    rec = await pull_image(store, f"{host}/team/busybox:1", credentials=Credentials("bob", "hunter2"))
    assert rec.id == fake_registry.image.config_digest
    assert fake_registry.blob_auth_headers and all(h is None for h in fake_registry.blob_auth_headers), \
        "the bearer token must not follow a redirect to another origin"
    assert len(fake_registry.token_requests) == 1  # cached for the blob requests
    assert fake_registry.token_requests[0]["scope"] == ["repository:team/busybox:pull"]
    assert json.loads(store.blobs.read(rec.config_digest))["config"]["Cmd"] == ["sh"]


async def test_concurrent_pulls_share_one_download(fake_registry: FakeRegistry, tmp_path: Path) -> None:
    host = fake_registry.url.removeprefix("http://")
    svc = ImageService(tmp_path / "svc", unpack="never")
    try:
        creds = Credentials("bob", "hunter2")
        recs = await asyncio.gather(*(svc.pull_image(f"{host}/team/busybox:1", creds) for _ in range(3)))
        assert {r.id for r in recs} == {fake_registry.image.config_digest}
        assert len(fake_registry.blob_auth_headers) == 2  # config + one layer, fetched once
        assert [r.id for r in svc.list_images()] == [recs[0].id]
    finally:
        await svc.close()


@pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo missing: apt-get install skopeo (deploy/install.sh does)")
async def test_pull_docker_schema2_pushed_by_skopeo(registry: LocalRegistry, busybox_built: BuiltImage,
                                                    tmp_path: Path) -> None:
    target = f"{registry.host}/skopeo/busybox:v2s2"
    one = BuiltImage(busybox_built.layers, busybox_built.config, ["busybox:latest"])
    src = write_oci_layout([one], tmp_path / "oci")
    proc = await asyncio.create_subprocess_exec(
        "skopeo", "copy", "-q", "--format", "v2s2", "--dest-tls-verify=false",
        f"oci:{src}:latest", f"docker://{target}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "HOME": str(tmp_path)})
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    store = ImageStore(tmp_path / "store", unpack="never")
    rec = await pull_image(store, target)
    assert rec.manifest_media_type == DOCKER_MANIFEST
    assert rec.id == busybox_built.config_digest  # same config, re-described in Docker media types
    assert store.resolve(target).layers[0].media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"
