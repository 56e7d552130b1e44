"""The per-container shim: PID 1's parent for the container's whole life.

Forked by the fork server, it joins the sandbox's namespaces, starts the
container's init in a new PID namespace (_spawn_pid1), then copies its stdout/stderr into
the CRI log, forwards signals, and when init exits records the exit code
and OOM kill in `exit.json`. It holds the container's stdin (a pipe, or the
master of a tty container's pty) and serves attach clients (attach.py). It
does not depend on the runtime process: a restarted runtime finds it (and
its container) through the state dir. Single-threaded: a poll loop, with signals delivered through a wakeup fd.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..cgroups import Cgroups
from ..linux import SyscallsLike
from ..linux.constants import CLONE_NEWNS, CLONE_NEWPID, NAMESPACE_FLAGS
from . import init
from .attach import AttachServer
from .init import InitConfig
from .launch import init_config_from_dict
from .logs import LogWriter
from .rootfs import StagedMounts, stage_kernel_mounts
from .state import proc_start_time, read_json, write_json

log = logging.getLogger(__name__)

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR2,
             signal.SIGWINCH)
REOPEN_LOG = signal.SIGUSR1
_DRAIN_SECONDS = 2.0
_MAX_REQUEST = 1 << 16
_HELLO = b"pid1"
_UCRED = struct.Struct("iII")  # struct ucred: pid, uid, gid
_MAX_FD = 1 << 20


@dataclass
class EarlyInit:
    """The container's init, forked by a spare shim before the container was known."""

    pid: int
    control: socket.socket  # its mount namespace (and a tty's pty master) comes back here
    out_r: int
    err_r: int
    helper: int  # the process it was started from (see _spawn_pid1), ours to reap


def main(sys: SyscallsLike, cgroups: Cgroups, state_dir: str, ready_fd: int, exited_fd: int = -1,
         early: EarlyInit | None = None, stdin_w: int = -1) -> None:
    """The shim's life; ends with os._exit.

    `exited_fd` (optional) is closed as soon as exit.json is written, so the
    runtime that created us wakes without waiting for this process to end.
    `early`: spare() has done the container-independent first steps and forked init,
    which the runtime has handed the container (and the ready pipe: `ready_fd` is -1);
    `stdin_w` is then the write end of the container's stdin pipe, if it has one.
    """
    try:
        if early is None:
            _prepare(sys)
        launch = _read_launch(state_dir)
        if early is None:
            stdio = launch.get("stdio") or {}
            stdin = os.pipe2(os.O_CLOEXEC) if stdio.get("stdin") and not stdio.get("tty") else (-1, -1)
        else:
            stdin = (-1, stdin_w)
        _stdio(os.path.join(state_dir, "shim.log"))
        code = _supervise(sys, cgroups, state_dir, launch, ready_fd, exited_fd, early, stdin)
    except BaseException as e:
        if ready_fd >= 0:
            try:
                os.write(ready_fd, f"error shim: {type(e).__name__}: {e}\n".encode())
            except OSError:
                pass
        log.exception("shim failed state_dir=%s", state_dir)
        code = 1
    os._exit(code)


def spare(sys: SyscallsLike, cgroups: Cgroups, requests: int, init_requests: int, staging: int = -1) -> None:
    """A shim forked ahead of need by the fork server (see spares.py); ends with os._exit.

    Forks the container's init at once, in a new PID namespace; the init builds a
    default container's /proc and /dev while it waits. The runtime hands the
    container to both: to the init on `init_requests` (the state dir, with the
    ready pipe and a stdin pipe's read end), to this shim on `requests`
    ({"state_dir": ...}, with the exited pipe and, if the container has stdin,
    the write end of its pipe); then this lives as main(). EOF (the runtime has gone, or dropped
    us) ends both. `staging`: a mount namespace for the init to stage in (rootfs.staging_namespace),
    or -1: a copy of ours.
    """
    try:
        _prepare(sys)
        early = _fork_early_init(sys, requests, init_requests, staging)
        os.close(init_requests)
        if staging >= 0:
            os.close(staging)
        with socket.socket(fileno=requests) as sock:
            msg, fds, _, _ = socket.recv_fds(sock, _MAX_REQUEST, 2)
    except BaseException:
        log.exception("spare shim failed before its request")
        os._exit(1)
    if not msg or not fds:
        for fd in fds:
            os.close(fd)
        os._exit(0)  # the early init dies with us (PR_SET_PDEATHSIG)
    main(sys, cgroups, json.loads(msg)["state_dir"], -1, fds[0], early, fds[1] if len(fds) > 1 else -1)


