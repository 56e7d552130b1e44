"""Upstream's AtomicWriter: a set of files that a reader sees change all at once.

The files live in a timestamped directory `..<time>.<random>`; `..data`
points at it, and every visible top-level name is a symlink through `..data`.
An update writes a new directory and renames a new `..data` over the old one
(rename(2) is atomic), so a process in the container reading the volume sees
either the whole old set or the whole new one, never a mix.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

DATA_DIR_NAME = "..data"
_NEW_DATA_DIR_NAME = "..data_tmp"


@dataclass(frozen=True)
class FileProjection:
    data: bytes
    mode: int


class PayloadError(ValueError):
    """A payload path that would leave the volume or clash with the writer's own names."""


def validate_path(path: str) -> str:
    """The relative path a payload file may use (upstream's validatePath)."""
    if not path:
        raise PayloadError("volume item path is empty")
    if os.path.isabs(path):
        raise PayloadError(f"volume item path {path!r} must be relative")
    parts = path.split("/")
    if ".." in parts:
        raise PayloadError(f"volume item path {path!r} must not contain '..' (it would leave the volume)")
    if parts[0].startswith(".."):
        raise PayloadError(f"volume item path {path!r} must not start with '..'")
    return os.path.normpath(path)


def _current(target: str) -> str | None:
    try:
        name = os.readlink(os.path.join(target, DATA_DIR_NAME))
    except OSError:
        return None
    return os.path.join(target, name)


def _same(ts_dir: str, payload: dict[str, FileProjection]) -> bool:
    """The directory holds exactly the payload (contents and modes)."""
    found = set()
    for root, _, names in os.walk(ts_dir):
        for name in names:
            found.add(os.path.relpath(os.path.join(root, name), ts_dir))
    if found != set(payload):
        return False
    for rel, f in payload.items():
        path = os.path.join(ts_dir, rel)
        try:
            if os.stat(path).st_mode & 0o7777 != f.mode:
                return False
            with open(path, "rb") as fh:
                if fh.read() != f.data:
                    return False
        except OSError:
            return False
    return True


def _remove(path: str) -> None:
    if os.path.islink(path) or not os.path.isdir(path):
        os.unlink(path)
    else:
        shutil.rmtree(path)


def write_payload(target: str, payload: dict[str, FileProjection]) -> bool:
    """Make `target` hold exactly `payload` (relative path -> file); True when it changed."""
    payload = {validate_path(p): f for p, f in payload.items()}
    os.makedirs(target, exist_ok=True)
    old = _current(target)
    if old is not None and os.path.isdir(old) and _same(old, payload):
        return False
    stamp = time.strftime("%Y_%m_%d_%H_%M_%S", time.gmtime())
    ts_dir = tempfile.mkdtemp(prefix=f"..{stamp}.", dir=target)
    os.chmod(ts_dir, 0o755)
    for rel, f in payload.items():
        path = os.path.join(ts_dir, rel)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(f.data)
        os.chmod(path, f.mode)
    tmp_link = os.path.join(target, _NEW_DATA_DIR_NAME)
    if os.path.lexists(tmp_link):
        os.unlink(tmp_link)
    os.symlink(os.path.basename(ts_dir), tmp_link)
    os.rename(tmp_link, os.path.join(target, DATA_DIR_NAME))
    visible = {rel.split("/", 1)[0] for rel in payload}
    for name in sorted(visible):
        link = os.path.join(target, name)
        want = os.path.join(DATA_DIR_NAME, name)
        if os.path.islink(link) and os.readlink(link) == want:
            continue
        if os.path.lexists(link):  # a file from before the writer, or a stale link
            _remove(link)
        os.symlink(want, link)
    for name in os.listdir(target):
        if name.startswith(".."):
            continue
        if name not in visible:
            _remove(os.path.join(target, name))
    # The old data, and directories of writers that died before their rename.
    for name in os.listdir(target):
        path = os.path.join(target, name)
        if name.startswith("..") and name not in (DATA_DIR_NAME, os.path.basename(ts_dir)) \
                and os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
    log.debug("volume payload written dir=%s files=%d", target, len(payload))
    return True
