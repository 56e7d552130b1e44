"""The container's PID 1, from fork to execve.

Runs as the shim's child in a fresh PID namespace, in the memory of a helper
it was started from (shim._spawn_pid1), until its execve. It must not
import anything (after pivot_root the interpreter finds no modules) and must
not rely on threads. Create-time work (namespaces, rootfs, cgroup once the
runtime has made it, pivot_root) happens first and is reported on the ready
pipe; then it waits for the start byte on the FIFO, drops privileges and execs.
"""

from __future__ import annotations

import os
import signal
import socket
from dataclasses import dataclass, field

from ..cgroups.common import write
from ..linux import SyscallsLike
from ..linux.constants import CLONE_NEWCGROUP, CLONE_NEWNS, NAMESPACE_FLAGS
from . import users
from .console import make_controlling, open_container_pty
from .rootfs import RootfsPlan, StagedMounts, mount_cgroup_fs, mount_rootfs, pivot
from .security import Credentials, apply_rlimits, narrow_bounding_set, switch_identity

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class InitError(Exception):
    """A create-time failure, reported to the runtime with its message."""


@dataclass
class InitConfig:
    args: list[str]
    env: dict[str, str]
    working_dir: str
    hostname: str | None
    procs_files: list[str]  # cgroup.procs of the container's cgroup, every hierarchy
    new_namespaces: list[str]  # kinds to create beyond mnt, cgroup (pid is done by the shim)
    rootfs: RootfsPlan
    readonly_rootfs: bool
    cred: Credentials
    extra_env: dict[str, str] = field(default_factory=dict)
    user_name: str | None = None  # resolved after pivot_root, in the image's /etc/passwd
    tty: bool = False  # stdio is a pty opened in the container's devpts; the shim gets the master


def find_executable(name: str, path: str) -> str:
    """PATH lookup as execvp does, but beforehand, so a missing binary fails at create."""
    candidates = [name] if "/" in name else [os.path.join(d or ".", name) for d in path.split(":")]
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    where = name if "/" in name else f"{name} in PATH={path}"
    raise InitError(f"executable file not found: {where}; check the image and the command")


def home_dir(uid: int) -> str:
    """The user's home from the container's /etc/passwd (read after pivot_root), else /."""
    try:
        with open("/etc/passwd") as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5] or "/"
    except OSError:
        pass
    return "/"


def setup(sys: SyscallsLike, cfg: InitConfig, start_fd: int = -1,
          staged: StagedMounts | None = None) -> tuple[str, dict[str, str]]:
    """Everything up to the wait for start; returns the executable and environment.

    With `start_fd`, the runtime makes the container's cgroup while this builds
    the rootfs, and says on it when the cgroup is there (see join_cgroup).
    `staged`: /proc and /dev built ahead of need (rootfs.stage_kernel_mounts).
    """
    sys.set_pdeathsig(signal.SIGKILL)  # never outlive the shim that reports our exit
    flags = CLONE_NEWNS
    for kind in cfg.new_namespaces:
        flags |= NAMESPACE_FLAGS[kind]
    sys.unshare(flags)
    if "net" in cfg.new_namespaces:
        sys.loopback_up()
    if "uts" in cfg.new_namespaces and cfg.hostname:
        sys.sethostname(cfg.hostname)
    mount_rootfs(sys, cfg.rootfs, staged)
    join_cgroup(sys, cfg.procs_files, start_fd)
    # The cgroup.procs files just joined are in the hierarchies mount_specs listed, in its order.
    mount_cgroup_fs(sys, cfg.rootfs, [os.path.dirname(p) for p in cfg.procs_files])
    pivot(sys, cfg.rootfs.root, cfg.readonly_rootfs)
    env = dict(cfg.env)
    env.setdefault("PATH", DEFAULT_PATH)
    if cfg.user_name:
        try:
            who = users.resolve(cfg.user_name, cfg.cred.groups)
        except users.UserError as e:
            raise InitError(str(e)) from None
        cfg.cred.uid, cfg.cred.gid, cfg.cred.groups = who.uid, who.gid, who.groups
        env.setdefault("HOME", who.home)
    env.setdefault("HOME", home_dir(cfg.cred.uid))
    for k, v in cfg.extra_env.items():
        env.setdefault(k, v)
    exe = find_executable(cfg.args[0], env["PATH"])
    apply_rlimits(sys, cfg.cred.rlimits)
    sys.chdir(cfg.working_dir)
    narrow_bounding_set(sys, cfg.cred)  # now rather than at start: it changes nothing we still need
    return exe, env


