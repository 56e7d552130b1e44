"""Cascading deletion by the garbage collector: Background, Foreground and
Orphan, and dependents whose owner is missing."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.conftest import ApiServer
from tests.integration.controller.helpers import (
    DEPLOYMENTS,
    PODS,
    REPLICASETS,
    Binder,
    controller_manager,
    deployment,
    deployment_done,
    gone,
    kubectl,
    names,
    node_names,
    wait_for,
)
from tests.integration.fakenodes import FakeNodes
from timonel.api.client import Client

CONFIGMAPS = ("v1", "ConfigMap")
CONTROLLERS = ["replicaset", "deployment", "garbagecollector"]


async def running_deployment(client: Client, namespace: str, name: str) -> None:
    await client.create(DEPLOYMENTS, deployment(name, 2), namespace=namespace)
    await wait_for(lambda: deployment_done(client, namespace, name, 2), what=f"{name} running")


async def test_background_and_foreground_cascades(api_server: ApiServer, namespace: str) -> None:
    nodes = node_names(2)
    async with Client.from_kubeconfig(api_server.kubeconfig) as client, \
            FakeNodes(client, nodes), Binder(client, namespace, nodes), \
            controller_manager(client, CONTROLLERS):
        # Background (kubectl's default): the Deployment goes at once, then
        # its ReplicaSet and pods.
        await running_deployment(client, namespace, "bg")
        rc, _, err = await kubectl(api_server.kubeconfig, "-n", namespace, "delete",
                                   "deployment", "bg", "--wait=false")
        assert rc == 0, err
        assert await gone(client, DEPLOYMENTS, namespace, "bg")

        async def emptied() -> bool:
            return not await names(client, REPLICASETS, namespace) and \
                not await names(client, PODS, namespace)

        await wait_for(emptied, what="the ReplicaSet and pods collected")

        # Foreground: the Deployment waits, marked, until everything under it is gone.
        await running_deployment(client, namespace, "fg")
        order: list[str] = []

        async def watch_deletions() -> None:
            seen_pods = set(await names(client, PODS, namespace))
            while True:
                pods = set(await names(client, PODS, namespace))
                rss = await names(client, REPLICASETS, namespace)
                if seen_pods and not pods and "pods" not in order:
                    order.append("pods")
                if not rss and "replicaset" not in order:
                    order.append("replicaset")
                if await gone(client, DEPLOYMENTS, namespace, "fg"):
                    order.append("deployment")
                    return
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch_deletions())
        await client.delete(DEPLOYMENTS, namespace, "fg", propagation_policy="Foreground")
        marked = await client.get(DEPLOYMENTS, namespace, "fg")
        assert marked["metadata"]["deletionTimestamp"]
        assert "foregroundDeletion" in marked["metadata"]["finalizers"]
        await asyncio.wait_for(watcher, 60)
        assert order == ["pods", "replicaset", "deployment"], order


async def test_orphan_keeps_dependents_without_the_reference(api_server: ApiServer,
                                                             namespace: str) -> None:
    nodes = node_names(2)
    async with Client.from_kubeconfig(api_server.kubeconfig) as client, \
            FakeNodes(client, nodes), Binder(client, namespace, nodes), \
            controller_manager(client, CONTROLLERS):
        await running_deployment(client, namespace, "orph")
        (rs,) = (await client.list(REPLICASETS, namespace))["items"]
        pods_before = await names(client, PODS, namespace)
        rc, _, err = await kubectl(api_server.kubeconfig, "-n", namespace, "delete",
                                   "deployment", "orph", "--cascade=orphan")
        assert rc == 0, err
        await wait_for(lambda: gone(client, DEPLOYMENTS, namespace, "orph"),
                       what="the Deployment deleted")

        async def orphaned() -> dict[str, Any] | None:
            cur = await client.get(REPLICASETS, namespace, rs["metadata"]["name"])
            return None if cur["metadata"].get("ownerReferences") else cur

        await wait_for(orphaned, what="the ReplicaSet orphaned")
        # The ReplicaSet lives on and still owns its pods.
        await asyncio.sleep(1)
        assert await names(client, PODS, namespace) == pods_before
        for p in (await client.list(PODS, namespace))["items"]:
            assert p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]

        # Orphan the pods too: the ReplicaSet goes, the pods stay, unowned.
        await client.delete(REPLICASETS, namespace, rs["metadata"]["name"],
                            propagation_policy="Orphan")
        await wait_for(lambda: gone(client, REPLICASETS, namespace, rs["metadata"]["name"]),
                       what="the ReplicaSet deleted")
        await asyncio.sleep(1)
        pods = (await client.list(PODS, namespace))["items"]
        assert sorted(p["metadata"]["name"] for p in pods) == pods_before
        assert all(not p["metadata"].get("ownerReferences") for p in pods)
        assert all(not p["metadata"].get("deletionTimestamp") for p in pods)


async def test_dependents_of_missing_owners(api_server: ApiServer, namespace: str) -> None:
    async with Client.from_kubeconfig(api_server.kubeconfig) as client, \
            controller_manager(client, ["garbagecollector"]):
        owner = await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                                 "metadata": {"name": "owner"}},
                                    namespace=namespace)

        def ref(name: str, uid: str) -> dict[str, Any]:
            return {"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid}

        real = ref("owner", owner["metadata"]["uid"])
        ghost = ref("ghost", "00000000-0000-0000-0000-000000000000")
        impostor = ref("owner", "11111111-1111-1111-1111-111111111111")  # same name, other uid
        for name, refs in (("kept", [real]), ("orphan-of-ghost", [ghost]),
                           ("orphan-of-impostor", [impostor]), ("half", [real, ghost])):
            await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                             "metadata": {"name": name, "ownerReferences": refs}},
                                namespace=namespace)

        async def settled() -> bool:
            half = await client.get(CONFIGMAPS, namespace, "half")
            return await names(client, CONFIGMAPS, namespace) == ["half", "kept", "owner"] and \
                [r["uid"] for r in half["metadata"]["ownerReferences"]] == [real["uid"]]

        await wait_for(settled, what="dangling dependents collected, the half-owned one kept")
        # Deleting the owner now takes its remaining dependents with it.
        await client.delete(CONFIGMAPS, namespace, "owner")

        async def only_nothing_left() -> bool:
            return await names(client, CONFIGMAPS, namespace) == []

        await wait_for(only_nothing_left, what="the dependents of the deleted owner collected")