def _read_launch(state_dir: str) -> dict[str, Any]:
    launch = read_json(os.path.join(state_dir, "launch.json"))
    if launch is None:
        raise RuntimeError(f"{state_dir}/launch.json is missing or unreadable")
    return launch


def _fork_early_init(sys: SyscallsLike, requests: int, init_requests: int, staging: int = -1) -> EarlyInit:
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)

    def pid1() -> None:
        sys.set_pdeathsig(signal.SIGKILL)
        _init_stdio(out_w, err_w)
        _early_init(sys, init_requests, theirs, _stage(sys, staging))

    pid, helper = _spawn_pid1(sys, pid1, ours, theirs, not_for_pid1=(requests,))
    os.close(out_w)
    os.close(err_w)
    return EarlyInit(pid, ours, out_r, err_r, helper)


def _spawn_pid1(sys: SyscallsLike, run: Callable[[], None], control: socket.socket,
                theirs: socket.socket, not_for_pid1: tuple[int, ...] = ()) -> tuple[int, int]:
    """Start the container's PID 1, in a new PID namespace and as our child, running `run`
    until it execs (an exception in `run` is written to its stderr and ends it); returns
    (its pid, the helper's pid) once it has said hello on `theirs`.

    A helper process makes the PID namespace and starts PID 1 from it sharing its memory
    (Syscalls.vfork_sibling): PID 1's execve then lets go of that memory instead of tearing
    down a forked interpreter's page tables (~1.2 ms here, on the way from start to the
    workload's exit); the helper pays that as it exits, on the other CPU. PID 1's pid as we
    see it comes with its hello (SO_PASSCRED: the kernel writes the sender's pid in the
    receiver's PID namespace). The helper holds every descriptor PID 1 gets until PID 1's
    execve: `control` and `not_for_pid1` (ours alone: their peers must see EOF once we are
    gone, e.g. the runtime handing a container to a spare whose shim was killed) are closed
    in it first.
    """
    def hello_then_run() -> None:
        theirs.send(_HELLO)
        run()

    control.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    helper = sys.fork_bare()  # we are single-threaded
    if helper == 0:
        try:
            control.close()
            for fd in not_for_pid1:
                os.close(fd)
            sys.set_pdeathsig(signal.SIGKILL)
            sys.unshare(CLONE_NEWPID)  # applies to our children: the next one is PID 1
            sys.vfork_sibling(hello_then_run)
        except BaseException as e:
            try:
                os.write(2, f"timonel: cannot start the container's init: {type(e).__name__}: {e}\n".encode())
            except OSError:
                pass
        # PID 1 has exec'd or exited, in our memory: no more Python than this. Our copies of
        # its pipes close before exit's page-table teardown, which their readers need not wait for.
        os.closerange(0, _MAX_FD)
        os._exit(0)
    theirs.close()
    try:
        msg, anc, _, _ = control.recvmsg(len(_HELLO), socket.CMSG_SPACE(_UCRED.size))
        control.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 0)
    except BaseException:
        os.kill(helper, signal.SIGKILL)
        os.waitpid(helper, 0)
        raise
    for level, kind, data in anc:
        if msg == _HELLO and level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            return _UCRED.unpack(data[:_UCRED.size])[0], helper
    os.waitpid(helper, 0)
    raise RuntimeError("the container's init ended before it started; see the shim's log")


def _stage(sys: SyscallsLike, staging: int = -1) -> StagedMounts | None:
    """/proc and /dev for a default container, built in a throwaway mount namespace (ours
    is made at the request, from the host's mounts as they are then): a copy of `staging`
    (rootfs.staging_namespace), else of ours. None when the kernel cannot (open_tree and
    move_mount are Linux 5.2): the init then builds them itself, as for containers that
    want them otherwise. Our stderr is the container's log, so a failure here is not
    written anywhere; it only costs time."""
    own = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if staging >= 0:
            try:
                sys.setns(staging, CLONE_NEWNS)
            except OSError:
                staging = -1  # a copy of ours, then
            else:
                os.close(staging)
        sys.unshare(CLONE_NEWNS)
        try:
            return stage_kernel_mounts(sys)
        except OSError:
            return None
        finally:
            sys.setns(own, CLONE_NEWNS)  # an error here ends this init: the spare is not used
    finally:
        os.close(own)