def join_cgroup(sys: SyscallsLike, procs_files: list[str], start_fd: int = -1) -> None:
    """Move into the container's cgroup, then make the cgroup namespace rooted there.

    The runtime writes "c" on the start FIFO once it has made the cgroup (in
    parallel with our rootfs: ~1.5 ms of mkdirs on cgroup v1), anything else
    when it could not; "s" (start) comes later on the same FIFO.
    """
    if start_fd >= 0:
        word = os.read(start_fd, 1)
        if word != b"c":
            raise InitError("the runtime could not make the container's cgroup" if word else
                            "the runtime went away before making the container's cgroup")
    for procs in procs_files:  # "0" is the writer itself
        write(procs, "0")
    sys.unshare(CLONE_NEWCGROUP)


def reset_signals() -> None:
    """Python ignores SIGPIPE and SIGXFSZ; an exec'd program must not inherit that
    (`yes | head` would never end by SIGPIPE)."""
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def finish(sys: SyscallsLike, cfg: InitConfig, exe: str, env: dict[str, str]) -> None:
    """At start: after setup() and reset_signals(), the rest of the way to execve."""
    if cfg.tty:
        make_controlling(0)
    switch_identity(sys, cfg.cred)
    sys.execve(exe, cfg.args, env)


def run(sys: SyscallsLike, cfg: InitConfig, ready_fd: int, start_fd: int, hold_fd: int = -1,
        staged: StagedMounts | None = None) -> None:
    """The whole life of PID 1 before execve. Never returns in a real fork.

    `hold_fd` (a unix socket to the shim, optional) gets our mount namespace: the
    shim holds it until it has reported our exit, so tearing down the rootfs's
    mounts (RCU waits) happens after that rather than inside our exit.
    """
    try:
        exe, env = setup(sys, cfg, start_fd, staged)
        master = _tty_stdio(cfg.cred.uid) if cfg.tty else -1
    except Exception as e:
        _report(ready_fd, f"error {_describe(e)}")
        os._exit(1)
    if hold_fd >= 0:
        _send_mount_ns(hold_fd, master)
    if master >= 0:
        os.close(master)
    reset_signals()  # before the wait for start, not after it
    _report(ready_fd, "ok")
    os.close(ready_fd)
    if os.read(start_fd, 1) != b"s":  # anything else: the runtime gave up on us
        os._exit(1)
    os.close(start_fd)
    try:
        finish(sys, cfg, exe, env)
    except Exception as e:
        os.write(2, f"timonel: cannot start {cfg.args[0]}: {_describe(e)}\n".encode())
        os._exit(127 if isinstance(e, FileNotFoundError) else 126)


def _tty_stdio(uid: int) -> int:
    """Stdin, stdout and stderr on a new pty of the container; returns the master."""
    master, slave = open_container_pty(uid, None)
    for i in range(3):
        os.dup2(slave, i)
    os.close(slave)
    return master


def _send_mount_ns(hold_fd: int, pty_master: int = -1) -> None:
    """Our mount namespace and, for a tty container, the pty master (the shim's from now on)."""
    try:
        with socket.socket(fileno=hold_fd) as sock:
            ns = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
            try:
                socket.send_fds(sock, [b"mnt"], [ns] if pty_master < 0 else [ns, pty_master])
            finally:
                os.close(ns)
    except OSError:
        pass  # only defers work: the container runs the same without it


def _describe(e: BaseException) -> str:
    return str(e) if isinstance(e, InitError | OSError) else f"{type(e).__name__}: {e}"


def _report(fd: int, message: str) -> None:
    try:
        os.write(fd, (message.replace("\n", " ") + "\n").encode())
    except OSError:
        pass
