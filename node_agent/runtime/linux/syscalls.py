"""The real syscall layer: ctypes over libc for what Python 3.11's `os` lacks.

Everything here is a thin wrapper that raises `OSError` with the call and its
arguments in the message. The container code never calls ctypes itself: it
gets a `Syscalls` object (this one, or `FakeSyscalls` in unit tests).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import mmap
import os
import platform
import resource
import signal
import socket
import struct
import threading
from collections.abc import Callable

from .constants import (
    AT_RECURSIVE,
    CAP_HEADER_VERSION_3,
    CLONE_PARENT,
    CLONE_VFORK,
    CLONE_VM,
    FS_IOC_GETFLAGS,
    FS_IOC_SETFLAGS,
    FS_TOPDIR_FL,
    MOVE_MOUNT_F_EMPTY_PATH,
    OPEN_TREE_CLOEXEC,
    OPEN_TREE_CLONE,
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAP_AMBIENT_RAISE,
    PR_CAPBSET_DROP,
    PR_CAPBSET_READ,
    PR_GET_NO_NEW_PRIVS,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_KEEPCAPS,
    PR_SET_NAME,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    SECCOMP_SET_MODE_FILTER,
)

# Syscalls glibc has no wrapper for, by machine (from 424 on, every machine has the same numbers).
_SYSCALL_NUMBERS = {
    "x86_64": {"pivot_root": 155, "seccomp": 317, "open_tree": 428, "move_mount": 429},
    "aarch64": {"pivot_root": 41, "seccomp": 277, "open_tree": 428, "move_mount": 429},
}

_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long
# clone() and fork() through a handle that keeps the GIL during the call: the child runs
# Python on the caller's interpreter (see Syscalls.vfork_sibling) or a copy of it (see
# Syscalls.fork_bare) and must find the GIL held, as the caller left it.
_pylibc = ctypes.PyDLL(None, use_errno=True)
_CLONE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)
_pylibc.clone.restype = ctypes.c_int
_pylibc.clone.argtypes = [_CLONE_FN, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
_pylibc.fork.restype = ctypes.c_int
_pylibc.fork.argtypes = []
_MAP_NORESERVE = 0x4000  # not in Python 3.11's mmap module


def _vfork_entry(_arg: int | None) -> int:
    try:
        _vfork_child[0]()
    except BaseException as e:  # nothing above us can take it
        with contextlib.suppress(OSError):
            os.write(2, f"timonel: {type(e).__name__}: {e}\n".encode())
    os._exit(127)


# The C entry of vfork_sibling's child, made once, at import (in the runtime, before its fork
# server forks anything): making a ctypes callback allocates a libffi closure, and the first
# allocation in a process reads /proc/self/status and /proc/mounts; in every container's helper
# that read took the mount-table lock every other container's mounts wait for. The callable it
# runs is put in _vfork_child just before each clone (the caller is single-threaded: see there).
_vfork_child: list[Callable[[], None]] = []
_VFORK_ENTRY = _CLONE_FN(_vfork_entry)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _b(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def _syscall_number(name: str) -> int:
    machine = platform.machine()
    try:
        return _SYSCALL_NUMBERS[machine][name]
    except KeyError:
        raise OSError(errno.ENOSYS, f"{name}: no syscall number known for {machine}") from None


class Syscalls:
    """The kernel, as the container code sees it. `FakeSyscalls` mirrors every method."""

    # Namespaces
    def unshare(self, flags: int) -> None:
        _check(_libc.unshare(flags), f"unshare(flags={flags:#x})")

    def setns(self, fd: int, nstype: int = 0) -> None:
        _check(_libc.setns(fd, nstype), f"setns(fd={fd}, nstype={nstype:#x})")

    def sethostname(self, name: str) -> None:
        raw = name.encode()
        _check(_libc.sethostname(raw, len(raw)), f"sethostname({name!r})")

    # Processes
    def vfork_sibling(self, child: Callable[[], None], stack_size: int = 8 << 20) -> int:
        """Run `child` in a new process that shares this one's memory and whose parent is
        ours; return its pid once it has exec'd or exited (until then we sleep).

        This is vfork (clone with CLONE_VM|CLONE_VFORK, as posix_spawn does) plus
        CLONE_PARENT: the child's execve drops the shared memory instead of tearing down a
        copy of it, and the teardown is left to us. `child` must end in execve or os._exit,
        and this process must not run Python after the call beyond what it needs to exit:
        the child has run this interpreter (its frames, its GIL state) on a stack of its own.
        """
        stack = mmap.mmap(-1, stack_size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
        top = (ctypes.addressof(ctypes.c_char.from_buffer(stack)) + stack_size - 64) & ~15
        _vfork_child[:] = [child]
        pid = _pylibc.clone(_VFORK_ENTRY, ctypes.c_void_p(top), CLONE_VM | CLONE_VFORK | CLONE_PARENT | signal.SIGCHLD,
                            None)
        return _check(pid, "clone(CLONE_VM|CLONE_VFORK|CLONE_PARENT)")

    def fork_bare(self) -> int:
        """fork(), without Python's after-fork work in the child; for single-threaded callers.

        os.fork() runs every os.register_at_fork hook in the child (threading's, logging's,
        random's reseed) and re-creates the interpreter's locks: in a process with the
        runtime's modules loaded, the child has written ~200 pages (copy-on-write faults,
        ~1 ms) before it runs a line of its own. That work is for locks another thread may
        have held and for threads that no longer exist; a process that has no other threads
        has neither (the fork server, the shims and the exec helpers are single-threaded). libc's fork is
        called with the GIL held, so the child finds it held by its one thread, as os.fork
        leaves it. What the child then does not get: threading's record of the main thread
        keeps the parent's native id, and `random` is not reseeded (uuid4 and secrets use
        the OS's randomness; tempfile reseeds its own generator in a new process)."""
        if threading.active_count() > 1:
            raise RuntimeError(f"fork_bare with {threading.active_count()} threads running: use os.fork")
        return _check(_pylibc.fork(), "fork()")

    # Mounts
    def mount(self, source: str | None, target: str, fstype: str | None, flags: int = 0,
              data: str | None = None) -> None:
        _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)),
               f"mount(source={source!r}, target={target!r}, fstype={fstype!r}, flags={flags:#x}, data={data!r})")

    def umount2(self, target: str, flags: int = 0) -> None:
        _check(_libc.umount2(_b(target), flags), f"umount2({target!r}, flags={flags})")

    def pivot_root(self, new_root: str, put_old: str) -> None:
        nr = _syscall_number("pivot_root")
        _check(_libc.syscall(nr, _b(new_root), _b(put_old)), f"pivot_root({new_root!r}, {put_old!r})")

    def clone_tree(self, path: str) -> int:
        """A detached copy of the mount tree at `path`, submounts included, as an fd
        (open_tree with OPEN_TREE_CLONE): it outlives the mount namespace it came from."""
        nr = _syscall_number("open_tree")
        flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE
        return _check(_libc.syscall(nr, ctypes.c_int(-100), _b(path), ctypes.c_uint(flags)),
                      f"open_tree({path!r}, OPEN_TREE_CLONE|AT_RECURSIVE)")

    def attach_tree(self, fd: int, target: str) -> None:
        """Mount a tree from clone_tree on `target` (move_mount)."""
        nr = _syscall_number("move_mount")
        _check(_libc.syscall(nr, ctypes.c_int(fd), b"", ctypes.c_int(-100), _b(target),
                             ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)),
               f"move_mount(fd={fd}, {target!r})")

    # prctl
    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
        return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option}, {arg2}, {arg3})")

    def set_pdeathsig(self, sig: int) -> None:
        self.prctl(PR_SET_PDEATHSIG, sig)

    def set_child_subreaper(self) -> None:
        self.prctl(PR_SET_CHILD_SUBREAPER, 1)

    def set_name(self, name: str) -> None:
        buf = ctypes.create_string_buffer(name.encode()[:15])
        _check(_libc.prctl(PR_SET_NAME, ctypes.cast(buf, ctypes.c_void_p).value or 0, 0, 0, 0),
               f"prctl(PR_SET_NAME, {name!r})")

    def set_keepcaps(self, keep: bool) -> None:
        self.prctl(PR_SET_KEEPCAPS, int(keep))

    def mark_top_directory(self, path: str) -> bool:
        """`chattr +T`: ext2/3/4 then spread the subdirectories made in `path` over the
        filesystem's block groups, as for directories in its root; False where it could
        not be set (a filesystem without inode flags): it is only a placement hint."""
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # The kernel reads and writes an int, whatever the ioctl number says.
            flags = struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 8)[:4])[0]
            if not flags & FS_TOPDIR_FL:
                fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("i", flags | FS_TOPDIR_FL) + b"\0" * 4)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    def set_no_new_privs(self) -> None:
        self.prctl(PR_SET_NO_NEW_PRIVS, 1)

    def get_no_new_privs(self) -> bool:
        return bool(self.prctl(PR_GET_NO_NEW_PRIVS))

    def capbset_read(self, cap: int) -> bool:
        return bool(self.prctl(PR_CAPBSET_READ, cap))

    def capbset_drop(self, cap: int) -> None:
        self.prctl(PR_CAPBSET_DROP, cap)

    def ambient_clear(self) -> None:
        self.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)

    def ambient_raise(self, cap: int) -> None:
        self.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)

    # Capabilities (v3: two 32-bit words per set)
    def capget(self) -> tuple[int, int, int]:
        header = _CapHeader(CAP_HEADER_VERSION_3, 0)
        data = (_CapData * 2)()
        _check(_libc.capget(ctypes.byref(header), data), "capget")
        def join(field: str) -> int:
            return getattr(data[0], field) | (getattr(data[1], field) << 32)
        return join("effective"), join("permitted"), join("inheritable")

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        header = _CapHeader(CAP_HEADER_VERSION_3, 0)
        data = (_CapData * 2)()
        for i in range(2):
            shift = 32 * i
            data[i].effective = (effective >> shift) & 0xFFFFFFFF
            data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
            data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
        _check(_libc.capset(ctypes.byref(header), data),
               f"capset(effective={effective:#x}, permitted={permitted:#x}, inheritable={inheritable:#x})")

    # Seccomp: the program is compiled beforehand (libseccomp.compile_filter) so the
    # container's init only has to hand raw BPF to the kernel.
    def seccomp_load(self, program: bytes, flags: int = 0) -> None:
        if len(program) % 8:
            raise ValueError("seccomp program length is not a multiple of 8 bytes")
        buf = ctypes.create_string_buffer(program, len(program))
        prog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p).value)
        nr = _syscall_number("seccomp")
        _check(_libc.syscall(nr, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(prog)),
               f"seccomp(SET_MODE_FILTER, {len(program) // 8} instructions)")

    # Thin wrappers over os/resource so the fake can record them in order.
    def eventfd(self, initval: int = 0, flags: int = 0) -> int:
        return os.eventfd(initval, flags)

    def inotify_watch(self, path: str, mask: int) -> int:
        """A non-blocking inotify fd watching one path."""
        fd = _check(_libc.inotify_init1(os.O_CLOEXEC | os.O_NONBLOCK), "inotify_init1")
        if _libc.inotify_add_watch(fd, os.fsencode(path), mask) < 0:
            err = ctypes.get_errno()
            os.close(fd)
            raise OSError(err, f"inotify_add_watch({path!r}): {os.strerror(err)}")
        return fd

    def loopback_up(self) -> None:
        """Bring `lo` up in the current network namespace (a new one starts with it down)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            ifreq = struct.pack("16sH14x", b"lo", 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, ifreq))[1]
            fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))

    def setrlimit(self, kind: int, soft: int, hard: int) -> None:
        resource.setrlimit(kind, (soft, hard))

    def setgroups(self, gids: list[int]) -> None:
        os.setgroups(gids)

    def setresgid(self, gid: int) -> None:
        os.setresgid(gid, gid, gid)

    def setresuid(self, uid: int) -> None:
        os.setresuid(uid, uid, uid)

    def chdir(self, path: str) -> None:
        os.chdir(path)

    def execve(self, path: str, args: list[str], env: dict[str, str]) -> None:
        os.execve(path, args, env)


def pack_sock_filter(code: int, jt: int, jf: int, k: int) -> bytes:
    """One classic-BPF instruction (struct sock_filter), as the kernel reads it."""
    return struct.pack("=HBBI", code, jt, jf, k)
