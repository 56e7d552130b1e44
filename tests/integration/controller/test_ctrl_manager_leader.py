"""The controller manager: leader election between two managers, and
`timonel controller-manager` as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys

from tests.integration.conftest import ApiServer
from tests.integration.controller.helpers import (
    DEPLOYMENTS,
    PODS,
    REPLICASETS,
    Binder,
    deployment,
    deployment_done,
    node_names,
    wait_for,
)
from tests.integration.fakenodes import FakeNodes
from timonel.api.client import Client
from timonel.controller.context import ControllerOptions
from timonel.controller.manager import LEASE_NAME, LEASE_NAMESPACE, run_controller_manager

LEASE = ("coordination.k8s.io/v1", "Lease")
TIMONEL = os.path.join(os.path.dirname(sys.executable), "timonel")
FAST = {"leader_elect_lease_duration": 4.0, "leader_elect_renew_deadline": 3.0,
        "leader_elect_retry_period": 0.5}


def replica_set(name: str, replicas: int) -> dict[str, object]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "x"}]}}}}


async def holder(client: Client) -> str:
    try:
        lease = await client.get(LEASE, LEASE_NAMESPACE, LEASE_NAME)
    except Exception:
        return ""
    return str(lease["spec"].get("holderIdentity") or "")


async def test_one_leader_acts_and_another_takes_over(api_server: ApiServer,
                                                      namespace: str) -> None:
    nodes = node_names(2)
    async with Client.from_kubeconfig(api_server.kubeconfig) as client, \
            Client.from_kubeconfig(api_server.kubeconfig) as c1, \
            Client.from_kubeconfig(api_server.kubeconfig) as c2, \
            FakeNodes(client, nodes), Binder(client, namespace, nodes):
        tag = os.urandom(3).hex()
        managers = {}
        for ident, c in ((f"a-{tag}", c1), (f"b-{tag}", c2)):
            managers[ident] = asyncio.create_task(run_controller_manager(
                c, ControllerOptions(extra=dict(FAST)), controllers=["replicaset"],
                leader_elect=True, identity=ident))
        try:
            leader = await wait_for(lambda: _ours(client, tag), what="a leader")
            await client.create(REPLICASETS, replica_set("web", 2), namespace=namespace)
            await wait_for(lambda: _ready(client, namespace, 2), what="2 ready replicas")
            events = (await client.list(("v1", "Event"), namespace))["items"]
            hosts = {e["source"].get("host") for e in events if e["reason"] == "SuccessfulCreate"}
            assert hosts == {leader}, "only the leader's controllers act"

            # The leader stops (releasing the Lease): the other one takes over.
            managers.pop(leader).cancel()
            (follower,) = managers
            await wait_for(lambda: _is(client, follower), timeout=30, what="the follower leading")
            await client.patch(REPLICASETS, namespace, "web", {"spec": {"replicas": 3}})
            await wait_for(lambda: _ready(client, namespace, 3), what="3 ready replicas")
            events = (await client.list(("v1", "Event"), namespace))["items"]
            hosts = {e["source"].get("host") for e in events if e["reason"] == "SuccessfulCreate"}
            assert hosts == {leader, follower}
            assert len((await client.list(PODS, namespace))["items"]) == 3
        finally:
            for t in managers.values():
                t.cancel()
            for t in managers.values():
                with contextlib.suppress(asyncio.CancelledError):
                    await t


async def _ours(client: Client, tag: str) -> str | None:
    h = await holder(client)
    return h if h.endswith(tag) else None


async def _is(client: Client, ident: str) -> bool:
    return await holder(client) == ident


async def _ready(client: Client, namespace: str, n: int) -> bool:
    rs = await client.get(REPLICASETS, namespace, "web")
    return (rs.get("status") or {}).get("readyReplicas", 0) == n and \
        rs["status"].get("replicas") == n


async def test_controller_manager_command(api_server: ApiServer, namespace: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        TIMONEL, "controller-manager", "--controllers", "nope", "--kubeconfig",
        api_server.kubeconfig, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 3 and b"unknown controller(s) nope" in err, err

    nodes = node_names(2)
    ident = f"cli-{os.urandom(3).hex()}"
    log_path = os.path.join(api_server.data_dir, f"controller-manager-{ident}.log")
    with open(log_path, "wb") as log:
        proc = await asyncio.create_subprocess_exec(
            TIMONEL, "-v", "controller-manager", "--kubeconfig", api_server.kubeconfig,
            "--controllers", "replicaset,deployment", "--leader-elect",
            "--leader-elect-identity", ident, stdout=log, stderr=asyncio.subprocess.STDOUT)
    try:
        async with Client.from_kubeconfig(api_server.kubeconfig) as client, \
                FakeNodes(client, nodes), Binder(client, namespace, nodes):
            await client.create(DEPLOYMENTS, deployment("cli", 2), namespace=namespace)
            await wait_for(lambda: deployment_done(client, namespace, "cli", 2),
                           what="the deployment rolled out by the command")
            assert await holder(client) == ident
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
            # Stopping releases the Lease so another manager need not wait.
            assert await holder(client) == ""
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
