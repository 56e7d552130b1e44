"""The e2e fixture: a whole cluster from `timonel up`, driven by the real kubectl.

`up_cluster` (module-scoped) runs `timonel up` in a fresh temp dir exactly as
a user does, with the offline busybox image in DIR/images, and waits for it
to print that it is up. Each cluster gets its own port, node name, bridge,
pod CIDR and runtime socket, so two test runs on one machine do not collide.
Tear-down sends SIGTERM and asserts that `up` exits 0 within 60 s.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from tests.integration.agent.agent_harness import wait_for
from tests.integration.runtime.rtsvc_daemon import load_busybox_module
from timonel.api.kubeconfig import load_kubeconfig
from timonel.api.storage.etcd_process import free_port

T = TypeVar("T")

KUBECTL = os.path.join(os.path.dirname(sys.executable), "kubectl")
needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: timonel up runs the container runtime (namespaces, cgroups, "
                              "mounts, network interfaces) and the node agent")
START_TIMEOUT = 240.0
STOP_TIMEOUT = 60.0


@dataclass
class UpCluster:
    data_dir: Path
    kubeconfig: str
    url: str
    http: requests.Session
    node: str
    pod_cidr: str
    runtime_socket: str
    proc: subprocess.Popen[bytes]
    argv: list[str]

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The pinned real kubectl against this cluster; `check` asserts exit 0, showing stderr."""
        r = subprocess.run([KUBECTL, "--kubeconfig", self.kubeconfig, *args], input=input,
                           capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "KUBECTL_KUBERC": "false"})
        if check:
            assert r.returncode == 0, f"kubectl {' '.join(args)} exited {r.returncode}:\n{r.stderr}{r.stdout}"
        return r

    @staticmethod
    def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 120.0) -> T:
        return wait_for(what, fn, timeout)

    def get(self, path: str) -> dict[str, Any] | None:
        """GET an API path as admin; None on 404."""
        r = self.http.get(self.url + path)
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def log(self, name: str = "up") -> str:
        """The tail of `up`'s own output, or of a part's log (server, runtime, agent)."""
        path = self.data_dir / ("up.log" if name == "up" else f"logs/{name}.log")
        return path.read_text(errors="replace")[-6000:] if path.exists() else ""


def _launch(argv: list[str], data: Path) -> UpCluster:
    """Run `timonel up` (output appended to DATA/up.log) and wait until it says it is up."""
    log = data / "up.log"
    offset = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)

    def up() -> bool:
        with open(log, "rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        if proc.poll() is not None:
            raise RuntimeError(f"timonel up exited with {proc.returncode}:\n{text}")
        return "timonel is up" in text
    try:
        wait_for("timonel up to say it is up", up, timeout=START_TIMEOUT)
    except BaseException:
        _stop(proc, data)
        raise
    kubeconfig = str(data / "admin.kubeconfig")
    cfg = load_kubeconfig(kubeconfig)
    http = requests.Session()
    http.trust_env = False  # REQUESTS_CA_BUNDLE or proxies in the environment must not apply
    http.verify = str(data / "tls" / "ca.crt")
    http.headers["Authorization"] = f"Bearer {cfg.token}"

    def flag(name: str) -> str:
        return argv[argv.index(name) + 1]
    node = flag("--node-name")
    r = http.get(f"{cfg.server}/api/v1/nodes/{node}")
    assert r.status_code == 200, r.text
    pod_cidr = r.json()["spec"]["podCIDR"]  # --pod-cidr's, or the one the node IPAM gave
    return UpCluster(data, kubeconfig, cfg.server, http, node, pod_cidr, flag("--runtime-socket"), proc, argv)


def start_up(base: Path, own_pod_cidr: bool = True) -> UpCluster:
    """A new cluster in BASE/data, with the busybox image in its DATA/images. Without
    `own_pod_cidr` the node IPAM controller picks it (the first free /24 of 10.244.0.0/16,
    which another cluster running on this machine at the same time would route too)."""
    data = base / "data"
    (data / "images").mkdir(parents=True)
    files = load_busybox_module().write_busybox_image(base / "image")
    shutil.copy(files["docker_archive"], data / "images" / "busybox.tar")
    tag = uuid.uuid4().hex[:6]
    # A /24 of its own in the controllers' cluster CIDR (10.244.0.0/16), away from the
    # IPAM's first subnets, so that another cluster on this machine routes elsewhere.
    pod_cidr = f"10.244.{random.randint(128, 250)}.0/24"
    argv = [sys.executable, "-m", "timonel.cli.main", "up", "--data-dir", str(data),
            "--port", str(free_port()), "--node-name", f"e2e-{tag}",
            "--runtime-socket", str(data / "rt.sock"), "--bridge", f"tmnl{tag}", "--agent-port", "0"]
    if own_pod_cidr:
        argv += ["--pod-cidr", pod_cidr]
    return _launch(argv, data)


def restart_up(cluster: UpCluster) -> UpCluster:
    """`timonel up` again, same flags and data dir (the earlier one must have exited)."""
    assert cluster.proc.poll() is not None, "stop the running timonel up first"
    cluster.http.close()
    return _launch(cluster.argv, cluster.data_dir)


def stop_up(cluster: UpCluster) -> int | None:
    """SIGTERM; `up`'s exit code, None if it needed SIGKILL after STOP_TIMEOUT."""
    return _stop(cluster.proc, cluster.data_dir)


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _stop(proc: subprocess.Popen[bytes], data: Path) -> int | None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # `up` stopping its children is what timed out: leave none of them behind.
            for pid in [*_descendants(proc.pid), proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            proc.wait()
            return None
    return proc.returncode


@pytest.fixture(scope="module")
def up_cluster() -> Iterator[UpCluster]:
    if os.geteuid() != 0:
        pytest.skip("needs root: timonel up runs the container runtime (namespaces, cgroups, mounts, "
                    "network interfaces) and the node agent")
    base = Path(tempfile.mkdtemp(prefix="tmnl-e2e-"))
    try:
        cluster = start_up(base)
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise
    try:
        yield cluster
    finally:
        code = _stop(cluster.proc, cluster.data_dir)
        up_log = cluster.log()
        if code != 0:
            for name in ("agent", "runtime", "server"):
                print(f"--- {name} log ---\n{cluster.log(name)}")
        cluster.http.close()
        shutil.rmtree(base, ignore_errors=True)
        assert code == 0, f"timonel up did not exit 0 within {STOP_TIMEOUT:.0f}s of SIGTERM " \
                          f"(code {code}):\n{up_log}"