def _early_init(sys: SyscallsLike, requests: int, hold: socket.socket, staged: StagedMounts | None = None) -> None:
    """In the early init: wait for the state dir and ready pipe, join the pod, then run as
    init; our mount namespace goes back to the shim on `hold`."""
    with socket.socket(fileno=requests) as sock:
        # The runtime holds the other end of `requests`, not the shim: a shim that died before
        # our PR_SET_PDEATHSIG (or at any time before the request) shows as EOF on `hold`, and
        # an init left without its shim must not take a container.
        ready, _, _ = select.select([sock, hold], [], [])
        if hold in ready:
            os._exit(1)
        msg, fds, _, _ = socket.recv_fds(sock, _MAX_REQUEST, 2)
    if not msg or not fds:
        os._exit(1)
    state_dir, ready_fd = msg.decode(), fds[0]
    if len(fds) > 1:  # the container has stdin: the read end of the shim's pipe
        os.dup2(fds[1], 0)
        os.close(fds[1])
    try:
        launch = read_json(os.path.join(state_dir, "launch.json"))
        if launch is None:
            raise RuntimeError(f"{state_dir}/launch.json is missing or unreadable")
        cfg = _init_config(state_dir, launch)
        start_fd = os.open(os.path.join(state_dir, "start.fifo"), os.O_RDWR | os.O_CLOEXEC)
        _join(sys, launch["join"])  # the shim did not: it forked us before knowing the pod
    except Exception as e:
        try:
            os.write(ready_fd, f"error {e}\n".encode())
        except OSError:
            pass
        os._exit(1)
    init.run(sys, cfg, ready_fd, start_fd, hold.detach(), staged)  # it sends our mount namespace back


def _prepare(sys: SyscallsLike) -> None:
    os.setsid()
    sys.set_name("timonel-shim")


def _stdio(log_file: str) -> None:
    null = os.open("/dev/null", os.O_RDONLY)
    out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)


def _init_config(state_dir: str, launch: dict[str, Any]) -> InitConfig:
    cfg = init_config_from_dict(launch["init"])
    bpf_path = os.path.join(state_dir, "seccomp.bpf")
    if os.path.exists(bpf_path):
        with open(bpf_path, "rb") as f:
            cfg.cred.seccomp = f.read()
    return cfg


def _join(sys: SyscallsLike, join: dict[str, str]) -> None:
    for kind, path in join.items():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                sys.setns(fd, NAMESPACE_FLAGS[kind])
            finally:
                os.close(fd)
        except OSError as e:
            raise OSError(e.errno, f"joining the {kind} namespace {path}: {os.strerror(e.errno or 0)}; "
                                   "is the pod sandbox still there?") from None


def _init_stdio(out_w: int, err_w: int, in_r: int = -1) -> None:
    null = os.open("/dev/null", os.O_RDONLY) if in_r < 0 else in_r
    os.dup2(null, 0)
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)


