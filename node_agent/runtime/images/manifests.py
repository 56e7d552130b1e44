"""Manifests, indexes and image configs: media types, parsing, platform choice.

Shared by the importers and the registry client, which meet the same four
document kinds: OCI manifest and index, Docker schema 2 manifest and
manifest list.
"""

from __future__ import annotations

import json
import logging
import platform as _platform
from dataclasses import dataclass
from typing import Any

from .errors import InvalidImageError
from .refs import sha256_digest, validate_digest

log = logging.getLogger(__name__)

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
# Order matters only for servers that pick the first acceptable type.
ACCEPT_MANIFESTS = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

LAYER_TYPES = frozenset({
    OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD, DOCKER_LAYER, DOCKER_LAYER_GZIP,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
})

# `uname -m` → GOARCH spelling used in image platforms, with the default variant.
_ARCH = {
    "x86_64": ("amd64", ""), "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"), "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"), "armv6l": ("arm", "v6"), "armv5tel": ("arm", "v5"),
    "i386": ("386", ""), "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""), "s390x": ("s390x", ""), "riscv64": ("riscv64", ""),
    "mips64": ("mips64", ""), "loongarch64": ("loong64", ""),
}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


def host_platform() -> Platform:
    arch, variant = _ARCH.get(_platform.machine().lower(), (_platform.machine().lower(), ""))
    return Platform("linux", arch, variant)


def parse_platform(s: str) -> Platform:
    """`linux/arm64/v8` → Platform; a bare arch means linux."""
    parts = s.split("/")
    if len(parts) == 1:
        return Platform("linux", parts[0])
    if len(parts) in (2, 3) and all(parts):
        return Platform(parts[0], parts[1], parts[2] if len(parts) == 3 else "")
    raise InvalidImageError(f"invalid platform {s!r}: expected os/arch[/variant], e.g. linux/amd64")


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    urls: tuple[str, ...] = ()

    def annotation(self, key: str) -> str | None:
        return dict(self.annotations).get(key)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            d["platform"] = {"os": self.platform.os, "architecture": self.platform.architecture}
            if self.platform.variant:
                d["platform"]["variant"] = self.platform.variant
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        return d


def parse_descriptor(d: Any, where: str) -> Descriptor:
    if not isinstance(d, dict):
        raise InvalidImageError(f"{where}: descriptor must be an object")
    try:
        digest = validate_digest(str(d["digest"]))
        size = int(d["size"])
        media_type = str(d.get("mediaType", ""))
    except (KeyError, ValueError, TypeError) as e:
        raise InvalidImageError(f"{where}: descriptor needs mediaType, digest and size ({e})") from None
    if size < 0:
        raise InvalidImageError(f"{where}: negative size {size}")
    plat = None
    p = d.get("platform")
    if isinstance(p, dict):
        plat = Platform(str(p.get("os", "")), str(p.get("architecture", "")), str(p.get("variant", "")))
    ann = d.get("annotations") or {}
    annotations = tuple(sorted((str(k), str(v)) for k, v in ann.items())) if isinstance(ann, dict) else ()
    urls = tuple(str(u) for u in d.get("urls") or ())
    return Descriptor(media_type, digest, size, plat, annotations, urls)


def load_json(data: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidImageError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise InvalidImageError(f"{where}: expected a JSON object")
    return doc


def detect_media_type(doc: dict[str, Any], declared: str | None, where: str) -> str:
    """Media type of a manifest-ish document, trusting the body over a vague header."""
    mt = doc.get("mediaType") or ""
    if declared:
        declared = declared.split(";")[0].strip()
    if declared in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED) or doc.get("schemaVersion") == 1:
        raise InvalidImageError(
            f"{where}: Docker schema 1 manifests are not supported (deprecated upstream); "
            "re-push the image with a current client"
        )
    if mt in MANIFEST_TYPES + INDEX_TYPES:
        return mt
    if declared in MANIFEST_TYPES + INDEX_TYPES:
        return declared
    # OCI allows omitting mediaType; the shape tells.
    if "manifests" in doc:
        return OCI_INDEX
    if "layers" in doc and "config" in doc:
        return OCI_MANIFEST
    raise InvalidImageError(f"{where}: unknown manifest type {mt or declared!r}")


