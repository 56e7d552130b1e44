"""The image store: blobs, an index of images, and unpacked layers.

Layout under the store root:
- `blobs/sha256/<hex>`: manifests, configs and layer blobs, verified on write;
- `images/<config-hex>.json`: one record per image (its ID is the config
  digest), holding its repo tags, repo digests, manifest, layers and size;
- `layers/<chainid-hex>/`: each layer unpacked once, in overlayfs form,
  shared by every image built on the same layers;
- `tmp/`: blobs and layers being written (published by rename).

Methods are synchronous and thread-safe; the async runtime service calls the
heavy ones (import, unpack, copy) through `asyncio.to_thread`. One process
owns a store root at a time.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .blobs import BlobStore, write_json_atomic
from .errors import ImageError, ImageInUseError, ImageNotFoundError, InvalidImageError
from .manifests import (
    chain_ids,
    load_json,
    parse_config,
    parse_manifest,
    runtime_config,
)
from .refs import Reference, is_sha256_digest, lookup_key, normalize
from .unpack import unpack_layer

log = logging.getLogger(__name__)

UnpackPolicy = Literal["auto", "always", "never"]
_HEX_PREFIX = re.compile(r"^(?:sha256:)?([a-f0-9]{1,64})$")


@dataclass
class LayerRecord:
    digest: str
    media_type: str
    size: int
    diff_id: str
    chain_id: str


@dataclass
class ImageRecord:
    id: str
    manifest_digest: str
    manifest_media_type: str
    config_digest: str
    layers: list[LayerRecord]
    size: int
    created: str
    platform: str
    repo_tags: list[str] = field(default_factory=list)
    repo_digests: list[str] = field(default_factory=list)
    index_digest: str | None = None
    imported_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageRecord:
        d = dict(d)
        d["layers"] = [LayerRecord(**x) for x in d.get("layers", [])]
        return cls(**d)


@dataclass
class GcResult:
    blobs_removed: int = 0
    layers_removed: int = 0
    bytes_freed: int = 0


class Lease:
    """Keeps blobs alive across a garbage collection while an import is running."""

    def __init__(self, store: ImageStore) -> None:
        self._store = store
        self.digests: list[str] = []

    def add(self, digest: str) -> None:
        with self._store._lock:
            self._store._leased[digest] += 1
        self.digests.append(digest)

    def release(self) -> None:
        with self._store._lock:
            for d in self.digests:
                self._store._leased[d] -= 1
                if self._store._leased[d] <= 0:
                    del self._store._leased[d]
        self.digests.clear()


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat().replace("+00:00", "Z")


class ImageStore:
    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        unpack: UnpackPolicy = "auto",
        in_use: Callable[[], Collection[str]] | None = None,
    ) -> None:
        """Open (or create) the store at `root`.

        `unpack`: when to unpack layers for overlayfs at import time: `auto`
        when running as root, `always`, or `never` (lazily, on first
        `rootfs_layers`). `in_use` returns the image IDs containers are using;
        those cannot be removed.
        """
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # Reset leftovers of a crash before any writer starts.
        shutil.rmtree(self.root / "tmp", ignore_errors=True)
        self.blobs = BlobStore(self.root)
        self.images_dir = self.root / "images"
        self.layers_dir = self.root / "layers"
        self.images_dir.mkdir(exist_ok=True)
        self.layers_dir.mkdir(exist_ok=True)
        self.unpack_policy = unpack
        self.in_use = in_use
        self._lock = threading.RLock()
        self._leased: Counter[str] = Counter()
        self._layer_locks: dict[str, threading.Lock] = {}
        self._images: dict[str, ImageRecord] = {}
        self._load()

    def _load(self) -> None:
        for p in sorted(self.images_dir.glob("*.json")):
            try:
                rec = ImageRecord.from_dict(json.loads(p.read_text()))
            except (ValueError, TypeError, KeyError) as e:
                log.warning("image_record=%s unreadable error=%s; skipping it", p, e)
                continue
            self._images[rec.id] = rec
        log.info("image_store=%s images=%d", self.root, len(self._images))

    @contextlib.contextmanager
    def lease(self) -> Iterator[Lease]:
        lease = Lease(self)
        try:
            yield lease
        finally:
            lease.release()

    # ---- lookups -----------------------------------------------------------

    def list_images(self) -> list[ImageRecord]:
        with self._lock:
            return sorted(self._images.values(), key=lambda r: (r.repo_tags[:1], r.id))

    def image_status(self, ref: str) -> ImageRecord | None:
        """The image `ref` names (any spelling, an ID or an ID prefix), or None."""
        try:
            return self.resolve(ref)
        except ImageNotFoundError:
            return None

    def resolve(self, ref: str) -> ImageRecord:
        s = ref.strip()
        with self._lock:
            if is_sha256_digest(s) and s in self._images:
                return self._images[s]
            parsed: Reference | None = None
            try:
                parsed = lookup_key(normalize(s))
            except ImageError:
                pass  # may still be an image ID (a 64-hex name is never a reference)
            if parsed is not None:
                for rec in self._images.values():
                    if parsed.digest is not None and parsed.digested in rec.repo_digests:
                        return rec
                    if parsed.digest is None and parsed.tagged in rec.repo_tags:
                        return rec
            m = _HEX_PREFIX.match(s)
            if m and (len(m.group(1)) >= 3 or s.startswith("sha256:")):
                hits = [r for r in self._images.values() if r.id[len("sha256:"):].startswith(m.group(1))]
                if len(hits) == 1:
                    return hits[0]
                if len(hits) > 1:
                    raise ImageNotFoundError(f"image ID prefix {s!r} is ambiguous ({len(hits)} images); give more digits")
        raise ImageNotFoundError(f"image {ref!r} not found in the image store; pull or import it first")

    # ---- adding ------------------------------------------------------------

    def add_image(
        self,
        manifest_digest: str,
        names: Sequence[Reference] = (),
        *,
        index_digest: str | None = None,
        where: str = "image",
    ) -> ImageRecord:
        """Record an image whose manifest, config and layer blobs are all stored.

        `names` become repo tags (those with a tag) and repo digests
        (`repository@<index or manifest digest>`); a tag held by another
        image moves to this one, like `docker tag` does.
        """
        manifest_doc = load_json(self.blobs.read(manifest_digest), f"{where}: manifest {manifest_digest}")
        manifest = parse_manifest(manifest_doc, f"{where}: manifest {manifest_digest}")
        config_where = f"{where}: config {manifest.config.digest}"
        config = parse_config(self.blobs.read(manifest.config.digest), config_where)
        if len(config.diff_ids) != len(manifest.layers):
            raise InvalidImageError(
                f"{config_where}: {len(config.diff_ids)} diff_ids for {len(manifest.layers)} layers"
            )
        chains = chain_ids(config.diff_ids)
        layers = []
        for i, desc in enumerate(manifest.layers):
            if not self.blobs.has(desc.digest):
                raise InvalidImageError(f"{where}: layer {desc.digest} was not stored; the import is incomplete")
            layers.append(LayerRecord(desc.digest, desc.media_type, desc.size, config.diff_ids[i], chains[i]))
        top = index_digest or manifest_digest
        tags = [n.tagged for n in names if n.tagged]
        digests = [f"{n.repository}@{top}" for n in names]
        size = manifest.config.size + sum(x.size for x in layers) + self.blobs.size(manifest_digest)
        with self._lock:
            rec = self._images.get(manifest.config.digest)
            is_new = rec is None
            if rec is None:
                rec = ImageRecord(
                    id=manifest.config.digest, manifest_digest=manifest_digest,
                    manifest_media_type=manifest.media_type, config_digest=manifest.config.digest,
                    layers=layers, size=size, created=config.created, platform=str(config.platform),
                    index_digest=index_digest, imported_at=_now(),
                )
            else:
                rec.manifest_digest, rec.manifest_media_type = manifest_digest, manifest.media_type
                rec.layers, rec.size, rec.index_digest = layers, size, index_digest
            for t in tags:
                self._untag_others(t, rec.id)
                if t not in rec.repo_tags:
                    rec.repo_tags.append(t)
            for d in digests:
                if d not in rec.repo_digests:
                    rec.repo_digests.append(d)
            self._images[rec.id] = rec
            self._save(rec)
        log.info("image=%s added tags=%s digests=%s layers=%d", rec.id, rec.repo_tags, rec.repo_digests, len(layers))
        if self.unpack_policy == "always" or (self.unpack_policy == "auto" and os.geteuid() == 0):
            try:
                self.ensure_layers(rec)
            except BaseException:
                if is_new:  # an image that cannot be unpacked must not look usable
                    with self._lock:
                        self._images.pop(rec.id, None)
                        with contextlib.suppress(FileNotFoundError):
                            self._record_path(rec.id).unlink()
                        self.gc()
                raise
        return rec

    def _untag_others(self, tag: str, keep_id: str) -> None:
        for other in self._images.values():
            if other.id != keep_id and tag in other.repo_tags:
                other.repo_tags.remove(tag)
                self._save(other)
                log.info("image=%s untagged tag=%s reason=tag-moved", other.id, tag)

    def _save(self, rec: ImageRecord) -> None:
        write_json_atomic(self._record_path(rec.id), rec.to_dict())

    def _record_path(self, image_id: str) -> Path:
        return self.images_dir / f"{image_id.split(':', 1)[1]}.json"

    def tag(self, ref: str, new_name: str) -> ImageRecord:
        """Give an image one more name (`docker tag`)."""
        target = normalize(new_name)
        if target.digest:
            raise InvalidImageError(f"cannot tag with a digest: {new_name!r}; give repository[:tag]")
        with self._lock:
            rec = self.resolve(ref)
            assert target.tagged is not None
            self._untag_others(target.tagged, rec.id)
            if target.tagged not in rec.repo_tags:
                rec.repo_tags.append(target.tagged)
            self._save(rec)
            return rec

    # ---- removal -----------------------------------------------------------

    def remove_image(self, ref: str) -> ImageRecord:
        """Remove the image (all its names) and free blobs and layers nothing else uses."""
        with self._lock:
            rec = self.resolve(ref)
            if self.in_use is not None and rec.id in set(self.in_use()):
                raise ImageInUseError(
                    f"image {ref!r} ({rec.id}) is used by a container; remove the container first"
                )
            del self._images[rec.id]
            with contextlib.suppress(FileNotFoundError):
                self._record_path(rec.id).unlink()
            log.info("image=%s removed tags=%s", rec.id, rec.repo_tags)
            self.gc()
        return rec

    def gc(self) -> GcResult:
        """Mark everything images and running imports reference; sweep the rest."""
        res = GcResult()
        with self._lock:
            live_blobs = set(self._leased)
            live_chains: set[str] = set()
            for rec in self._images.values():
                live_blobs.update({rec.manifest_digest, rec.config_digest})
                if rec.index_digest:
                    live_blobs.add(rec.index_digest)
                for d in {x.rsplit("@", 1)[1] for x in rec.repo_digests}:
                    live_blobs.update(self._manifest_blobs(d))
                for layer in rec.layers:
                    live_blobs.add(layer.digest)
                    live_chains.add(layer.chain_id.split(":", 1)[1])
            for digest in self.blobs.all():
                if digest not in live_blobs:
                    with contextlib.suppress(FileNotFoundError):
                        res.bytes_freed += self.blobs.size(digest)
                    self.blobs.delete(digest)
                    res.blobs_removed += 1
            for layer_path in self.layers_dir.iterdir():
                if layer_path.name not in live_chains:
                    shutil.rmtree(layer_path, ignore_errors=True)
                    res.layers_removed += 1
        if res.blobs_removed or res.layers_removed:
            log.info("gc blobs_removed=%d layers_removed=%d bytes_freed=%d",
                     res.blobs_removed, res.layers_removed, res.bytes_freed)
        return res

    def _manifest_blobs(self, digest: str) -> set[str]:
        """A repo digest's manifest and what it references: re-importing an image
        in another form (say docker save after a pull) keeps both pushable."""
        out = {digest}
        try:
            doc = json.loads(self.blobs.path(digest).read_bytes())
        except (OSError, ValueError):
            return out
        if isinstance(doc, dict) and isinstance(doc.get("layers"), list):
            for d in [doc.get("config"), *doc["layers"]]:
                if isinstance(d, dict) and isinstance(d.get("digest"), str):
                    out.add(d["digest"])
        return out

    # ---- using images ------------------------------------------------------

    def image_config(self, ref: str) -> dict[str, Any]:
        """Defaults a container takes from its image: entrypoint, cmd, env, working_dir,
        user, exposed_ports, volumes, labels, stop_signal."""
        rec = self.resolve(ref)
        cfg = parse_config(self.blobs.read(rec.config_digest), f"image {ref}: config")
        return runtime_config(cfg.raw)

    def layer_dir(self, chain_id: str) -> Path:
        return self.layers_dir / chain_id.split(":", 1)[1]

    def ensure_layers(self, rec: ImageRecord) -> None:
        """Unpack the image's layers that are not unpacked yet (each exactly once)."""
        for i, layer in enumerate(rec.layers):
            lowers = [str(self.layer_dir(x.chain_id)) for x in reversed(rec.layers[:i])]
            self._ensure_layer(layer, lowers, f"image {rec.id}: layer {i} ({layer.digest})")

    def _ensure_layer(self, layer: LayerRecord, lowers: list[str], where: str) -> None:
        final = self.layer_dir(layer.chain_id)
        with self._lock:
            lock = self._layer_locks.setdefault(layer.chain_id, threading.Lock())
        with lock:
            if final.is_dir():
                return
            if os.geteuid() != 0:
                raise ImageError(
                    f"{where}: unpacking layers for overlayfs needs root (whiteouts are device nodes); "
                    "use copy_rootfs() instead"
                )
            tmp = Path(tempfile.mkdtemp(prefix="layer-", dir=self.blobs.tmp_dir))
            try:
                os.chmod(tmp, 0o755)
                unpack_layer(str(self.blobs.path(layer.digest)), str(tmp), mode="overlay",
                             expected_digest=layer.digest, expected_diff_id=layer.diff_id,
                             lower_dirs=lowers, where=where)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            log.info("layer=%s unpacked chain_id=%s", layer.digest, layer.chain_id)

    def rootfs_layers(self, ref: str) -> list[str]:
        """Layer dirs of the image, top first, ready for overlayfs `lowerdir=`."""
        rec = self.resolve(ref)
        self.ensure_layers(rec)
        return [str(self.layer_dir(x.chain_id)) for x in reversed(rec.layers)]

    def copy_rootfs(self, ref: str, dest: str | os.PathLike[str]) -> None:
        """Flatten the image into `dest` (missing or empty): the no-overlayfs fallback."""
        rec = self.resolve(ref)
        dest_p = Path(dest)
        created = not dest_p.exists()
        if not created and any(dest_p.iterdir()):
            raise ImageError(f"copy_rootfs: {dest} is not empty; give a new or empty directory")
        dest_p.mkdir(parents=True, exist_ok=True)
        try:
            for i, layer in enumerate(rec.layers):
                unpack_layer(str(self.blobs.path(layer.digest)), str(dest_p), mode="copy",
                             expected_digest=layer.digest, expected_diff_id=layer.diff_id,
                             where=f"image {rec.id}: layer {i} ({layer.digest})")
        except BaseException:
            if created:
                shutil.rmtree(dest_p, ignore_errors=True)
            else:
                for child in dest_p.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink()
            raise

    def image_ids(self) -> Iterable[str]:
        with self._lock:
            return list(self._images)
