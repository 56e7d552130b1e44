"""Named network namespaces held by bind-mounted files, without a holder process.

A namespace lives as long as something references it; a bind mount of its nsfs
inode onto a plain file under ``netns_dir`` is such a reference, and it survives
the runtime's own restarts.  Like iproute2 and containerd we make ``netns_dir`` a
shared mount point, so unmounting a namespace file also unmounts the copies that
mount namespaces created in the meantime hold (otherwise those copies keep the
namespace, its veth and its address alive).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os

from ..linux import Syscalls
from ..linux.constants import MNT_DETACH, MS_BIND, MS_REC, MS_SHARED
from .config import NetworkError
from .nsrun import run_in_netns, run_in_new_netns

log = logging.getLogger(__name__)

DEFAULT_NETNS_DIR = "/run/timonel/netns"

_kernel = Syscalls()


def netns_path(name: str, netns_dir: str = DEFAULT_NETNS_DIR) -> str:
    _check_name(name)
    return os.path.join(netns_dir, name)


def is_netns(path: str) -> bool:
    """True if ``path`` is a file with a network namespace bind-mounted on it."""
    try:
        return _is_nsfs(path)
    except OSError:
        return False


def create_netns(name: str, netns_dir: str = DEFAULT_NETNS_DIR) -> str:
    """Create the namespace ``netns_dir/name`` with ``lo`` up and return its path.

    Idempotent: an existing namespace is kept (``lo`` is brought up again); a file
    left unmounted by a crash between creating it and mounting onto it is reused.
    """
    path = netns_path(name, netns_dir)
    os.makedirs(netns_dir, mode=0o755, exist_ok=True)
    _make_shared_mountpoint(netns_dir)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444))
    except FileExistsError:
        if is_netns(path):
            run_in_netns(path, set_loopback_up)
            return path
        log.info("netns=%s msg=reusing unmounted namespace file left by an interrupted create", path)
    try:
        run_in_new_netns(_bind_and_lo_up, path)
    except OSError as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise NetworkError(
            f"cannot create network namespace {path}: {e.strerror} "
            "(needs root, or CAP_SYS_ADMIN and a writable directory)"
        ) from e
    log.debug("netns=%s msg=created", path)
    return path


def delete_netns(name: str, netns_dir: str = DEFAULT_NETNS_DIR) -> None:
    """Unmount and remove ``netns_dir/name``; a missing one is not an error.

    The kernel frees the namespace (and the interfaces still in it) asynchronously
    once the last reference is gone.
    """
    path = netns_path(name, netns_dir)
    _unmount_all(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def list_netns(netns_dir: str = DEFAULT_NETNS_DIR) -> list[str]:
    """Names of the namespace files in ``netns_dir`` (mounted or left over by a crash)."""
    try:
        return sorted(e.name for e in os.scandir(netns_dir) if not e.name.startswith("."))
    except FileNotFoundError:
        return []


def release_netns_dir(netns_dir: str = DEFAULT_NETNS_DIR) -> bool:
    """Undo the shared self-bind-mount of an empty ``netns_dir``; False if namespaces remain."""
    if list_netns(netns_dir):
        return False
    _unmount_all(netns_dir)
    return True


def set_loopback_up() -> None:
    """Bring ``lo`` up in the calling thread's network namespace (a new one has it down)."""
    _kernel.loopback_up()


def _bind_and_lo_up(path: str) -> None:
    _kernel.mount("/proc/thread-self/ns/net", path, None, MS_BIND)
    set_loopback_up()


_shared_dirs: set[str] = set()  # made shared mount points by this process


def _make_shared_mountpoint(directory: str) -> None:
    # Once per process: a recursive propagation change walks every namespace mounted
    # there (O(pods) per pod) under the kernel's global mount lock.
    if directory in _shared_dirs:
        return
    try:
        _kernel.mount("none", directory, None, MS_SHARED | MS_REC)
    except OSError as e:
        if e.errno != errno.EINVAL:  # EINVAL: not a mount point yet
            raise NetworkError(f"cannot make {directory} a shared mount: {e.strerror}") from e
        _kernel.mount(directory, directory, None, MS_BIND | MS_REC)
        _kernel.mount("none", directory, None, MS_SHARED | MS_REC)
    _shared_dirs.add(directory)


def _unmount_all(path: str) -> None:
    # A path can carry stacked mounts (e.g. created twice by a buggy caller): peel all.
    for _ in range(64):
        try:
            _kernel.umount2(path, MNT_DETACH)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):
                return
            raise NetworkError(f"cannot unmount {path}: {e.strerror}") from e


def _is_nsfs(path: str) -> bool:
    # Every nsfs inode lives on the one nsfs superblock, so st_dev identifies it.
    return os.stat(path).st_dev == os.stat("/proc/thread-self/ns/net").st_dev


def _check_name(name: str) -> None:
    if not name or name.startswith(".") or "/" in name or "\0" in name or len(name) > 255:
        raise NetworkError(
            f"network namespace name {name!r} is not usable as a file name: "
            "use 1-255 characters, no '/' and no leading '.' (a pod ID is fine)"
        )
