"""Running another process in a running container (nsenter-like).

A helper forked by the fork server joins the container's cgroup, then its
namespaces (mount last), forks (a PID namespace applies to children), and
the grandchild drops privileges like init and execs. The helper stays in the
host PID namespace, reports `pid N` and `exit N` on a status pipe, and reaps.
"""

from __future__ import annotations

# socket.send_fds imports array lazily; once in the container's mount namespace
# no import can succeed, so have it loaded already.
import array  # noqa: F401
import fcntl
import os
import select
import signal
import socket
import termios
import time
from dataclasses import dataclass
from typing import Any

from ..cgroups.common import write
from ..linux import SyscallsLike
from ..linux.constants import NAMESPACE_FLAGS
from . import users
from .console import open_container_pty, set_winsize
from .init import find_executable, home_dir, reset_signals
from .security import Credentials, apply_rlimits, drop_privileges
from .state import alive

_ORDER = ("ipc", "uts", "net", "pid", "cgroup", "mnt")  # mnt last: it changes our root


def helper(sys: SyscallsLike, args: dict[str, Any], stdio: list[int], status_fd: int) -> None:
    """Runs in the fork server's child; ends with os._exit.

    `status_fd` is a unix stream socket: lines `pid N`, `exit N` or `error ...`,
    and with a tty, first `pty` carrying the pty master as SCM_RIGHTS.
    """
    status = socket.socket(fileno=status_fd)

    def say(line: str) -> None:
        try:
            status.sendall(f"{line}\n".encode())
        except OSError:  # the caller stopped listening; still reap our child below
            pass

    try:
        os.setsid()
        if not alive(args["pid"], args["pid_start"]):
            raise RuntimeError("the container is not running")
        seccomp = None
        if args.get("seccomp_path"):
            with open(args["seccomp_path"], "rb") as f:
                seccomp = f.read()
        ns_fds = [(os.open(f"/proc/{args['pid']}/ns/{k}", os.O_RDONLY | os.O_CLOEXEC), k) for k in _ORDER]
        for procs in args["procs_files"]:
            write(procs, "0")
        for fd, kind in ns_fds:
            sys.setns(fd, NAMESPACE_FLAGS[kind])
            os.close(fd)
        env = dict(args["env"])
        if args.get("user_name"):  # as init did: the image's /etc/passwd decides
            who = users.resolve(args["user_name"], args["groups"])
            args.update(uid=who.uid, gid=who.gid, groups=who.groups)
            env.setdefault("HOME", who.home)
        env.setdefault("HOME", home_dir(args["uid"]))  # from the container's /etc/passwd
        exe = find_executable(args["args"][0], env.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"))
        if args.get("tty"):
            size = args.get("tty_size")
            master, slave = open_container_pty(args["uid"], tuple(size) if size else None)
            socket.send_fds(status, [b"pty\n"], [master])
            os.close(master)
            stdio = [slave, slave, slave]
    except Exception as e:
        say(f"error {e}")
        os._exit(1)
    cred = Credentials(uid=args["uid"], gid=args["gid"], groups=args["groups"], caps=args["caps"],
                       no_new_privs=args["no_new_privs"], seccomp=seccomp,
                       rlimits=[tuple(r) for r in args["rlimits"]])  # type: ignore[misc]
    pid = sys.fork_bare()  # the exec helper is single-threaded
    if pid == 0:
        try:
            for i, fd in enumerate(stdio):
                os.dup2(fd, i)
            if args.get("tty"):  # a controlling terminal needs a session of our own
                os.setsid()
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            # Only stdio crosses into the command: received descriptors are not
            # close-on-exec, and a kept pipe or the status socket would outlive it.
            os.closerange(3, 1 << 20)
            os.chdir(args.get("cwd") or "/")
            apply_rlimits(sys, cred.rlimits)
            drop_privileges(sys, cred)
            reset_signals()
            sys.execve(exe, args["args"], env)
        except Exception as e:
            os.write(2, f"timonel exec: {args['args'][0]}: {e}\n".encode())
        os._exit(126)
    for fd in set(stdio):
        os.close(fd)
    say(f"pid {pid}")
    while True:
        try:
            res = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
            break
        except InterruptedError:
            continue
    code = res.si_status + (128 if res.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else 0) if res else 255
    say(f"exit {code}")
    os.waitpid(pid, 0)
    os._exit(0)


@dataclass
class ExecResult:
    exit_code: int
    stdout: bytes
    stderr: bytes
    timed_out: bool = False


class ExecProcess:
    """A process running in a container, as the runtime sees it.

    With a tty, `master` is the pty's master (read output, write input,
    `resize`); otherwise `stdin`/`stdout`/`stderr` are pipe ends (or None).
    """

    def __init__(self, status: socket.socket, stdin: int | None, stdout: int | None, stderr: int | None,
                 tty: bool = False):
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.master: int | None = None
        self._status = status
        self._buf = b""
        self.pid = 0
        self.exit_code: int | None = None
        line = self._line(timeout=30.0)
        if tty and line == "pty":
            line = self._line(timeout=30.0)
        if line is None or not line.startswith("pid "):
            self.close()
            raise RuntimeError(f"exec failed: {line[6:] if line and line.startswith('error ') else line}")
        self.pid = int(line[4:])

    def _line(self, timeout: float | None) -> str | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            wait = None if deadline is None else max(deadline - time.monotonic(), 0)
            ready, _, _ = select.select([self._status], [], [], wait)
            if not ready:
                return None
            chunk, fds, _, _ = socket.recv_fds(self._status, 4096, 1)
            for fd in fds:  # the pty master travels with the "pty" line
                self.master = fd
            if not chunk:
                return None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None if still running after `timeout` seconds."""
        if self.exit_code is None:
            line = self._line(timeout)
            if line is not None and line.startswith("exit "):
                self.exit_code = int(line[5:])
            elif line is None and timeout is None:
                self.exit_code = 255  # the helper died without reporting
        return self.exit_code

    def kill(self, sig: int = signal.SIGKILL) -> None:
        # The helper reaps only after reporting the exit, so until then the pid is ours.
        if self.exit_code is None and self.pid:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def resize(self, rows: int, cols: int) -> None:
        if self.master is not None:
            set_winsize(self.master, rows, cols)

    def close(self) -> None:
        for fd in (self.stdin, self.stdout, self.stderr, self.master):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._status.close()
        self.stdin = self.stdout = self.stderr = self.master = None


def collect(proc: ExecProcess, timeout: float, limit: int = 16 << 20) -> ExecResult:
    """Read a non-tty process' output to the end, killing it after `timeout` seconds."""
    out: dict[int, bytearray] = {}
    fds = [fd for fd in (proc.stdout, proc.stderr) if fd is not None]
    for fd in fds:
        out[fd] = bytearray()
    deadline = time.monotonic() + timeout
    timed_out = False
    while fds:
        left = deadline - time.monotonic()
        if left <= 0:
            if timed_out:
                # Killed and still open: a background child holds the pipes.
                break
            timed_out = True
            proc.kill()
            deadline = time.monotonic() + 5.0
        ready, _, _ = select.select(fds, [], [], max(left, 0.05))
        for fd in ready:
            chunk = os.read(fd, 65536)
            if chunk:
                if len(out[fd]) < limit:
                    out[fd] += chunk[: limit - len(out[fd])]
            else:
                fds.remove(fd)
    code = proc.wait(max(deadline - time.monotonic(), 1.0))
    if code is None:
        proc.kill()
        timed_out = True
        code = proc.wait(5.0)
    result = ExecResult(code if code is not None else 255,
                        bytes(out.get(proc.stdout or -1, b"")), bytes(out.get(proc.stderr or -1, b"")),
                        timed_out)
    proc.close()
    return result
