"""The streaming verbs of `timonel runtime`: run, exec, attach, logs.

Logs are read from the container's CRI log file on this node (the path its
status reports), as crictl does; exec and attach go through the runtime's Exec
and Attach streams.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

from timonel.cli.failures import EXIT_CONFIG, EXIT_USAGE, Failure

_SIZE = re.compile(r"^(\d+)([kmgKMG]i?)?[bB]?$")
_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}
OOM_EXIT = 137


def parse_bytes(text: str) -> int:
    """`32000000`, `32m`, `32Mi`, `1g`: bytes (k/m/g are powers of 1000, ki/mi/gi of 1024)."""
    m = _SIZE.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: give bytes, e.g. 32000000, 32m or 32Mi")
    return int(m.group(1)) * _UNITS[(m.group(2) or "").lower()]


def _command(cmd: list[str]) -> list[str]:
    return cmd[1:] if cmd[:1] == ["--"] else cmd


# -- logs --

class LogFollower:
    """Reads a CRI log file as it grows (and across a rotation), yielding (stream, bytes)."""

    def __init__(self, path: str):
        self.path = path
        self._f: BinaryIO | None = None
        self._ino = 0
        self._buf = b""

    def _open(self) -> bool:
        try:
            f = open(self.path, "rb")  # noqa: SIM115 - kept open across calls
        except FileNotFoundError:
            return False
        self._f, self._ino = f, os.fstat(f.fileno()).st_ino
        return True

    def read(self) -> Iterator[tuple[str, bytes]]:
        """What was appended since the last call."""
        while self._f is not None or self._open():
            f = self._f
            assert f is not None
            chunk = f.read(65536)
            if chunk:
                self._buf += chunk
                yield from self._lines()
                continue
            try:  # rotated: the old file is read to its end, then the new one
                rotated = os.stat(self.path).st_ino != self._ino
            except FileNotFoundError:
                rotated = False
            if not rotated:
                return
            f.close()
            self._f = None

    def _lines(self) -> Iterator[tuple[str, bytes]]:
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            parts = line.split(b" ", 3)
            if len(parts) < 4 and not (len(parts) == 3 and parts[2] in (b"F", b"P")):
                continue  # not a CRI log line
            stream, tag = parts[1].decode(errors="replace"), parts[2]
            content = parts[3] if len(parts) == 4 else b""
            yield stream, content + (b"\n" if tag == b"F" else b"")

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _write(stream: str, data: bytes) -> None:
    out = sys.stderr.buffer if stream == "stderr" else sys.stdout.buffer
    out.write(data)
    out.flush()


def cmd_logs(args: argparse.Namespace) -> int:
    from timonel.cli.runtime_cmd import connect
    from timonel.node_agent.runtime.api import runtime_pb2 as pb

    with connect(args) as c:
        st = c.container_status(args.id).status
        follower = LogFollower(st.log_path)
        try:
            lines = list(follower.read())
            for stream, data in lines[-args.tail:] if args.tail >= 0 else lines:
                _write(stream, data)
            while args.follow and st.state in (pb.CONTAINER_CREATED, pb.CONTAINER_RUNNING):
                st = c.wait_container(st.id, timeout=1)
                for stream, data in follower.read():
                    _write(stream, data)
            for stream, data in follower.read() if args.follow else ():
                _write(stream, data)
        finally:
            follower.close()
    return 0


# -- exec --

def _terminal_size() -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return None
    return size.lines, size.columns


@contextlib.contextmanager
def _raw_terminal(enabled: bool) -> Iterator[None]:
    """The local terminal in raw mode, so keys go to the remote one as typed."""
    if not enabled or not os.isatty(0):
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(0)
    try:
        tty.setraw(0)
        yield
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)


def _pump_stdin(session: Any) -> None:
    while True:
        try:
            data = os.read(0, 32768)
        except OSError:
            data = b""
        if not data:
            session.close_stdin()
            return
        session.send(data)


def cmd_exec(args: argparse.Namespace) -> int:
    from timonel.cli.runtime_cmd import connect

    cmd = _command(args.cmd)
    if not cmd:
        raise Failure("USAGE", "exec: no command given", "timonel runtime exec ID -- CMD [ARGS...]", EXIT_USAGE)
    with connect(args) as c:
        size = _terminal_size() if args.tty else None
        session = c.exec(args.id, cmd, tty=args.tty, stdin=args.interactive, size=size)
        _interact(session, args.interactive, args.tty)
    return session.exit_code if session.exit_code is not None else 255


def _interact(session: Any, interactive: bool, tty: bool) -> None:
    """Our stdin (and terminal size) to the session, its output to ours, until it ends."""
    if interactive:
        threading.Thread(target=_pump_stdin, args=(session,), daemon=True).start()
    if tty:
        def on_winch(*_: object) -> None:
            now = _terminal_size()
            if now:
                session.resize(*now)

        signal.signal(signal.SIGWINCH, on_winch)
    with _raw_terminal(tty and interactive):
        for stream, data in session:
            _write(stream, data)


def cmd_attach(args: argparse.Namespace) -> int:
    """The container's own stdio; exits with its code if it ended while attached, else 0."""
    from timonel.cli.runtime_cmd import connect

    with connect(args) as c:
        size = _terminal_size() if args.tty else None
        session = c.attach(args.id, stdin=args.interactive, tty=args.tty, stderr=not args.tty, size=size)
        _interact(session, args.interactive, args.tty)
    return session.exit_code or 0


