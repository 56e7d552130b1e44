"""Crash-safe files: atomic replacement and inter-process locks.

State files (tokens, keys, kubeconfigs, image records, IPAM) are replaced by
rename, so a reader sees the old file or the new one, never half of one; the
mode is set before any byte is written, so a secret is never readable by
others, not even briefly.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o644, *,
                 fsync_dir: bool = False) -> None:
    path = os.fspath(path)
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{os.path.basename(path)}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if fsync_dir:
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


@contextlib.contextmanager
def locked(lock_path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive flock on `lock_path` (created 0600 if missing)."""
    fd = os.open(os.fspath(lock_path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
