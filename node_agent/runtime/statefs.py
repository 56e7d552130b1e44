"""The runtime's volatile state on a tmpfs of its own: `<root>/run`.

What lives only as long as the containers do (CRI records, sandbox
namespace files, IPAM records, the network namespace files, each
container's JSON state, fifo, /etc files and rootfs mount point) is kept
apart from what must stay on disk (images, layers, containers' writable
layers), like containerd's /run/containerd next to /var/lib/containerd.
Every pod start creates and rewrites some twenty of these small files; on
ext4 each new inode after a burst of deletions (a rewrite replaces one)
made the allocator scan its recently deleted inodes: a third of the
runtime's CPU per pod in a burst of 100 (measured with perf). A tmpfs has
no such cost. The mount outlives the daemon, so a restarted daemon finds
its containers' records; it is removed when the daemon stops with no
sandbox or container left.
"""

from __future__ import annotations

import errno
import logging
import os

from .linux import SyscallsLike
from .linux.constants import MNT_DETACH, MS_NODEV, MS_NOEXEC, MS_NOSUID

log = logging.getLogger(__name__)

STATE_SUBDIR = "run"
_SIZE = "256m"  # a ceiling, not a reservation: records are a few KB per container


def state_dir(root: str) -> str:
    return os.path.join(root, STATE_SUBDIR)


def tmpfs_mounted_at(path: str, mountinfo: str = "/proc/self/mountinfo") -> bool:
    real = os.path.realpath(path)
    return any(point == real and fstype == "tmpfs" for point, fstype in _mounts(mountinfo))


def mount_state(sys: SyscallsLike, root: str) -> str:
    """Make `<root>/run` a tmpfs unless it (or the filesystem under it) already is one; return the path."""
    path = state_dir(root)
    os.makedirs(path, mode=0o700, exist_ok=True)
    if on_tmpfs(path):  # our mount from an earlier daemon, or a root on a tmpfs already
        return path
    if any(os.scandir(path)):
        # State from before this layout, or from a daemon whose tmpfs was unmounted by hand:
        # mounting over it would hide records of containers that may still run.
        log.warning("state=%s msg=state directory is not empty; keeping it on disk", path)
        return path
    sys.mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=0700,size={_SIZE}")
    log.info("state=%s msg=mounted tmpfs for the runtime's volatile state", path)
    return path


def release_state(sys: SyscallsLike, root: str, in_use: bool) -> bool:
    """Unmount `<root>/run` if it is a tmpfs and nothing (`in_use`) needs it; True if unmounted."""
    path = state_dir(root)
    if in_use or not os.path.isdir(path) or not tmpfs_mounted_at(path):
        return False
    try:
        sys.umount2(path, MNT_DETACH)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise
        return False
    log.info("state=%s msg=unmounted the runtime's state tmpfs (no sandbox or container left)", path)
    return True


def on_tmpfs(path: str, mountinfo: str = "/proc/self/mountinfo") -> bool:
    # The longest mount point above `path` decides its filesystem.
    real = os.path.realpath(path)
    best, found = "", ""
    for point, fstype in _mounts(mountinfo):
        if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, found = point, fstype
    return found == "tmpfs"


def _mounts(mountinfo: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) of each line; mountinfo writes space, tab, newline
    and backslash in paths as octal escapes."""
    out = []
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n")
            out.append((point.replace("\\134", "\\"), fields[fields.index("-") + 1]))
    return out
