"""Seccomp profiles in Docker's JSON format, compiled to BPF once per profile.

`RuntimeDefault` blocks what Docker's default profile blocks (mount, unshare,
setns, keyctl, ptrace, kexec, reboot, module loading, namespace flags of
clone ...), each unless the container holds the capability Docker ties it
to. It is written as a deny list (default ALLOW): syscalls the kernel adds
later are allowed, where Docker's allow list would refuse them.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import platform
from typing import Any

from ..linux import libseccomp
from ..linux.constants import (
    CAP_NUMBERS,
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
)
from .spec import SECCOMP_LOCALHOST, SECCOMP_UNCONFINED, Seccomp, SpecError

# (syscalls, capability that lifts the block or None)
_BLOCKED: list[tuple[list[str], str | None]] = [
    (["acct"], "CAP_SYS_PACCT"),
    (["add_key", "request_key", "keyctl"], None),
    (["bpf"], "CAP_SYS_ADMIN"),
    (["clock_adjtime", "clock_settime", "settimeofday", "stime"], "CAP_SYS_TIME"),
    (["create_module", "get_kernel_syms", "query_module", "nfsservctl", "uselib", "ustat",
      "sysfs", "_sysctl", "vm86", "vm86old", "userfaultfd",
      "io_uring_setup", "io_uring_enter", "io_uring_register"], None),
    (["delete_module", "init_module", "finit_module"], "CAP_SYS_MODULE"),
    (["get_mempolicy", "mbind", "set_mempolicy", "move_pages"], "CAP_SYS_NICE"),
    (["ioperm", "iopl"], "CAP_SYS_RAWIO"),
    (["kcmp", "process_vm_readv", "process_vm_writev", "ptrace", "pidfd_getfd",
      "process_madvise"], "CAP_SYS_PTRACE"),
    (["kexec_load", "kexec_file_load", "reboot"], "CAP_SYS_BOOT"),
    (["open_by_handle_at"], "CAP_DAC_READ_SEARCH"),
    (["syslog"], "CAP_SYSLOG"),
    (["mount", "umount", "umount2", "unshare", "setns", "pivot_root", "name_to_handle_at",
      "fanotify_init", "quotactl", "quotactl_fd", "perf_event_open", "lookup_dcookie",
      "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
      "swapon", "swapoff", "setdomainname", "sethostname"], "CAP_SYS_ADMIN"),
]
_NS_FLAGS = (CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
             CLONE_NEWPID, CLONE_NEWNET)


def default_profile() -> dict[str, Any]:
    """RuntimeDefault, as a Docker-format profile."""
    syscalls: list[dict[str, Any]] = []
    for names, cap in _BLOCKED:
        rule: dict[str, Any] = {"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM}
        if cap:
            rule["excludes"] = {"caps": [cap]}
        syscalls.append(rule)
    # clone may not create namespaces (one rule per flag: any set bit denies);
    # clone3 hides its flags in memory, so say ENOSYS and libc falls back to clone.
    for flag in _NS_FLAGS:
        syscalls.append({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM,
                         "args": [{"index": 0, "value": flag, "valueTwo": flag,
                                   "op": "SCMP_CMP_MASKED_EQ"}],
                         "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    syscalls.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS,
                     "excludes": {"caps": ["CAP_SYS_ADMIN"]}})
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
        ],
        "syscalls": syscalls,
    }


_OPS = {"SCMP_CMP_NE": libseccomp.CMP_NE, "SCMP_CMP_LT": libseccomp.CMP_LT,
        "SCMP_CMP_LE": libseccomp.CMP_LE, "SCMP_CMP_EQ": libseccomp.CMP_EQ,
        "SCMP_CMP_GE": libseccomp.CMP_GE, "SCMP_CMP_GT": libseccomp.CMP_GT,
        "SCMP_CMP_MASKED_EQ": libseccomp.CMP_MASKED_EQ}
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


def _action(name: str, errno_ret: int | None, where: str) -> int:
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return libseccomp.ACT_KILL_THREAD
    fixed = {"SCMP_ACT_KILL_PROCESS": libseccomp.ACT_KILL_PROCESS, "SCMP_ACT_TRAP": libseccomp.ACT_TRAP,
             "SCMP_ACT_ALLOW": libseccomp.ACT_ALLOW, "SCMP_ACT_LOG": libseccomp.ACT_LOG}
    if name in fixed:
        return fixed[name]
    if name == "SCMP_ACT_ERRNO":
        return libseccomp.act_errno(errno.EPERM if errno_ret is None else errno_ret)
    if name == "SCMP_ACT_TRACE":
        return libseccomp.act_trace(errno.EPERM if errno_ret is None else errno_ret)
    raise SpecError(f"{where}: seccomp action {name!r} is not supported; use SCMP_ACT_ALLOW, "
                    "SCMP_ACT_ERRNO, SCMP_ACT_KILL[_PROCESS|_THREAD], SCMP_ACT_TRAP, SCMP_ACT_LOG "
                    "or SCMP_ACT_TRACE")


def _arch_name(docker: str) -> str:
    return docker.removeprefix("SCMP_ARCH_").lower()


def _kernel_at_least(version: str) -> bool:
    def parts(v: str) -> tuple[int, ...]:
        return tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in v.split(".")[:2])
    return parts(os.uname().release) >= parts(version)


def _applies(rule: dict[str, Any], caps: set[str]) -> bool:
    arch = _GO_ARCH.get(platform.machine(), platform.machine())
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    if inc.get("caps") and not set(inc["caps"]) <= caps:
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if inc.get("minKernel") and not _kernel_at_least(inc["minKernel"]):
        return False
    if exc.get("caps") and set(exc["caps"]) & caps:
        return False
    if exc.get("arches") and arch in exc["arches"]:
        return False
    return not (exc.get("minKernel") and _kernel_at_least(exc["minKernel"]))


def build_filter(profile: dict[str, Any], cap_mask: int, where: str = "seccomp profile") -> libseccomp.Filter:
    """A Docker-format profile as a libseccomp filter, for a container holding `cap_mask`."""
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise SpecError(f"{where}: not a seccomp profile (no defaultAction)")
    caps = {name for name, nr in CAP_NUMBERS.items() if cap_mask >> nr & 1}
    native = platform.machine()
    archs = [_arch_name(a) for a in profile.get("architectures") or []]
    for entry in profile.get("archMap") or []:
        if _arch_name(entry.get("architecture", "")) == native:
            archs += [_arch_name(entry["architecture"])]
            archs += [_arch_name(a) for a in entry.get("subArchitectures") or []]
    flt = libseccomp.Filter(_action(profile["defaultAction"], profile.get("defaultErrnoRet"), where),
                            architectures=archs)
    for i, rule in enumerate(profile.get("syscalls") or []):
        here = f"{where}: syscalls[{i}]"
        if not _applies(rule, caps):
            continue
        names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
        action = _action(rule.get("action", ""), rule.get("errnoRet"), here)
        args = []
        for j, a in enumerate(rule.get("args") or []):
            if a.get("op") not in _OPS:
                raise SpecError(f"{here}.args[{j}]: unknown op {a.get('op')!r}; use one of {sorted(_OPS)}")
            args.append(libseccomp.ArgCmp(int(a["index"]), _OPS[a["op"]], int(a.get("value", 0)),
                                          int(a.get("valueTwo", 0))))
        for name in names:
            flt.rules.append(libseccomp.Rule(name, action, tuple(args)))
    return flt


_cache: dict[str, bytes] = {}


def load_localhost(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise SpecError(f"seccomp Localhost profile {path}: {e.strerror}; check the path") from None
    except json.JSONDecodeError as e:
        raise SpecError(f"seccomp Localhost profile {path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    if not isinstance(data, dict):
        raise SpecError(f"seccomp Localhost profile {path}: expected a JSON object")
    return data


def compile_for(seccomp: Seccomp, cap_mask: int, privileged: bool) -> bytes | None:
    """The BPF program for a container, or None when it runs unconfined."""
    if privileged or seccomp.type == SECCOMP_UNCONFINED:
        return None
    if seccomp.type == SECCOMP_LOCALHOST:
        path = seccomp.localhost_path or ""
        profile, where = load_localhost(path), f"seccomp Localhost profile {path}"
        key = hashlib.sha256(json.dumps([profile, cap_mask], sort_keys=True).encode()).hexdigest()
    else:  # the default profile only varies with the capabilities
        profile, where, key = None, "RuntimeDefault seccomp profile", f"default:{cap_mask}"
    if key not in _cache:
        try:
            _cache[key] = libseccomp.compile_filter(build_filter(profile or default_profile(), cap_mask, where))
        except OSError as e:
            raise SpecError(f"{where}: cannot compile: {e}") from None
    return _cache[key]
