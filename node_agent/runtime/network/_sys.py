"""The few raw syscalls networking needs that Python 3.11 lacks (unshare, setns, mount).

Deliberately minimal and private to this package: the launcher keeps the general
ctypes layer in ``node_agent/runtime/linux/``; the integrator merges the two.
"""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 0x2
NSFS_MAGIC = 0x6E736673

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]


def _check(ret: int, what: str, path: str | None = None) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def mount(source: str, target: str, fstype: str | None, flags: int) -> None:
    _check(
        _libc.mount(
            os.fsencode(source), os.fsencode(target),
            os.fsencode(fstype) if fstype else None, flags, None,
        ),
        "mount", target,
    )


def umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(os.fsencode(target), flags), "umount2", target)
