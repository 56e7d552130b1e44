"""The per-container shim: PID 1's parent for the container's whole life.

Forked by the fork server, it joins the sandbox's namespaces, unshares a PID
namespace, forks the container's init, then copies its stdout/stderr into
the CRI log, forwards signals, and when init exits records the exit code
and OOM kill in `exit.json`. It does not depend on the runtime process: a
restarted runtime finds it (and its container) through the state dir.
Single-threaded: a poll loop, with signals delivered through a wakeup fd.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import time
from typing import Any

from ..cgroups import Cgroups
from ..linux import SyscallsLike
from ..linux.constants import CLONE_NEWPID, NAMESPACE_FLAGS
from . import init
from .launch import init_config_from_dict
from .logs import LogWriter
from .state import proc_start_time, read_json, write_json

log = logging.getLogger(__name__)

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR2,
             signal.SIGWINCH)
REOPEN_LOG = signal.SIGUSR1
_DRAIN_SECONDS = 2.0
_MAX_REQUEST = 1 << 16


def main(sys: SyscallsLike, cgroups: Cgroups, state_dir: str, ready_fd: int, exited_fd: int = -1,
         prepared: bool = False) -> None:
    """The shim's life; ends with os._exit.

    `exited_fd` (optional) is closed as soon as exit.json is written, so the
    runtime that created us wakes without waiting for this process to end.
    `prepared`: spare() has already done the container-independent first steps.
    """
    try:
        if not prepared:
            _prepare(sys)
        _stdio(os.path.join(state_dir, "shim.log"))
        launch = read_json(os.path.join(state_dir, "launch.json"))
        if launch is None:
            raise RuntimeError(f"{state_dir}/launch.json is missing or unreadable")
        code = _supervise(sys, cgroups, state_dir, launch, ready_fd, exited_fd)
    except BaseException as e:
        try:
            os.write(ready_fd, f"error shim: {type(e).__name__}: {e}\n".encode())
        except OSError:
            pass
        log.exception("shim failed state_dir=%s", state_dir)
        code = 1
    os._exit(code)


def spare(sys: SyscallsLike, cgroups: Cgroups, requests: int) -> None:
    """A shim forked ahead of need by the fork server; ends with os._exit.

    Forking a Python process and its first steps in the child (copy-on-write
    faults) take 2-3 ms: done before a container is asked for, they are off
    CreateContainer's path. Waits for one request on `requests` (a
    SOCK_SEQPACKET socket): {"state_dir": ...} with the ready and exited pipes
    attached, then lives as main(); EOF (the runtime has gone) ends it.
    """
    try:
        _prepare(sys)
        with socket.socket(fileno=requests) as sock:
            msg, fds, _, _ = socket.recv_fds(sock, _MAX_REQUEST, 2)
    except BaseException:
        log.exception("spare shim failed before its request")
        os._exit(1)
    if not msg or len(fds) != 2:
        for fd in fds:
            os.close(fd)
        os._exit(0)
    main(sys, cgroups, json.loads(msg)["state_dir"], fds[0], fds[1], prepared=True)


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


def _supervise(sys: SyscallsLike, cgroups: Cgroups, state_dir: str, launch: dict[str, Any],
               ready_fd: int, exited_fd: int) -> int:
    cfg = init_config_from_dict(launch["init"])
    bpf_path = os.path.join(state_dir, "seccomp.bpf")
    if os.path.exists(bpf_path):
        with open(bpf_path, "rb") as f:
            cfg.cred.seccomp = f.read()
    logs = LogWriter(launch["log_path"], launch["log_max_size"], launch["log_max_files"])
    start_fd = os.open(os.path.join(state_dir, "start.fifo"), os.O_RDWR | os.O_CLOEXEC)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    for kind, path in launch["join"].items():
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            sys.setns(fd, NAMESPACE_FLAGS[kind])
        finally:
            os.close(fd)
    sys.unshare(CLONE_NEWPID)  # applies to our children: the next fork is PID 1

    pending: list[int] = []
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    for sig in (signal.SIGCHLD, REOPEN_LOG, *FORWARDED):
        signal.signal(sig, lambda signum, _frame: pending.append(signum))

    pid = os.fork()
    if pid == 0:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, REOPEN_LOG, *FORWARDED):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        if exited_fd >= 0:
            os.close(exited_fd)
        init.run(sys, cfg, ready_fd, start_fd)
        os._exit(1)
    for fd in (out_w, err_w, ready_fd, start_fd):
        os.close(fd)
    write_json(os.path.join(state_dir, "shim.json"), {
        "shim_pid": os.getpid(), "shim_start": proc_start_time(os.getpid()),
        "pid": pid, "pid_start": proc_start_time(pid)})

    streams = {out_r: "stdout", err_r: "stderr"}
    poller = select.poll()
    for fd in (*streams, wake_r):
        poller.register(fd, select.POLLIN)
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
        for fd, _ in events:
            if fd == wake_r:
                _drain(wake_r)
            elif fd in streams:
                data = os.read(fd, 65536)
                if data:
                    logs.write(streams[fd], data)
                else:
                    logs.flush(streams.pop(fd))
                    poller.unregister(fd)
                    os.close(fd)
        while pending:
            signum = pending.pop(0)
            if signum == REOPEN_LOG:
                logs.reopen()
            elif signum != signal.SIGCHLD and exit_status is None:
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
    os.waitpid(pid, 0)  # only now may the pid be reused: exit.json is written
    return 0


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
