"""Content-addressed blob files: `<root>/blobs/sha256/<hex>`, verified on write.

A blob only ever appears under its name after its bytes were hashed and
matched: writers stream into `<root>/tmp/`, and a rename publishes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from timonel.api.fileutil import write_atomic

from .errors import DigestMismatchError, ImageNotFoundError, InvalidImageError
from .refs import is_sha256_digest, validate_digest

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


def write_json_atomic(path: Path, doc: Any) -> None:
    """Write JSON so readers see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(doc, indent=1, sort_keys=True).encode(), 0o644, fsync_dir=True)


class BlobWriter:
    """Streams one blob into a temp file; `commit` verifies and publishes it."""

    def __init__(self, store: BlobStore, expected_digest: str | None, expected_size: int | None,
                 where: str) -> None:
        if expected_digest is not None:
            validate_digest(expected_digest)
            if not is_sha256_digest(expected_digest):
                raise InvalidImageError(f"{where}: only sha256 digests are supported, got {expected_digest}")
        self.store = store
        self.expected_digest = expected_digest
        self.expected_size = expected_size
        self.where = where
        self._h = hashlib.sha256()
        self.size = 0
        fd, self._tmp = tempfile.mkstemp(prefix="blob-", dir=store.tmp_dir)
        self._f: IO[bytes] | None = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        assert self._f is not None, "blob writer already closed"
        self.size += len(data)
        if self.expected_size is not None and self.size > self.expected_size:
            raise DigestMismatchError(
                f"{self.where}: blob is larger than the {self.expected_size} bytes announced for it; "
                "the source is corrupt or was tampered with"
            )
        self._h.update(data)
        self._f.write(data)

    def copy_from(self, f: IO[bytes]) -> None:
        while chunk := f.read(_CHUNK):
            self.write(chunk)

    @property
    def digest(self) -> str:
        return "sha256:" + self._h.hexdigest()

    def commit(self) -> str:
        assert self._f is not None, "blob writer already closed"
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        self._f = None
        digest = self.digest
        if self.expected_digest and digest != self.expected_digest:
            self.abort()
            raise DigestMismatchError(
                f"{self.where}: content hashes to {digest}, expected {self.expected_digest}; "
                "the blob is corrupt or was tampered with"
            )
        if self.expected_size is not None and self.size != self.expected_size:
            self.abort()
            raise DigestMismatchError(
                f"{self.where}: blob has {self.size} bytes, expected {self.expected_size}; "
                "the source is truncated or was tampered with"
            )
        dest = self.store.path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._tmp, dest)  # replacing also heals a damaged copy
        return digest

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._f is not None:
            self.abort()


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs" / "sha256"
        self.tmp_dir = root / "tmp"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        if not is_sha256_digest(digest):
            raise InvalidImageError(f"not a sha256 digest: {digest!r}")
        return self.dir / digest.split(":", 1)[1]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def writer(self, expected_digest: str | None = None, expected_size: int | None = None,
               where: str = "blob") -> BlobWriter:
        return BlobWriter(self, expected_digest, expected_size, where)

    def put_bytes(self, data: bytes, expected_digest: str | None = None, where: str = "blob") -> str:
        with self.writer(expected_digest, len(data), where) as w:
            w.write(data)
            return w.commit()

    def put_stream(self, f: IO[bytes], expected_digest: str | None = None,
                   expected_size: int | None = None, where: str = "blob") -> str:
        with self.writer(expected_digest, expected_size, where) as w:
            w.copy_from(f)
            return w.commit()

    def read(self, digest: str) -> bytes:
        """Read a (small) blob and re-check its digest: configs and manifests drive unpacking."""
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise ImageNotFoundError(f"blob {digest} is missing from the store; pull or import the image again") from None
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != digest:
            raise DigestMismatchError(f"stored blob {digest} hashes to {got}: the store is damaged; "
                                      "remove the image and pull or import it again")
        return data

    @contextlib.contextmanager
    def open(self, digest: str) -> Iterator[IO[bytes]]:
        with open(self.path(digest), "rb") as f:
            yield f

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def all(self) -> list[str]:
        return ["sha256:" + p.name for p in self.dir.iterdir() if len(p.name) == 64]
