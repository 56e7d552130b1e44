"""Registry client pieces that need no network: schemes, challenges, credentials."""

from __future__ import annotations

import base64

import pytest

from timonel.node_agent.runtime.images.errors import RegistryError
from timonel.node_agent.runtime.images.registry import RegistryClient, is_loopback
from timonel.node_agent.runtime.images.registry_auth import Credentials, parse_challenges


@pytest.mark.parametrize("host,want", [
    ("localhost", True), ("localhost:5000", True), ("127.0.0.1:5000", True), ("127.1.2.3", True),
    ("[::1]:5000", True), ("::1", True), ("docker.io", False), ("10.0.0.1:5000", False),
    ("localhost.example.com", False), ("registry:5000", False),
])
def test_is_loopback(host: str, want: bool) -> None:
    assert is_loopback(host) is want


def test_schemes() -> None:
    c = RegistryClient(insecure_registries=["registry.internal:5000"])
    assert str(c.base_url("docker.io")) == "https://registry-1.docker.io"
    assert str(c.base_url("quay.io")) == "https://quay.io"
    assert str(c.base_url("localhost:5000")) == "http://localhost:5000"
    assert str(c.base_url("127.0.0.1:5001")) == "http://127.0.0.1:5001"
    assert str(c.base_url("registry.internal:5000")) == "http://registry.internal:5000"
    assert str(c.base_url("registry.internal:5001")) == "https://registry.internal:5001"


def test_parse_challenges() -> None:
    (ch,) = parse_challenges('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
                             'scope="repository:library/busybox:pull"')
    assert ch.scheme == "bearer"
    assert ch.params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                         "scope": "repository:library/busybox:pull"}
    many = parse_challenges('Basic realm="Registry Realm", Bearer realm="https://x/t",error="invalid_token"')
    assert [c.scheme for c in many] == ["basic", "bearer"]
    assert many[0].params["realm"] == "Registry Realm" and many[1].params["error"] == "invalid_token"
    assert parse_challenges(r'Bearer realm="a\"b"')[0].params["realm"] == 'a"b'


def test_credentials() -> None:
    creds = Credentials.from_auth(base64.b64encode(b"user:pa:ss").decode())
    assert (creds.username, creds.password) == ("user", "pa:ss")
    assert creds.basic() == "Basic " + base64.b64encode(b"user:pa:ss").decode()
    assert Credentials().basic() is None
    with pytest.raises(RegistryError):
        Credentials.from_auth("%%%")


def test_credentials_lookup_by_host() -> None:
    c = RegistryClient(credentials={"localhost:5000": Credentials("a", "b")})
    assert c.creds_for("localhost:5000") == Credentials("a", "b") and c.creds_for("docker.io") is None
    f = RegistryClient(credentials=lambda host: Credentials(host, "x"))
    assert f.creds_for("quay.io") == Credentials("quay.io", "x")
