"""`timonel server` runs the scheduler and the controllers by default: a
Deployment applied to it ends up as available pods on (fake) nodes."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile

from tests.integration.conftest import start_server
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
    finally:
        server.stop()
        shutil.rmtree(d, ignore_errors=True)