# -- run --

def cmd_run(args: argparse.Namespace) -> int:
    import grpc

    from timonel.cli.runtime_cmd import connect
    from timonel.node_agent.runtime.api import runtime_pb2 as pb

    if args.cpus < 0 or args.memory < 0:
        raise Failure("BAD_FLAG", "--cpus and --memory must not be negative", "", EXIT_CONFIG)
    env = []
    for item in args.env:
        key, sep, value = item.partition("=")
        if not key or not sep:
            raise Failure("BAD_FLAG", f"--env {item!r}: give KEY=VALUE", "", EXIT_CONFIG)
        env.append(pb.KeyValue(key=key, value=value))
    token = secrets.token_hex(4)
    sandbox = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=f"run-{token}", namespace="timonel-run", uid=token),
        hostname=f"run-{token}",
        labels={"timonel.io/run": "true"},
        linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))))
    resources = pb.LinuxContainerResources(memory_limit_in_bytes=args.memory, pids_limit=args.pids_limit)
    if args.cpus:
        resources.cpu_period = 100_000
        resources.cpu_quota = max(int(args.cpus * 100_000), 1000)
    security = pb.LinuxContainerSecurityContext(
        no_new_privs=True, seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault),
        namespace_options=pb.NamespaceOption(network=pb.POD, pid=pb.CONTAINER, ipc=pb.POD))
    if args.user is not None:
        security.run_as_user.value = args.user
    config = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="main"), image=pb.ImageSpec(image=args.image),
        command=_command(args.cmd), envs=env,
        linux=pb.LinuxContainerConfig(resources=resources, security_context=security))
    with connect(args) as c:
        if not c.image_status(args.image).HasField("image"):
            print(f"pulling {args.image} ...", file=sys.stderr, flush=True)
            c.pull_image(args.image)
        sid = c.run_sandbox(sandbox)
        try:
            cid = c.create_container(sid, config, sandbox)
            c.start_container(cid)
            status = _stream_until_exit(c, cid)
        except KeyboardInterrupt:
            with contextlib.suppress(grpc.RpcError):
                c.stop_sandbox(sid)
            return 130
        finally:
            with contextlib.suppress(grpc.RpcError):
                c.stop_sandbox(sid)
            c.remove_sandbox(sid)
    if status.reason == "OOMKilled":
        print(f"timonel: the container was killed for exceeding its memory limit ({args.memory} bytes)",
              file=sys.stderr)
        return OOM_EXIT
    return status.exit_code


def _stream_until_exit(c: Any, cid: str) -> Any:
    """Print the container's output as it comes; its final status."""
    log_path = c.container_status(cid).status.log_path
    done: dict[str, Any] = {}

    def wait() -> None:
        try:
            done["status"] = c.wait_container(cid)
        except BaseException as e:
            done["error"] = e

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    follower = LogFollower(log_path)
    try:
        while waiter.is_alive():
            for stream, data in follower.read():
                _write(stream, data)
            waiter.join(0.05)
        for stream, data in follower.read():
            _write(stream, data)
    finally:
        follower.close()
    if "error" in done:
        raise done["error"]
    deadline = time.monotonic() + 5
    status = done["status"]
    while not status.finished_at and time.monotonic() < deadline:  # exit.json lands just after
        time.sleep(0.01)
        status = c.container_status(cid).status
    return status
