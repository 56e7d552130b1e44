"""Build small images offline: layers from dirs or tar entries, written as an
OCI image layout (dir or tar) and as a `docker save` archive.

Used by deploy/images/ to make the busybox test image and by tests to make
layers with whiteouts or hostile entries. Output is reproducible: fixed
mtimes, sorted entries, gzip without timestamps.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .manifests import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    canonical_json,
    host_platform,
)
from .refs import normalize, sha256_digest

EPOCH = 1_700_000_000  # fixed mtime so rebuilt images keep their digests
Compression = Literal["gzip", "none"]


@dataclass(frozen=True)
class LayerBlob:
    data: bytes
    digest: str
    diff_id: str
    media_type: str

    @property
    def size(self) -> int:
        return len(self.data)


def compress_layer(tar_bytes: bytes, compression: Compression = "gzip") -> LayerBlob:
    diff_id = sha256_digest(tar_bytes)
    if compression == "gzip":
        data = gzip.compress(tar_bytes, compresslevel=6, mtime=0)
        return LayerBlob(data, sha256_digest(data), diff_id, OCI_LAYER_GZIP)
    return LayerBlob(tar_bytes, diff_id, diff_id, OCI_LAYER)


def tar_entry(name: str, kind: str = "file", data: bytes = b"", *, mode: int | None = None,
              linkname: str = "", uid: int = 0, gid: int = 0, devmajor: int = 0,
              devminor: int = 0) -> tuple[tarfile.TarInfo, bytes]:
    """One tar entry; `kind` is file, dir, symlink, hardlink, char, block or fifo."""
    ti = tarfile.TarInfo(name)
    ti.type = {
        "file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
        "hardlink": tarfile.LNKTYPE, "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE,
        "fifo": tarfile.FIFOTYPE,
    }[kind]
    ti.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    ti.linkname = linkname
    ti.uid, ti.gid = uid, gid
    ti.mtime = EPOCH
    ti.devmajor, ti.devminor = devmajor, devminor
    ti.size = len(data) if kind == "file" else 0
    return ti, data


def layer_from_entries(entries: Iterable[tuple[tarfile.TarInfo, bytes]],
                       compression: Compression = "gzip") -> LayerBlob:
    """A layer from explicit tar entries, in the given order (hostile ones too)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return compress_layer(buf.getvalue(), compression)


def layer_from_dir(root: str | os.PathLike[str], compression: Compression = "gzip",
                   owner: tuple[int, int] | None = (0, 0)) -> LayerBlob:
    """A layer holding the tree under `root` (sorted; `owner` overrides uid/gid)."""
    root = Path(root)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        paths = sorted(p for p in root.rglob("*"))
        for p in paths:
            rel = p.relative_to(root).as_posix()
            ti = tf.gettarinfo(str(p), arcname=rel)
            ti.mtime = EPOCH
            if owner is not None:
                ti.uid, ti.gid = owner
            ti.uname = ti.gname = ""
            if ti.isreg():
                with open(p, "rb") as f:
                    tf.addfile(ti, f)
            else:
                tf.addfile(ti)
    return compress_layer(buf.getvalue(), compression)


@dataclass
class BuiltImage:
    """An image held in memory: config, layers and the names to write it under."""

    layers: list[LayerBlob]
    config: bytes
    names: list[str] = field(default_factory=list)

    @property
    def config_digest(self) -> str:
        return sha256_digest(self.config)

    @property
    def manifest(self) -> bytes:
        return canonical_json({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": self.config_digest, "size": len(self.config)},
            "layers": [{"mediaType": x.media_type, "digest": x.digest, "size": x.size} for x in self.layers],
        })

    @property
    def manifest_digest(self) -> str:
        return sha256_digest(self.manifest)

    def blobs(self) -> dict[str, bytes]:
        out = {self.config_digest: self.config, self.manifest_digest: self.manifest}
        out.update({x.digest: x.data for x in self.layers})
        return out


def make_config(layers: Sequence[LayerBlob], *, cmd: Sequence[str] | None = None,
                entrypoint: Sequence[str] | None = None, env: Sequence[str] = (),
                working_dir: str = "", user: str = "", exposed_ports: Sequence[str] = (),
                labels: dict[str, str] | None = None, architecture: str | None = None,
                os_name: str = "linux") -> bytes:
    arch = architecture or host_platform().architecture
    cfg: dict[str, object] = {"Env": list(env) or ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]}
    if cmd is not None:
        cfg["Cmd"] = list(cmd)
    if entrypoint is not None:
        cfg["Entrypoint"] = list(entrypoint)
    if working_dir:
        cfg["WorkingDir"] = working_dir
    if user:
        cfg["User"] = user
    if exposed_ports:
        cfg["ExposedPorts"] = {p: {} for p in exposed_ports}
    if labels:
        cfg["Labels"] = dict(labels)
    return canonical_json({
        "architecture": arch,
        "os": os_name,
        "created": "2023-11-14T22:13:20Z",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "timonel image builder"}
                    for _ in layers],
    })


