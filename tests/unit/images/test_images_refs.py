"""Image references normalize like distribution/reference (Docker, containerd, kubelet)."""

from __future__ import annotations

import pytest

from timonel.node_agent.runtime.images.errors import InvalidReferenceError
from timonel.node_agent.runtime.images.refs import lookup_key, normalize, parse, validate_digest

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("given,want", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
    ("me/app", "docker.io/me/app:latest"),
    ("me/team/app:v2", "docker.io/me/team/app:v2"),
    ("localhost/app", "localhost/app:latest"),
    ("localhost:5000/x", "localhost:5000/x:latest"),
    ("127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c"),
    ("quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5"),
    ("[::1]:5000/img", "[::1]:5000/img:latest"),
    ("my-registry.example.com:443/a__b/c-d.e", "my-registry.example.com:443/a__b/c-d.e:latest"),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}"),
    (f"busybox:1.36@{D}", f"docker.io/library/busybox:1.36@{D}"),
    ("Example.COM/app", "Example.COM/app:latest"),  # uppercase is allowed in the domain only
])
def test_normalize(given: str, want: str) -> None:
    assert str(normalize(given)) == want


@pytest.mark.parametrize("given,message", [
    ("", "at least one component"),
    ("Busybox", "must be lowercase"),
    ("localhost:5000/Foo", "must be lowercase"),
    ("a" * 64, "cannot specify 64-byte hexadecimal strings"),
    ("busybox@sha256:abc", "invalid reference format"),
    (f"busybox@sha256:{'A' * 64}", "lowercase hex"),
    ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
    ("busybox:-tag", "invalid reference format"),
    ("busybox:" + "t" * 129, "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("a/b/", "invalid reference format"),
    ("-busybox", "invalid reference format"),
    ("bus--_box", "invalid reference format"),
    ("x/" + "a" * 300, "must not be more than 255 characters"),
    ("busy box", "invalid reference format"),
])
def test_invalid(given: str, message: str) -> None:
    with pytest.raises(InvalidReferenceError, match=message):
        normalize(given)


def test_separators_follow_upstream() -> None:
    # `__`, single `.`/`_` and runs of `-` join name components; `___` does not.
    for ok in ("a__b", "a.b", "a_b", "a---b", "a-b.c_d"):
        assert normalize(ok).path == f"library/{ok}"
    with pytest.raises(InvalidReferenceError):
        normalize("a___b")
    with pytest.raises(InvalidReferenceError):
        normalize("a..b")


def test_familiar_form() -> None:
    assert normalize("busybox").familiar == "busybox:latest"
    assert normalize("me/app:1").familiar == "me/app:1"
    assert normalize("localhost:5000/x").familiar == "localhost:5000/x:latest"


def test_lookup_key_prefers_digest_over_tag() -> None:
    key = lookup_key(normalize(f"busybox:1.36@{D}"))
    assert key.tag is None and key.digest == D
    assert key.digested == f"docker.io/library/busybox@{D}"
    assert lookup_key(normalize("busybox", default_tag=False)).tagged == "docker.io/library/busybox:latest"


def test_digest_only_gets_no_default_tag() -> None:
    ref = normalize(f"busybox@{D}")
    assert ref.tag is None and ref.digest == D


def test_parse_requires_canonical_names() -> None:
    assert parse("docker.io/library/busybox:1").tag == "1"
    with pytest.raises(InvalidReferenceError, match="canonical"):
        parse("busybox")


def test_validate_digest_lengths() -> None:
    assert validate_digest(D) == D
    with pytest.raises(InvalidReferenceError, match="length"):
        validate_digest("sha256:" + "a" * 63 + "0" * 2)
    assert validate_digest("sha512:" + "a" * 128)
