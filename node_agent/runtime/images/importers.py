"""Import images from files: `docker save` archives and OCI image layouts.

Both may be a directory or a tar (optionally compressed). Every blob is
verified while it is copied into the store: against its descriptor digest
for OCI layouts, against the config's diff_ids for docker archives (whose
legacy `<id>/layer.tar` names carry no digest).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .compression import Decompressed, HashingReader, sniff_compression
from .errors import DigestMismatchError, ImageError, InvalidImageError
from .manifests import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    OCI_CONFIG,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    OCI_MANIFEST,
    Descriptor,
    Platform,
    canonical_json,
    detect_media_type,
    host_platform,
    load_json,
    parse_config,
    parse_index,
    parse_manifest,
    platform_matches,
    select_manifest,
)
from .refs import Reference, normalize
from .store import ImageRecord, ImageStore, Lease

log = logging.getLogger(__name__)

CONTAINERD_NAME = "io.containerd.image.name"
OCI_REF_NAME = "org.opencontainers.image.ref.name"
_BARE_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_HEX64 = re.compile(r"([a-f0-9]{64})")
_MAX_INDEX_DEPTH = 4


class _Source:
    """Files of an archive or directory, addressed by their relative names."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        if path.is_dir():
            self._real = os.path.realpath(path)
        else:
            try:
                self._tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close()
            except (tarfile.TarError, OSError) as e:
                raise InvalidImageError(f"{path}: not a directory or a readable tar archive ({e})") from None
            for m in self._tar.getmembers():
                self._members[self._norm(m.name)] = m

    @staticmethod
    def _norm(name: str) -> str:
        return "/".join(p for p in name.split("/") if p not in ("", "."))

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def exists(self, name: str) -> bool:
        name = self._norm(name)
        if self._tar is not None:
            return name in self._members
        return (self.path / name).is_file() and self._inside(self.path / name)

    def _inside(self, p: Path) -> bool:
        real = os.path.realpath(p)
        return real == self._real or real.startswith(self._real + os.sep)

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        norm = self._norm(name)
        if ".." in norm.split("/") or name.startswith("/"):
            raise InvalidImageError(f"{self.path}: refers to {name!r} outside the archive")
        if self._tar is not None:
            m = self._members.get(norm)
            f = self._tar.extractfile(m) if m is not None else None
            if f is None:
                raise InvalidImageError(f"{self.path}: {name!r} is missing from the archive")
            with f:
                yield f
            return
        p = self.path / norm
        if not p.is_file() or not self._inside(p):
            raise InvalidImageError(f"{self.path}: {name!r} is missing (or points outside the directory)")
        with open(p, "rb") as fh:
            yield fh

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise InvalidImageError(f"{self.path}: {name!r} is too large for a JSON document")
        return data


def detect_format(path: str | os.PathLike[str]) -> str:
    """`oci` or `docker-archive`, from the files the path holds."""
    src = _Source(Path(path))
    try:
        if src.exists("index.json"):
            return "oci"
        if src.exists("manifest.json"):
            return "docker-archive"
    finally:
        src.close()
    raise InvalidImageError(
        f"{path}: neither an OCI image layout (index.json) nor a docker save archive (manifest.json)"
    )


def import_image(store: ImageStore, path: str | os.PathLike[str], name: str | None = None,
                 platform: Platform | None = None) -> list[ImageRecord]:
    """Import every image a file or directory holds; returns their records.

    `name` adds a name (it must pick one image when the source holds several).
    A source with both an OCI index and a docker manifest (Docker ≥ 25) is
    read as OCI, which keeps the real manifest digests.
    """
    fmt = detect_format(path)
    if fmt == "oci":
        return import_oci_layout(store, path, name, platform)
    return import_docker_archive(store, path, name)


def _caller_name(name: str | None) -> Reference | None:
    if name is None:
        return None
    ref = normalize(name)
    if ref.digest:
        raise InvalidImageError(f"cannot name an imported image with a digest: {name!r}; give repository[:tag]")
    return ref


def _copy_blob(store: ImageStore, lease: Lease, src: _Source, desc: Descriptor, where: str) -> None:
    lease.add(desc.digest)
    if store.blobs.has(desc.digest):
        return
    blob_name = f"blobs/{desc.digest.replace(':', '/')}"
    with src.open(blob_name) as f:
        store.blobs.put_stream(f, desc.digest, desc.size, where=f"{where}: {blob_name}")


@dataclass
class _Candidate:
    desc: Descriptor
    names: list[Reference] = field(default_factory=list)
    bare_tags: list[str] = field(default_factory=list)
    position: int = 0


