"""A real `timonel runtime` daemon in a subprocess for the gRPC service tests.

Each daemon gets a temp root and socket, its own cgroup parent, and a
network namespace acting as the node (bridge, host veths and firewall live
there), so tests never touch the host's interfaces or firewall and can run
beside other runtimes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import grpc
import pytest

from timonel.node_agent.runtime.api import runtime_pb2 as pb
from timonel.node_agent.runtime.cgroups import Cgroups, detect
from timonel.node_agent.runtime.client import RuntimeClient
from timonel.node_agent.runtime.linux import Syscalls
from timonel.node_agent.runtime.network import (
    create_netns,
    delete_netns,
    list_netns,
    release_netns_dir,
)
from timonel.node_agent.runtime.statefs import release_state, state_dir

REPO = Path(__file__).resolve().parents[3]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the runtime daemon creates namespaces, "
                                                          "cgroups, mounts and network interfaces")
POD_CIDR = "10.97.0.0/24"


def load_busybox_module() -> ModuleType:
    """deploy/images/busybox.py (deploy/ holds scripts, not a package)."""
    path = REPO / "deploy" / "images" / "busybox.py"
    spec = importlib.util.spec_from_file_location("timonel_deploy_images_busybox_rtsvc", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@dataclass
class Daemon:
    base: Path
    cgroup_parent: str = field(default_factory=lambda: f"timonel-rtsvc/{uuid.uuid4().hex[:10]}")
    proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> str:
        return str(self.base / "root")

    @property
    def socket(self) -> str:
        return str(self.base / "rt.sock")

    @property
    def netns_dir(self) -> str:
        return str(self.base / "netns")

    @property
    def node_netns(self) -> str:
        return os.path.join(self.netns_dir, "node")

    @property
    def log(self) -> Path:
        return self.base / "daemon.log"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "timonel.cli.main", "-v", "runtime", "--root", self.root,
                "--socket", self.socket, "--pod-cidr", POD_CIDR, "--node-netns", self.node_netns,
                "--cgroup-parent", self.cgroup_parent, "--bridge", "rtsvc0"]

    def start(self) -> RuntimeClient:
        if not os.path.exists(self.node_netns):
            create_netns("node", self.netns_dir)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        client = RuntimeClient(self.socket)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"runtime exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                client.wait_ready(timeout=1)
                return client
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"runtime not ready after 60s:\n{self.log.read_text()[-3000:]}") from None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def cleanup(self, cgroups: Cgroups) -> None:
        """Remove what tests left (pods through the API), stop, and drop the node namespace."""
        if self.proc is not None:
            try:
                with RuntimeClient(self.socket, timeout=60) as c:
                    for sb in c.list_sandboxes():
                        c.stop_sandbox(sb.id)
                        c.remove_sandbox(sb.id)
            finally:
                self.stop()
        parent = self.cgroup_parent
        if cgroups.exists(parent):
            cgroups.kill(parent)
            cgroups.remove(parent)
        for path in cgroups.dirs(parent.split("/")[0]):  # the shared base, once no daemon uses it
            with contextlib.suppress(OSError):
                os.rmdir(path)
        release_netns_dir(os.path.join(state_dir(self.root), "netns"))
        release_state(Syscalls(), self.root, in_use=False)
        for name in list_netns(self.netns_dir):
            delete_netns(name, self.netns_dir)
        release_netns_dir(self.netns_dir)


def running_daemon(base: Path, image_tar: str) -> Iterator[tuple[Daemon, RuntimeClient]]:
    """Start a daemon with the busybox image imported; stop and clean up afterwards."""
    d = Daemon(base)
    cgroups = detect()
    try:
        client = d.start()
        client.import_image(image_tar)
        yield d, client
        client.close()
    finally:
        d.cleanup(cgroups)


def sandbox_config(name: str, **kw: object) -> pb.PodSandboxConfig:
    return pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=name, namespace="rtsvc", uid=uuid.uuid4().hex),
                               hostname=name, **kw)  # type: ignore[arg-type]


def container_config(name: str, cmd: list[str], image: str = "busybox", **kw: object) -> pb.ContainerConfig:
    return pb.ContainerConfig(metadata=pb.ContainerMetadata(name=name), image=pb.ImageSpec(image=image),
                              command=cmd, **kw)  # type: ignore[arg-type]


def run_pod(c: RuntimeClient, name: str, containers: dict[str, list[str]]) -> tuple[str, dict[str, str]]:
    """A sandbox with started containers: (sandbox id, container name -> id)."""
    cfg = sandbox_config(name)
    sid = c.run_sandbox(cfg)
    ids = {}
    for cname, cmd in containers.items():
        ids[cname] = c.create_container(sid, container_config(cname, cmd), cfg)
        c.start_container(ids[cname])
    return sid, ids


def log_text(path: str) -> str:
    """The content of a CRI log file without timestamps and stream tags."""
    try:
        with open(path, "rb") as f:
            return "".join(ln.split(b" ", 3)[3].decode() + ("\n" if ln.split(b" ", 3)[2] == b"F" else "")
                           for ln in f.read().splitlines() if ln.count(b" ") >= 3)
    except FileNotFoundError:
        return ""
