"""Pull through the distribution token flow against the real registry.

docker-registry runs with `auth: token:` and trusts the certificate of a
small aiohttp token server started by the test (tests/.../conftest.py).
The client must answer the registry's `WWW-Authenticate: Bearer` challenge,
fetch a token with basic credentials, and retry.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from timonel.node_agent.runtime.images.errors import RegistryError
from timonel.node_agent.runtime.images.importers import import_image
from timonel.node_agent.runtime.images.push import push_image
from timonel.node_agent.runtime.images.registry import RegistryClient, pull_image
from timonel.node_agent.runtime.images.registry_auth import Credentials
from timonel.node_agent.runtime.images.store import ImageStore

from .conftest import LocalRegistry, TokenServer, needs_busybox, needs_registry

pytestmark = [needs_registry, needs_busybox]


async def test_push_and_pull_through_token_auth(token_registry: LocalRegistry, token_server: TokenServer,
                                                busybox_files: dict[str, Path], tmp_path: Path) -> None:
    src = ImageStore(tmp_path / "src", unpack="never")
    import_image(src, busybox_files["oci_tar"])
    name = f"{token_registry.host}/secure/busybox:1"
    creds = {token_registry.host: Credentials("alice", "secret")}
    async with RegistryClient(credentials=creds) as client:
        digest = await push_image(src, "busybox", name, client=client)
    assert token_server.requests, "the registry never sent the client to the token server"
    assert all(r["user"] == "alice" for r in token_server.requests)
    assert any("repository:secure/busybox:pull,push" in r["scopes"] for r in token_server.requests)
    assert {r["service"] for r in token_server.requests} == {token_server.service}

    token_server.requests.clear()
    dst = ImageStore(tmp_path / "dst", unpack="never")
    rec = await pull_image(dst, name, credentials=Credentials("alice", "secret"))
    assert rec.repo_digests == [f"{token_registry.host}/secure/busybox@{digest}"]
    assert token_server.requests[0]["scopes"] == ["repository:secure/busybox:pull"]
    assert dst.image_config(name)["cmd"] == ["sh"]


async def test_token_flow_without_credentials_is_refused(token_registry: LocalRegistry,
                                                         token_server: TokenServer, tmp_path: Path) -> None:
    dst = ImageStore(tmp_path / "dst", unpack="never")
    with pytest.raises(RegistryError) as e:
        await pull_image(dst, f"{token_registry.host}/secure/busybox:1")
    # Anonymous gets a token without rights; the registry then answers 401 again.
    assert e.value.status == 401
    assert token_server.requests and token_server.requests[0]["user"] is None
    assert dst.list_images() == []


async def test_wrong_password_is_a_clear_error(token_registry: LocalRegistry, tmp_path: Path) -> None:
    dst = ImageStore(tmp_path / "dst", unpack="never")
    with pytest.raises(RegistryError, match="refused a token"):
        await pull_image(dst, f"{token_registry.host}/secure/busybox:1", credentials=Credentials("alice", "nope"))
