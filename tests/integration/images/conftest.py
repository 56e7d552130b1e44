"""Fixtures for image tests: the offline busybox image, a local registry
(Debian's docker-registry on 127.0.0.1 with its own config and a temp
filesystem store), and a token server for the registry's token auth.

Only loopback is ever contacted.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import importlib.util
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeAlias

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from timonel.node_agent.runtime.images.builder import BuiltImage
from timonel.node_agent.runtime.images.importers import import_image
from timonel.node_agent.runtime.images.push import push_image
from timonel.node_agent.runtime.images.registry import RegistryClient
from timonel.node_agent.runtime.images.store import ImageStore

REPO_ROOT = Path(__file__).resolve().parents[3]
REGISTRY_BIN = "/usr/bin/docker-registry"

needs_registry = pytest.mark.skipif(
    not os.access(REGISTRY_BIN, os.X_OK),
    reason=f"{REGISTRY_BIN} missing: apt-get install docker-registry (deploy/install.sh does)",
)
needs_busybox = pytest.mark.skipif(
    not os.path.isfile("/bin/busybox"),
    reason="/bin/busybox missing: apt-get install busybox-static (deploy/install.sh does)",
)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod whiteouts, overlay mounts, chown)")


def load_deploy_module(name: str) -> ModuleType:
    """Import deploy/images/<name>.py (deploy/ is scripts, not a package)."""
    path = REPO_ROOT / "deploy" / "images" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"timonel_deploy_images_{name}", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def busybox_module() -> ModuleType:
    return load_deploy_module("busybox")


@pytest.fixture(scope="session")
def busybox_built(busybox_module: ModuleType) -> BuiltImage:
    if not os.path.isfile("/bin/busybox"):
        pytest.skip("/bin/busybox missing: apt-get install busybox-static")
    img: BuiltImage = busybox_module.build_busybox_image()
    return img


@pytest.fixture(scope="session")
def busybox_files(busybox_module: ModuleType, busybox_built: BuiltImage,
                  tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    files: dict[str, Path] = busybox_module.write_busybox_image(
        tmp_path_factory.mktemp("busybox-image"), image=busybox_built)
    return files


# ---- local registry ---------------------------------------------------------


_local_registry = load_deploy_module("local_registry")
start_registry = _local_registry.start_registry
# deploy/images/local_registry.py:LocalRegistry (deploy/ is not a package mypy can follow)
LocalRegistry: TypeAlias = Any


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.skip(f"{REGISTRY_BIN} missing: apt-get install docker-registry")
    reg = start_registry(tmp_path / "registry")
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture
async def busybox_registry(registry: LocalRegistry, busybox_files: dict[str, Path],
                           tmp_path: Path) -> AsyncIterator[LocalRegistry]:
    """The local registry holding busybox as `<host>/library/busybox:latest` and `<host>/timonel/busybox:1.0`."""
    scratch = ImageStore(tmp_path / "push-store", unpack="never")
    import_image(scratch, busybox_files["oci_dir"])
    async with RegistryClient() as client:
        for name in (f"{registry.host}/library/busybox:latest", f"{registry.host}/timonel/busybox:1.0"):
            registry.pushed[name] = await push_image(scratch, "busybox", name, client=client)
    yield registry


# ---- token auth -------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def libtrust_key_id(public_key: rsa.RSAPublicKey) -> str:
    """The `kid` docker/libtrust derives from a public key (what the registry looks keys up by)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    s = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(s[i:i + 4] for i in range(0, len(s), 4))


@dataclass
class TokenServer:
    """Issues registry JWTs: `alice:secret` may pull and push, anyone else nothing."""

    issuer: str = "timonel-test-issuer"
    service: str = "timonel-test-registry"
    users: dict[str, str] = field(default_factory=lambda: {"alice": "secret"})
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    cert_pem: bytes = b""
    key: rsa.RSAPrivateKey | None = None
    cert_der: bytes = b""

    def make_keys(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "timonel test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)

    def sign(self, claims: dict[str, Any]) -> str:
        assert self.key is not None
        header = {"typ": "JWT", "alg": "RS256", "kid": libtrust_key_id(self.key.public_key()),
                  "x5c": [base64.b64encode(self.cert_der).decode()]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(sig)}"

    async def handle(self, request: web.Request) -> web.Response:
        user = None
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(u) != p:
                return web.json_response({"details": "bad credentials"}, status=401)
            user = u
        scopes = request.query.getall("scope", [])
        self.requests.append({"user": user, "scopes": scopes, "service": request.query.get("service")})
        access = []
        for sc in scopes:
            typ, _, rest = sc.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = [a for a in actions.split(",") if user is not None and a in ("pull", "push")]
            access.append({"type": typ, "name": name, "actions": granted})
        now = int(time.time())
        token = self.sign({"iss": self.issuer, "sub": user or "", "aud": self.service, "exp": now + 300,
                           "nbf": now - 60, "iat": now, "jti": uuid.uuid4().hex, "access": access})
        return web.json_response({"token": token, "expires_in": 300})


@pytest.fixture
async def token_server() -> AsyncIterator[TokenServer]:
    ts = TokenServer()
    ts.make_keys()
    app = web.Application()
    app.router.add_get("/token", ts.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ts.url = f"http://127.0.0.1:{port}/token"
    try:
        yield ts
    finally:
        await runner.cleanup()


@pytest.fixture
def token_registry(token_server: TokenServer, tmp_path: Path) -> Iterator[LocalRegistry]:
    """docker-registry with `auth: token:` trusting the test token server's certificate."""
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.skip(f"{REGISTRY_BIN} missing: apt-get install docker-registry")
    bundle = tmp_path / "token-ca.pem"
    bundle.write_bytes(token_server.cert_pem)
    auth = {"token": {"realm": token_server.url, "service": token_server.service,
                      "issuer": token_server.issuer, "rootcertbundle": str(bundle)}}
    reg = start_registry(tmp_path / "token-registry", auth=auth)
    try:
        yield reg
    finally:
        reg.stop()