@dataclass(frozen=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


def parse_manifest(doc: dict[str, Any], where: str) -> Manifest:
    if doc.get("schemaVersion") != 2:
        raise InvalidImageError(f"{where}: schemaVersion must be 2")
    mt = detect_media_type(doc, None, where)
    if mt not in MANIFEST_TYPES:
        raise InvalidImageError(f"{where}: expected an image manifest, got {mt}")
    config = parse_descriptor(doc.get("config"), f"{where}: config")
    layers_doc = doc.get("layers")
    if not isinstance(layers_doc, list):
        raise InvalidImageError(f"{where}: layers must be a list")
    layers = tuple(parse_descriptor(layer, f"{where}: layers[{i}]") for i, layer in enumerate(layers_doc))
    for i, layer in enumerate(layers):
        if layer.media_type not in LAYER_TYPES:
            raise InvalidImageError(
                f"{where}: layers[{i}] has unsupported media type {layer.media_type!r} "
                "(only Linux tar layers: plain, gzip or zstd)"
            )
    return Manifest(mt, config, layers)


def parse_index(doc: dict[str, Any], where: str) -> list[Descriptor]:
    if doc.get("schemaVersion") != 2:
        raise InvalidImageError(f"{where}: schemaVersion must be 2")
    entries = doc.get("manifests")
    if not isinstance(entries, list):
        raise InvalidImageError(f"{where}: manifests must be a list")
    return [parse_descriptor(m, f"{where}: manifests[{i}]") for i, m in enumerate(entries)]


def _is_attestation(d: Descriptor) -> bool:
    return d.annotation("vnd.docker.reference.type") == "attestation-manifest"


def platform_matches(have: Platform, want: Platform) -> bool:
    if have.os != want.os or have.architecture != want.architecture:
        return False
    if not want.variant or not have.variant:
        return True
    return have.variant == want.variant


def select_manifest(entries: list[Descriptor], want: Platform | None, where: str) -> Descriptor:
    """Pick the entry of an index/manifest list for a platform (default: this host).

    An exact variant beats an entry without variant; attestation manifests
    (BuildKit's `unknown/unknown`) are never picked.
    """
    want = want or host_platform()
    candidates = [e for e in entries if not _is_attestation(e)]
    matches = [e for e in candidates if e.platform and platform_matches(e.platform, want)]
    if matches:
        exact = [e for e in matches if e.platform and e.platform.variant == want.variant]
        return (exact or matches)[0]
    unplatformed = [e for e in candidates if e.platform is None]
    if len(candidates) == 1 and unplatformed:
        # A single-entry index without platform info (common in OCI layouts).
        return unplatformed[0]
    available = ", ".join(str(e.platform) for e in candidates if e.platform) or "none declared"
    raise InvalidImageError(
        f"{where}: no image for platform {want} (available: {available}); "
        "pull one built for this platform"
    )


@dataclass(frozen=True)
class ImageConfig:
    raw: dict[str, Any]
    diff_ids: tuple[str, ...]
    platform: Platform
    created: str


def parse_config(data: bytes, where: str) -> ImageConfig:
    doc = load_json(data, where)
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise InvalidImageError(f"{where}: rootfs.type must be 'layers'")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise InvalidImageError(f"{where}: rootfs.diff_ids must be a list")
    ids = tuple(validate_digest(str(d)) for d in diff_ids)
    plat = Platform(str(doc.get("os") or "linux"), str(doc.get("architecture") or ""),
                    str(doc.get("variant") or ""))
    return ImageConfig(doc, ids, plat, str(doc.get("created") or ""))


def chain_ids(diff_ids: tuple[str, ...] | list[str]) -> list[str]:
    """OCI ChainIDs: the identity of a layer together with everything below it."""
    out: list[str] = []
    for i, d in enumerate(diff_ids):
        out.append(d if i == 0 else sha256_digest(f"{out[-1]} {d}".encode()))
    return out


def runtime_config(raw: dict[str, Any]) -> dict[str, Any]:
    """What a container takes from its image: entrypoint, cmd, env, ...

    Keys are snake_case; absent fields become empty values so callers need no
    `get` chains.
    """
    c = raw.get("config") or {}
    if not isinstance(c, dict):
        c = {}

    def strlist(v: Any) -> list[str]:
        if isinstance(v, str):  # legacy shell form stored as a string
            return ["/bin/sh", "-c", v]
        return [str(x) for x in v] if isinstance(v, list) else []

    return {
        "entrypoint": strlist(c.get("Entrypoint")),
        "cmd": strlist(c.get("Cmd")),
        "env": [str(x) for x in c.get("Env") or []],
        "working_dir": str(c.get("WorkingDir") or ""),
        "user": str(c.get("User") or ""),
        "exposed_ports": sorted(str(p) for p in (c.get("ExposedPorts") or {})),
        "volumes": sorted(str(v) for v in (c.get("Volumes") or {})),
        "labels": {str(k): str(v) for k, v in (c.get("Labels") or {}).items()},
        "stop_signal": str(c.get("StopSignal") or ""),
    }


def canonical_json(doc: Any) -> bytes:
    """Stable bytes for documents we author (so their digests are reproducible)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
