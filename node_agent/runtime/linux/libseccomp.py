"""Compile a seccomp filter to BPF with the system libseccomp (ctypes).

Compilation happens once per profile in the runtime daemon; the container's
init only loads the resulting bytes (`Syscalls.seccomp_load`), so it needs no
library calls between fork and exec.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000


def act_errno(err: int) -> int:
    return 0x00050000 | (err & 0xFFFF)


def act_trace(msg: int) -> int:
    return 0x7FF00000 | (msg & 0xFFFF)


# enum scmp_compare
CMP_NE, CMP_LT, CMP_LE, CMP_EQ, CMP_GE, CMP_GT, CMP_MASKED_EQ = range(1, 8)

# enum scmp_filter_attr
_ATTR_CTL_NNP = 3


@dataclass(frozen=True)
class ArgCmp:
    index: int
    op: int
    value: int
    value_two: int = 0


@dataclass(frozen=True)
class Rule:
    syscall: str
    action: int
    args: tuple[ArgCmp, ...] = ()


@dataclass
class Filter:
    default_action: int
    architectures: list[str] = field(default_factory=list)  # libseccomp names: x86_64, x86, x32 ...
    rules: list[Rule] = field(default_factory=list)


class _ArgCmpStruct(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


_lib: ctypes.CDLL | None = None


def _library() -> ctypes.CDLL:
    global _lib
    if _lib is None:
        name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError as e:
            raise OSError(f"cannot load libseccomp ({name}): {e}; install Debian's libseccomp2") from e
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                               ctypes.c_uint, ctypes.POINTER(_ArgCmpStruct)]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        _lib = lib
    return _lib


def syscall_number(name: str) -> int | None:
    """The native number of a syscall, or None when libseccomp does not know it."""
    nr = _library().seccomp_syscall_resolve_name(name.encode())
    return None if nr < 0 else int(nr)


def _split_args(args: tuple[ArgCmp, ...]) -> list[tuple[ArgCmp, ...]]:
    # libseccomp rejects two comparisons on the same argument in one rule; like
    # Docker, such conditions become separate rules (any of them matches).
    indexes = [a.index for a in args]
    if len(set(indexes)) == len(indexes):
        return [args]
    return [(a,) for a in args]


def compile_filter(spec: Filter) -> bytes:
    """The BPF program (struct sock_filter array) for `spec`."""
    lib = _library()
    ctx = lib.seccomp_init(spec.default_action)
    if not ctx:
        raise OSError("seccomp_init failed: bad default action?")
    try:
        # The runtime sets no_new_privs itself when asked; never as a side effect.
        lib.seccomp_attr_set(ctx, _ATTR_CTL_NNP, 0)
        for arch in spec.architectures:
            token = lib.seccomp_arch_resolve_name(arch.encode())
            if token == 0:
                log.debug("seccomp unknown architecture=%s skipped", arch)
                continue
            rc = lib.seccomp_arch_add(ctx, token)
            if rc < 0 and -rc != 17:  # EEXIST: the native arch is already there
                raise OSError(-rc, f"seccomp_arch_add({arch}): {os.strerror(-rc)}")
        for rule in spec.rules:
            if rule.action == spec.default_action:
                continue
            nr = syscall_number(rule.syscall)
            if nr is None:
                log.debug("seccomp unknown syscall=%s skipped", rule.syscall)
                continue
            for group in _split_args(rule.args):
                arr = (_ArgCmpStruct * max(len(group), 1))()
                for i, a in enumerate(group):
                    arr[i] = _ArgCmpStruct(a.index, a.op, a.value, a.value_two)
                rc = lib.seccomp_rule_add_array(ctx, rule.action, nr, len(group), arr)
                if rc < 0:
                    raise OSError(-rc, f"seccomp rule for {rule.syscall} {group}: {os.strerror(-rc)}")
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            rc = lib.seccomp_export_bpf(ctx, fd)
            if rc < 0:
                raise OSError(-rc, f"seccomp_export_bpf: {os.strerror(-rc)}")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