def _index_entries(images: Sequence[BuiltImage]) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = []
    for img in images:
        desc = {"mediaType": OCI_MANIFEST, "digest": img.manifest_digest, "size": len(img.manifest)}
        names: list[str | None] = list(img.names) or [None]
        for name in names:
            ann = {}
            if name is not None:
                ref = normalize(name)
                # containerd's annotation carries the full name, the OCI one the tag.
                ann = {"io.containerd.image.name": str(ref), "org.opencontainers.image.ref.name": ref.tag or "latest"}
            entries.append({**desc, **({"annotations": ann} if ann else {})})
    return entries


def oci_layout_files(images: Sequence[BuiltImage], index: bytes | None = None) -> dict[str, bytes]:
    """File name → content of an OCI image layout holding `images`."""
    files: dict[str, bytes] = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode()}
    for img in images:
        for digest, data in img.blobs().items():
            files[f"blobs/{digest.replace(':', '/')}"] = data
    files["index.json"] = index if index is not None else canonical_json(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": _index_entries(images)}
    )
    return files


def docker_archive_files(images: Sequence[BuiltImage]) -> dict[str, bytes]:
    """File name → content of a legacy `docker save` archive (uncompressed layers)."""
    files: dict[str, bytes] = {}
    manifest = []
    repositories: dict[str, dict[str, str]] = {}
    for img in images:
        layer_ids = []
        for i, layer in enumerate(img.layers):
            tar_bytes = gzip.decompress(layer.data) if layer.media_type == OCI_LAYER_GZIP else layer.data
            # Legacy layer IDs: any stable hex works; Docker derives them from the chain.
            layer_id = hashlib.sha256(f"{img.config_digest}/{i}".encode()).hexdigest()
            files[f"{layer_id}/layer.tar"] = tar_bytes
            files[f"{layer_id}/VERSION"] = b"1.0"
            files[f"{layer_id}/json"] = json.dumps({"id": layer_id}).encode()
            layer_ids.append(layer_id)
        cfg_name = f"{img.config_digest.split(':', 1)[1]}.json"
        files[cfg_name] = img.config
        tags = [normalize(n).familiar for n in img.names]
        manifest.append({"Config": cfg_name, "RepoTags": tags or None,
                         "Layers": [f"{lid}/layer.tar" for lid in layer_ids]})
        for n in img.names:
            ref = normalize(n)
            repositories.setdefault(ref.name_only().familiar, {})[ref.tag or "latest"] = layer_ids[-1]
    files["manifest.json"] = json.dumps(manifest).encode()
    files["repositories"] = json.dumps(repositories).encode()
    return files


def write_dir(files: dict[str, bytes], dest: str | os.PathLike[str]) -> Path:
    dest = Path(dest)
    for name, data in files.items():
        p = dest / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return dest


def write_tar(files: dict[str, bytes], dest: str | os.PathLike[str]) -> Path:
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dirs = sorted({str(Path(n).parent) for n in files if "/" in n})
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, EPOCH
            tf.addfile(ti)
        for name in sorted(files):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime = len(files[name]), 0o644, EPOCH
            tf.addfile(ti, io.BytesIO(files[name]))
    return dest


def write_oci_layout(images: Sequence[BuiltImage], dest: str | os.PathLike[str]) -> Path:
    return write_dir(oci_layout_files(images), dest)


def write_oci_tar(images: Sequence[BuiltImage], dest: str | os.PathLike[str]) -> Path:
    return write_tar(oci_layout_files(images), dest)


def write_docker_archive(images: Sequence[BuiltImage], dest: str | os.PathLike[str]) -> Path:
    return write_tar(docker_archive_files(images), dest)


__all__ = [
    "BuiltImage", "LayerBlob", "compress_layer", "docker_archive_files", "layer_from_dir",
    "layer_from_entries", "make_config", "oci_layout_files", "tar_entry", "write_dir",
    "write_docker_archive", "write_oci_layout", "write_oci_tar", "write_tar",
]
