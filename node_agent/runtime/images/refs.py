"""Image references, parsed and normalized like distribution/reference.

`busybox` is `docker.io/library/busybox:latest`; `localhost:5000/x` keeps its
registry; `name@sha256:<hex>` pins a digest and a tag may stand before it.
The grammar, the length limit and the error texts follow the upstream
`distribution/reference` package (as used by Docker, containerd and the
kubelet), so a name accepted there is accepted here and vice versa.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from .errors import InvalidReferenceError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_NAME}|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"

_REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")
_SHA256_RE = re.compile(r"^sha256:[a-f0-9]{64}$")

# Lengths of the hex part for the algorithms the OCI image spec registers.
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True)
class Reference:
    """A normalized reference: `domain/path[:tag][@digest]`."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """`domain/path`, the key under which tags and digests live."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.repository
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    @property
    def familiar(self) -> str:
        """The short form Docker shows (`busybox:latest`, `me/app:1`)."""
        path = self.path
        if self.domain == DEFAULT_DOMAIN:
            if path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in path[len(OFFICIAL_REPO_PREFIX):]:
                path = path[len(OFFICIAL_REPO_PREFIX):]
            s = path
        else:
            s = f"{self.domain}/{path}"
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.match(tag):
            raise InvalidReferenceError(f"invalid tag format: {tag!r}")
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> Reference:
        validate_digest(digest)
        return Reference(self.domain, self.path, None, digest)

    def name_only(self) -> Reference:
        return Reference(self.domain, self.path)

    @property
    def tagged(self) -> str | None:
        """`repository:tag`, as stored in an image's repo tags."""
        return f"{self.repository}:{self.tag}" if self.tag else None

    @property
    def digested(self) -> str | None:
        """`repository@digest`, as stored in an image's repo digests."""
        return f"{self.repository}@{self.digest}" if self.digest else None


def validate_digest(digest: str) -> str:
    """Check an `algorithm:hex` digest; returns it unchanged."""
    algo, sep, hexpart = digest.partition(":")
    if not sep or not re.match(rf"^{_DIGEST}$", digest):
        raise InvalidReferenceError(f"invalid digest format: {digest!r} (expected sha256:<64 hex digits>)")
    want = _DIGEST_HEX_LEN.get(algo)
    if want is None:
        raise InvalidReferenceError(f"unsupported digest algorithm: {algo!r} in {digest!r}")
    if len(hexpart) != want:
        raise InvalidReferenceError(f"invalid checksum digest length: {digest!r} needs {want} hex digits")
    if hexpart != hexpart.lower():
        raise InvalidReferenceError(f"invalid checksum digest format: {digest!r} must be lowercase hex")
    return digest


def is_sha256_digest(s: str) -> bool:
    return bool(_SHA256_RE.match(s))


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse(s: str) -> Reference:
    """Parse a fully qualified reference (no defaults applied), like `reference.Parse`."""
    m = _REFERENCE_RE.match(s)
    if m is None:
        if s == "":
            raise InvalidReferenceError("repository name must have at least one component")
        if _REFERENCE_RE.match(s.lower()):
            raise InvalidReferenceError(f"repository name must be lowercase: {s!r}")
        raise InvalidReferenceError(f"invalid reference format: {s!r}")
    name, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(name) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReferenceError(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters: {name[:40]!r}..."
        )
    if digest:
        validate_digest(digest)
    domain, _, path = name.partition("/")
    if not path or not _looks_like_domain(domain):
        # A name without a registry part: `parse` (unlike `normalize`) needs one.
        raise InvalidReferenceError(f"repository name must be canonical: {s!r} (try {normalize(s)})")
    return Reference(domain, path, tag, digest)


def _looks_like_domain(first: str) -> bool:
    return "." in first or ":" in first or first == "localhost" or first.lower() != first


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep or not _looks_like_domain(first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def normalize(s: str, *, default_tag: bool = True) -> Reference:
    """Parse a user-typed reference the way `docker pull` and the kubelet do.

    Applies docker.io and `library/` defaults and, unless a digest pins the
    image or `default_tag` is false, the `latest` tag.
    """
    if not isinstance(s, str):
        raise InvalidReferenceError(f"image reference must be a string, got {type(s).__name__}")
    s = s.strip()
    if not s:
        raise InvalidReferenceError("repository name must have at least one component (empty image reference)")
    if _IDENTIFIER_RE.match(s):
        raise InvalidReferenceError(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings"
        )
    # Split off tag and digest before the domain test so `host:5000/x` and
    # `x:5000` are told apart by the `/` rule, as upstream does.
    name_part, at, digest = s.partition("@")
    domain, remainder = _split_domain(name_part)
    repo_part = remainder.rpartition(":")[0] if ":" in remainder else remainder
    if repo_part.lower() != repo_part:
        raise InvalidReferenceError(
            f"invalid reference format: repository name ({repo_part}) must be lowercase: {s!r}"
        )
    full = f"{domain}/{remainder}" + (f"@{digest}" if at else "")
    ref = parse(full)
    if default_tag and ref.tag is None and ref.digest is None:
        ref = Reference(ref.domain, ref.path, DEFAULT_TAG, None)
    return ref


def lookup_key(ref: Reference) -> Reference:
    """What to look an image up by: a digest wins over a tag given with it.

    `busybox:1.36@sha256:...` names the content by digest; the tag is only a
    hint for people, which is how containerd's `ParseDockerRef` treats it.
    """
    if ref.digest:
        return Reference(ref.domain, ref.path, None, ref.digest)
    if ref.tag is None:
        return Reference(ref.domain, ref.path, DEFAULT_TAG, None)
    return ref
