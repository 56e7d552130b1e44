"""The API server's own loopback: the same API over plain HTTP on a unix socket.

`timonel server` runs its scheduler and controller manager in-process as
ordinary API clients (DESIGN.md rule 1). Over loopback HTTPS their ~70 watches
kept ~140 TLS connections open in this one process, both ends: ~137 KiB per
connection pair (70 pairs measured at +9.4 MiB RSS, plain ones +0.8 MiB), and
every watch event encrypted and decrypted once more. kube-apiserver has a
loopback client for the same reason.

Nothing is trusted by transport: requests still need a bearer token. The
socket file is the owner's only (mode 0600) and lives in the data directory,
or, where that path is too long for a unix socket, in a private temp dir.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import stat
import tempfile

from aiohttp import web

log = logging.getLogger(__name__)

SOCKET_NAME = "apiserver.sock"
_MAX_PATH = 100  # sun_path holds 108 bytes with the NUL; keep a margin
_TEMP_PREFIX = "timonel-api-"


async def serve_loopback_socket(runner: web.AppRunner, data_dir: str) -> str:
    """Serve `runner`'s app on a new unix socket; its path."""
    path = os.path.join(os.path.abspath(data_dir), SOCKET_NAME)
    if len(path.encode()) > _MAX_PATH:
        path = os.path.join(tempfile.mkdtemp(prefix=_TEMP_PREFIX), SOCKET_NAME)
    _remove_stale(path)
    sock = _bind_owner_only(path)
    try:
        await web.SockSite(runner, sock).start()
    except BaseException:
        sock.close()
        remove_loopback_socket(path)
        raise
    log.debug("loopback socket serving path=%s", path)
    return path


def remove_loopback_socket(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    parent = os.path.dirname(path)
    if os.path.basename(parent).startswith(_TEMP_PREFIX):
        shutil.rmtree(parent, ignore_errors=True)


def _bind_owner_only(path: str) -> socket.socket:
    """Bound, mode 0600, not yet listening. Until listen() every connect is
    refused, so the umask's mode is never usable by anyone; a umask changed
    around UnixSite.start() instead would be the whole process's across the
    event-loop turn that start awaits."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
    except BaseException:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    return sock


def _remove_stale(path: str) -> None:
    """A socket file left by a server that died: nobody answers on it."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket: move it away")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(f"another API server is serving {path}: stop it or use another --data-dir")
