"""A controller manager restarted in the middle of a rolling update finishes
it from what it finds: within the bounds, and without one extra pod."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.integration.conftest import ApiServer
from tests.integration.controller.helpers import (
    DEPLOYMENTS,
    REPLICASETS,
    Binder,
    PodWatch,
    controller_manager,
    deployment,
    deployment_done,
    node_names,
    wait_for,
)
from tests.integration.fakenodes import FakeNodes
from timonel.api.client import Client

REPLICAS = 4


class Bounds:
    """maxSurge 1, maxUnavailable 0, checked once the first rollout is done."""

    armed = False

    def __call__(self, pods: dict[str, dict[str, Any]]) -> None:
        if not self.armed:
            return
        live = [p for p in pods.values() if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if any(c["type"] == "Ready" and c["status"] == "True"
                                        for c in (p.get("status") or {}).get("conditions") or [])]
        assert len(live) <= REPLICAS + 1, f"{len(live)} pods"
        assert len(ready) >= REPLICAS, f"{len(ready)} ready"


async def test_restart_mid_rollout_finishes_without_extra_pods(api_server: ApiServer,
                                                                namespace: str) -> None:
    nodes = node_names(2)
    bounds = Bounds()
    async with Client.from_kubeconfig(api_server.kubeconfig) as client, \
            FakeNodes(client, nodes), Binder(client, namespace, nodes), \
            PodWatch(client, namespace, bounds) as watch:
        # minReadySeconds makes every step of the rollout take a while.
        d = deployment("web", REPLICAS, image="busybox:1", max_surge=1, max_unavailable=0,
                       minReadySeconds=2)
        await client.create(DEPLOYMENTS, d, namespace=namespace)
        async with controller_manager(client, ["replicaset", "deployment"]):
            await wait_for(lambda: deployment_done(client, namespace, "web", REPLICAS),
                           what="the first rollout")
            await wait_for(lambda: _count(watch, REPLICAS), what="4 pods")
            bounds.armed = True
            await client.patch(DEPLOYMENTS, namespace, "web", {"spec": {"template": {"spec": {
                "containers": [{"name": "c", "image": "busybox:2"}]}}}}, patch_type="strategic")
            new_rs = await wait_for(lambda: _new_rs_available(client, namespace),
                                    what="the new ReplicaSet part-way")
        assert new_rs["spec"]["replicas"] < REPLICAS, "stopped in the middle"
        created_at_stop = len(watch.created)
        await asyncio.sleep(1.5)
        async with controller_manager(client, ["replicaset", "deployment"]):
            await wait_for(lambda: deployment_done(client, namespace, "web", REPLICAS,
                                                   image="busybox:2"),
                           what="the rollout finished by the new manager")
            await wait_for(lambda: _count(watch, REPLICAS), what="old pods gone")
        assert not watch.errors, watch.errors
        assert created_at_stop < len(watch.created)
        assert len(watch.created) == 2 * REPLICAS, sorted(watch.created)
        rss = (await client.list(REPLICASETS, namespace))["items"]
        assert sorted(rs["spec"]["replicas"] for rs in rss) == [0, REPLICAS]


async def _count(watch: PodWatch, n: int) -> bool:
    return len(watch.live) == n


async def _new_rs_available(client: Client, namespace: str) -> dict[str, Any] | None:
    for rs in (await client.list(REPLICASETS, namespace))["items"]:
        if rs["metadata"]["annotations"].get("deployment.kubernetes.io/revision") == "2" and \
                (rs.get("status") or {}).get("availableReplicas", 0) >= 1:
            return rs
    return None
