"""`timonel server` runs the scheduler and the controllers by default: a
Deployment applied to it ends up as available pods on (fake) nodes."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import tempfile
from urllib.parse import urlsplit

import aiohttp

from tests.integration.conftest import ApiServer, start_server
from tests.integration.fakenodes import FakeNodes
from timonel.api.client import Client

DEPLOYMENTS = ("apps/v1", "Deployment")


async def test_deployment_becomes_available_through_the_whole_control_plane() -> None:
    d = tempfile.mkdtemp(prefix="timonel-cp-")
    server = start_server(os.path.join(d, "state"), control_plane=True)
    try:
        async with Client.from_kubeconfig(server.kubeconfig) as client, \
                FakeNodes(client, ["cp-node-1", "cp-node-2"]):
            dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                   "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}
            await client.create(DEPLOYMENTS, dep, namespace="default")
            deadline = asyncio.get_running_loop().time() + 90
            status: dict = {}
            while asyncio.get_running_loop().time() < deadline:
                status = (await client.get(DEPLOYMENTS, "default", "web")).get("status") or {}
                if status.get("availableReplicas") == 3:
                    break
                await asyncio.sleep(0.5)
            assert status.get("availableReplicas") == 3, status
            pods = (await client.list(("v1", "Pod"), "default", label_selector="app=web"))["items"]
            assert len(pods) == 3
            assert {p["spec"]["nodeName"] for p in pods} <= {"cp-node-1", "cp-node-2"}
            events = (await client.list(("v1", "Event"), "default"))["items"]
            assert {"Scheduled", "ScalingReplicaSet", "SuccessfulCreate"} <= {e["reason"] for e in events}
            await _check_loopback(server)
    finally:
        server.stop()
        shutil.rmtree(d, ignore_errors=True)


async def _check_loopback(server: ApiServer) -> None:
    """The in-process scheduler and controllers talk over the owner-only unix socket, not TCP."""
    path = os.path.join(server.data_dir, "apiserver.sock")
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600, oct(mode)
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path)) as http:
        async with http.get("http://localhost/api/v1/namespaces") as r:
            assert r.status == 401  # no trust by transport: a token is still needed
        async with http.get("http://localhost/api/v1/namespaces",
                            headers={"Authorization": f"Bearer {server.token}"}) as r:
            assert r.status == 200
    # Over loopback HTTPS the control plane's ~70 watches held ~140 TCP connections in the
    # server's process (both ends); now only this test's own client connects over TCP.
    tcp = _established_tcp(server.proc.pid, urlsplit(server.url).port or 0)
    assert tcp < 30, f"{tcp} TCP connections on the server's port in its own process"


def _established_tcp(pid: int, port: int) -> int:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                ports = {int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16)}
                if state == "01" and inode in inodes and port in ports:
                    count += 1
    return count
