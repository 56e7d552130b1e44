"""A private API server, a runtime daemon and `timonel agent` as real processes.

The runtime daemon is the one the runtime's service tests use (its own node
network namespace, cgroup parent and root); the agent runs as a subprocess
exactly as a user starts it, with the busybox archive in DATA/images/.
Everything is stopped and removed even when a test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import requests

from tests.integration.conftest import ApiServer, start_server
from tests.integration.runtime.rtsvc_daemon import Daemon, load_busybox_module
from timonel.api.storage.etcd_process import EtcdProcess, free_port
from timonel.node_agent.runtime.cgroups import detect
from timonel.node_agent.runtime.client import RuntimeClient

T = TypeVar("T")


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 90.0, interval: float = 0.3) -> T:
    """Poll `fn` until it returns something truthy; assertion and lookup errors count as not yet."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            got = fn()
        except (AssertionError, KeyError, IndexError, TypeError, ValueError) as e:
            got, last = None, e
        if got:
            return got
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@dataclass
class Agent:
    node: str
    data_dir: Path
    socket: str
    # How the agent reaches the API server: --server URL --token <the server's join token>,
    # so it runs with its own node credentials, as a real node does (never the admin's).
    server_args: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    # More `timonel agent` flags a test chooses (e.g. --eviction-hard); used by every start().
    extra_args: list[str] = field(default_factory=list)

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "timonel.cli.main", "-v", "agent", *self.server_args,
                 "--node-name", self.node, "--data-dir", str(self.data_dir),
                 "--runtime-socket", self.socket, "--node-ip", "127.0.0.1", "--port", "0",
                 *self.extra_args],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


@dataclass
class Cluster:
    server: ApiServer
    daemon: Daemon
    runtime: RuntimeClient
    agent: Agent
    http: requests.Session

    def url(self, path: str) -> str:
        return self.server.url + path

    def get(self, path: str) -> dict[str, Any] | None:
        r = self.http.get(self.url(path))
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    def create(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(self.url(path), json=obj)
        assert r.status_code == 201, r.text
        out: dict[str, Any] = r.json()
        return out

    def namespace(self) -> str:
        name = f"agent-{uuid.uuid4().hex[:8]}"
        self.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        return name


def namespace_events(c: Cluster, ns: str) -> list[dict[str, Any]]:
    return list((c.get(f"/api/v1/namespaces/{ns}/events") or {}).get("items", []))


def event_reasons(c: Cluster, ns: str) -> set[str]:
    return {str(e["reason"]) for e in namespace_events(c, ns)}


def run_cluster(base: Path, agent_args: list[str] | None = None) -> Iterator[Cluster]:
    server: ApiServer | None = None
    # An etcd of its own (not the server's embedded one), so a test can restart the server.
    etcd = EtcdProcess(str(base / "etcd"), free_port(), free_port())
    daemon = Daemon(base / "runtime")
    (base / "runtime").mkdir()
    agent: Agent | None = None
    runtime: RuntimeClient | None = None
    cluster: Cluster | None = None
    try:
        etcd.start()
        server = start_server(str(base / "server"), etcd.endpoint, control_plane=False)
        runtime = daemon.start()
        data = base / "agent"
        (data / "images").mkdir(parents=True)
        files = load_busybox_module().write_busybox_image(base / "image")
        shutil.copy(files["docker_archive"], data / "images" / "busybox.tar")
        token = (Path(server.data_dir) / "node-token").read_text().strip()
        agent = Agent(f"agent-node-{uuid.uuid4().hex[:6]}", data, daemon.socket,
                      ["--server", server.url, "--token", token],
                      base / "agent.log", extra_args=list(agent_args or []))
        agent.start()
        cluster = Cluster(server, daemon, runtime, agent, server.session())
        name = agent.node
        c = cluster

        def ready() -> bool:
            assert agent is not None and agent.proc is not None
            assert agent.proc.poll() is None, f"agent exited:\n{agent.log_tail()}"
            node = c.get(f"/api/v1/nodes/{name}")
            # The agent writes the Ready status, then creates its Lease: wait for both.
            lease = c.get(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}")
            return bool(node and lease and any(c["type"] == "Ready" and c["status"] == "True"
                                               for c in node["status"].get("conditions", [])))
        wait_for("the node to be Ready and its Lease created", ready, timeout=120)
        yield cluster
    finally:
        if agent is not None:
            agent.stop()
            print(f"--- agent log ---\n{agent.log_tail()}")
        if runtime is not None:
            runtime.close()
        daemon.cleanup(detect())
        if server is not None:
            server.stop()
        if cluster is not None:
            cluster.server.stop()  # the one a test may have restarted
        etcd.stop()
        # Pod volumes of the agent (no mounts: tests use no Memory emptyDirs).
        for p in (base / "agent" / "pods").glob("*/volumes/*"):
            if os.path.ismount(p):
                subprocess.run(["umount", "-l", str(p)], check=False)
        shutil.rmtree(base, ignore_errors=True)