def _entry_names(desc: Descriptor, where: str) -> tuple[list[Reference], list[str]]:
    names: list[Reference] = []
    tags: list[str] = []
    for key in (CONTAINERD_NAME, OCI_REF_NAME):
        value = desc.annotation(key)
        if not value:
            continue
        if key == OCI_REF_NAME and _BARE_TAG.match(value) and "/" not in value:
            tags.append(value)  # the spec's usual form: a tag with no repository
            continue
        try:
            names.append(normalize(value))
        except ImageError as e:
            log.warning("source=%s annotation=%s value=%r ignored error=%s", where, key, value, e)
    return names, tags


def _pick(cands: list[_Candidate], caller: Reference | None, where: str) -> list[_Candidate]:
    if caller is None:
        return cands
    if len(cands) == 1:
        chosen = cands
    else:
        chosen = [c for c in cands if caller in c.names] or [c for c in cands if caller.tag in c.bare_tags]
    if len(chosen) != 1:
        known = ", ".join(
            "/".join([str(n) for n in c.names] + c.bare_tags) or f"#{c.position}" for c in cands
        )
        raise InvalidImageError(
            f"{where} holds {len(cands)} images and the name {caller} picks {len(chosen)} of them "
            f"(images: {known}); import without a name, or name one by its tag"
        )
    chosen[0].names.append(caller)
    return chosen


def import_oci_layout(store: ImageStore, path: str | os.PathLike[str], name: str | None = None,
                      platform: Platform | None = None) -> list[ImageRecord]:
    """Import an OCI image layout (directory or tar), following nested indexes."""
    where = str(path)
    caller = _caller_name(name)
    want = platform or host_platform()
    src = _Source(Path(path))
    try:
        if src.exists("oci-layout"):
            layout = load_json(src.read("oci-layout"), f"{where}: oci-layout")
            if layout.get("imageLayoutVersion") != "1.0.0":
                log.warning("source=%s oci_layout_version=%s unknown; trying anyway", where,
                            layout.get("imageLayoutVersion"))
        index = parse_index(load_json(src.read("index.json"), f"{where}: index.json"), f"{where}: index.json")
        by_digest: dict[str, _Candidate] = {}
        for desc in index:
            if desc.media_type in MANIFEST_TYPES and desc.platform and desc.platform.os \
                    and not platform_matches(desc.platform, want):
                log.info("source=%s manifest=%s platform=%s skipped want=%s", where, desc.digest, desc.platform, want)
                continue
            cand = by_digest.setdefault(desc.digest, _Candidate(desc, position=len(by_digest)))
            names, tags = _entry_names(desc, where)
            cand.names.extend(n for n in names if n not in cand.names)
            cand.bare_tags.extend(tags)
        if not by_digest:
            raise InvalidImageError(f"{where}: index.json lists no image for platform {want}")
        records = []
        for cand in _pick(list(by_digest.values()), caller, where):
            records.append(_import_oci_entry(store, src, cand, want, where))
        return records
    finally:
        src.close()


def _import_oci_entry(store: ImageStore, src: _Source, cand: _Candidate, want: Platform,
                      where: str) -> ImageRecord:
    with store.lease() as lease:
        desc = cand.desc
        index_digest = None
        for _ in range(_MAX_INDEX_DEPTH):
            _copy_blob(store, lease, src, desc, where)
            doc = load_json(store.blobs.read(desc.digest), f"{where}: {desc.digest}")
            mt = detect_media_type(doc, desc.media_type, f"{where}: {desc.digest}")
            if mt in MANIFEST_TYPES:
                break
            assert mt in INDEX_TYPES
            index_digest = index_digest or cand.desc.digest
            desc = select_manifest(parse_index(doc, f"{where}: {desc.digest}"), want, f"{where}: {desc.digest}")
        else:
            raise InvalidImageError(f"{where}: indexes nested deeper than {_MAX_INDEX_DEPTH} levels")
        manifest = parse_manifest(load_json(store.blobs.read(desc.digest), f"{where}: {desc.digest}"),
                                  f"{where}: {desc.digest}")
        for d in (manifest.config, *manifest.layers):
            _copy_blob(store, lease, src, d, where)
        if not cand.names:
            log.warning("source=%s image=%s carries no name; reachable by its ID only", where, desc.digest)
        return store.add_image(desc.digest, cand.names, index_digest=index_digest, where=where)


# ---- docker save ------------------------------------------------------------


def _hash_uncompressed(path: Path, where: str) -> str:
    """diff_id of a compressed layer blob (docker archives may hold gzip or zstd layers)."""
    with open(path, "rb") as f:
        dec = Decompressed(HashingReader(f), sniff_compression(str(path)), where)
        try:
            out = HashingReader(dec.stream)
            out.drain()
            dec.finish(where)
        except (OSError, EOFError, zlib.error) as e:
            raise InvalidImageError(f"{where}: cannot decompress the layer ({e}); the archive is corrupt") from None
        finally:
            dec.close()
    return out.digest