def _supervise(sys: SyscallsLike, cgroups: Cgroups, state_dir: str, launch: dict[str, Any],
               ready_fd: int, exited_fd: int, early: EarlyInit | None = None,
               stdin: tuple[int, int] = (-1, -1)) -> int:
    """`early`: the spare's init, which has the state dir already; `stdin`: the container's
    stdin pipe, if it has one."""
    logs = LogWriter(launch["log_path"], launch["log_max_size"], launch["log_max_files"])
    stdio = launch.get("stdio") or {}
    in_r, in_w = stdin
    if early is not None:
        pid, out_r, err_r, hold, helper = early.pid, early.out_r, early.err_r, early.control, early.helper
    else:
        pid, out_r, err_r, hold, helper = _fork_init(sys, state_dir, launch, ready_fd, exited_fd, in_r)
    if in_r >= 0:
        os.close(in_r)

    pending: list[int] = []
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    for sig in (signal.SIGCHLD, REOPEN_LOG, *FORWARDED):
        signal.signal(sig, lambda signum, _frame: pending.append(signum))
    write_json(os.path.join(state_dir, "shim.json"), {
        "shim_pid": os.getpid(), "shim_start": proc_start_time(os.getpid()),
        "pid": pid, "pid_start": proc_start_time(pid)})

    streams = {out_r: "stdout", err_r: "stderr"}
    poller = select.poll()
    for fd in (*streams, wake_r, hold.fileno()):
        poller.register(fd, select.POLLIN)
    attach = AttachServer(state_dir, poller, in_w, bool(stdio.get("stdin")), bool(stdio.get("stdin_once")),
                          bool(stdio.get("tty")))
    held_ns = -1  # init's mount namespace, closed only after its exit is reported
    exit_status: os.waitid_result | None = None
    drain_deadline = 0.0
    while streams or exit_status is None:
        if exit_status is None:
            exit_status = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            if exit_status is not None:
                drain_deadline = time.monotonic() + _DRAIN_SECONDS
        if exit_status is not None:
            left = drain_deadline - time.monotonic()
            if left <= 0 or not streams:
                break
            events = poller.poll(left * 1000)
        else:
            events = poller.poll()
        for fd, ev in events:
            if fd == wake_r:
                _drain(wake_r)
            elif fd == hold.fileno():
                try:
                    _, got, _, _ = socket.recv_fds(hold, 16, 2)
                except OSError:
                    got = []
                held_ns = got[0] if got else -1
                if len(got) > 1:  # a tty container: its output is the pty's, logged as stdout
                    streams[got[1]] = "stdout"
                    poller.register(got[1], select.POLLIN)
                    attach.set_master(got[1])
                poller.unregister(fd)
                hold.close()
            elif fd in streams:
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:  # the pty master is non-blocking (attach writes to it)
                    continue
                except OSError:  # EIO: the pty's last slave holder has gone
                    data = b""
                if data:
                    logs.write(streams[fd], data)
                    attach.output(streams[fd], data)
                else:
                    logs.flush(streams.pop(fd))
                    poller.unregister(fd)
                    os.close(fd)
                    if fd == attach.master:  # its number may be reused: no more resizes on it
                        attach.master = -1
            elif attach.owns(fd):
                attach.handle(fd, ev)
        while pending:
            signum = pending.pop(0)
            if signum == REOPEN_LOG:
                logs.reopen()
            elif signum == signal.SIGCHLD:
                if helper and os.waitpid(helper, os.WNOHANG)[0]:
                    helper = 0  # gone at PID 1's execve; one missed here is reaped at the end
            elif exit_status is None:
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    pass
    logs.close()
    assert exit_status is not None
    code = exit_status.si_status
    if exit_status.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
        code += 128
    try:
        oom = cgroups.oom_kill_count(launch["cgroup"]) > 0
    except OSError:
        oom = False
    reason = "OOMKilled" if oom else ("Completed" if code == 0 else "Error")
    write_json(os.path.join(state_dir, "exit.json"), {
        "exit_code": code, "reason": reason, "oom_killed": oom, "message": "",
        "finished_at": time.time_ns()})
    if exited_fd >= 0:
        os.close(exited_fd)
    attach.finish(code)
    os.waitpid(pid, 0)  # only now may the pid be reused: exit.json is written
    if helper:
        os.waitpid(helper, 0)
    if held_ns >= 0:
        os.close(held_ns)  # the rootfs's mounts go now, after the runtime has been told
    hold.close()
    return 0


def _fork_init(sys: SyscallsLike, state_dir: str, launch: dict[str, Any], ready_fd: int,
               exited_fd: int, in_r: int = -1) -> tuple[int, int, int, socket.socket, int]:
    """Start the container's init in a new PID namespace: (pid, stdout reader, stderr reader,
    the socket its mount namespace comes back on, the helper to reap)."""
    cfg = _init_config(state_dir, launch)
    start_fd = os.open(os.path.join(state_dir, "start.fifo"), os.O_RDWR | os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    hold, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    _join(sys, launch["join"])

    def pid1() -> None:
        _init_stdio(out_w, err_w, in_r)
        init.run(sys, cfg, ready_fd, start_fd, theirs.detach())

    pid, helper = _spawn_pid1(sys, pid1, hold, theirs, not_for_pid1=(exited_fd,) if exited_fd >= 0 else ())
    for fd in (out_w, err_w, ready_fd, start_fd):
        os.close(fd)
    return pid, out_r, err_r, hold, helper


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