def _expected_from_name(name: str) -> str | None:
    """`blobs/sha256/<hex>` and `<hex>.json` name their digest; legacy layer dirs don't."""
    parts = name.split("/")
    if len(parts) >= 2 and parts[-2] == "sha256" and _HEX64.fullmatch(parts[-1]):
        return "sha256:" + parts[-1]
    stem = parts[-1].removesuffix(".json").removesuffix(".tar")  # skopeo names layers <diff_id>.tar
    if len(parts) == 1 and _HEX64.fullmatch(stem):
        return "sha256:" + stem
    return None


def import_docker_archive(store: ImageStore, path: str | os.PathLike[str],
                          name: str | None = None) -> list[ImageRecord]:
    """Import a `docker save` archive (tar or extracted directory)."""
    where = str(path)
    caller = _caller_name(name)
    src = _Source(Path(path))
    try:
        items = json.loads(src.read("manifest.json"))
        if not isinstance(items, list) or not items:
            raise InvalidImageError(f"{where}: manifest.json must be a non-empty list")
        repositories = {}
        if src.exists("repositories"):
            repositories = load_json(src.read("repositories"), f"{where}: repositories")
        cands = []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("Config"), str) \
                    or not isinstance(item.get("Layers"), list):
                raise InvalidImageError(f"{where}: manifest.json[{i}] needs Config and Layers")
            names = []
            for t in item.get("RepoTags") or []:
                try:
                    names.append(normalize(str(t)))
                except ImageError as e:
                    log.warning("source=%s repo_tag=%r ignored error=%s", where, t, e)
            if not names and item["Layers"]:
                top_id = str(item["Layers"][-1]).split("/")[0]
                for repo, tags in repositories.items():
                    for tag, layer_id in (tags or {}).items():
                        if layer_id != top_id:
                            continue
                        try:
                            names.append(normalize(f"{repo}:{tag}"))
                        except ImageError as e:
                            log.warning("source=%s repositories=%s:%s ignored error=%s", where, repo, tag, e)
            placeholder = Descriptor(OCI_MANIFEST, "sha256:" + "0" * 64, 0)
            cands.append(_Candidate(placeholder, names, position=i))
        chosen = _pick(cands, caller, where)
        return [_import_docker_item(store, src, items[c.position], c.names, where) for c in chosen]
    except json.JSONDecodeError as e:
        raise InvalidImageError(f"{where}: manifest.json is not valid JSON ({e})") from None
    finally:
        src.close()


def _import_docker_item(store: ImageStore, src: _Source, item: dict[str, Any], names: list[Reference],
                        where: str) -> ImageRecord:
    with store.lease() as lease:
        cfg_name = item["Config"]
        with src.open(cfg_name) as f:
            config_digest = store.blobs.put_stream(f, _expected_from_name(cfg_name), where=f"{where}: {cfg_name}")
        lease.add(config_digest)
        config_bytes = store.blobs.read(config_digest)
        config = parse_config(config_bytes, f"{where}: {cfg_name}")
        if len(config.diff_ids) != len(item["Layers"]):
            raise InvalidImageError(
                f"{where}: {cfg_name} has {len(config.diff_ids)} diff_ids but manifest.json lists "
                f"{len(item['Layers'])} layers"
            )
        layer_descs = []
        for i, layer_name in enumerate(item["Layers"]):
            lw = f"{where}: {layer_name}"
            with src.open(str(layer_name)) as f:
                digest = store.blobs.put_stream(f, _expected_from_name(str(layer_name)), where=lw)
            lease.add(digest)
            blob = store.blobs.path(digest)
            kind = sniff_compression(str(blob))
            diff_id = digest if kind == "none" else _hash_uncompressed(blob, lw)
            if diff_id != config.diff_ids[i]:
                raise DigestMismatchError(
                    f"{lw}: layer content hashes to {diff_id} but {cfg_name} says {config.diff_ids[i]}; "
                    "the archive is corrupt or was tampered with"
                )
            media_type = {"none": OCI_LAYER, "gzip": OCI_LAYER_GZIP, "zstd": OCI_LAYER_ZSTD}[kind]
            layer_descs.append({"mediaType": media_type, "digest": digest, "size": blob.stat().st_size})
        # docker save has no registry manifest: make one, so the image looks
        # like any pulled one (pushable, with a stable digest).
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config_bytes)},
            "layers": layer_descs,
        }
        manifest_digest = store.blobs.put_bytes(canonical_json(manifest), where=f"{where}: manifest")
        lease.add(manifest_digest)
        if not names:
            log.warning("source=%s image=%s carries no name; reachable by its ID only", where, config_digest)
        return store.add_image(manifest_digest, names, where=where)
