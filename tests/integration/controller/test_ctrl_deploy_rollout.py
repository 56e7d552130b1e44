"""Deployments through a real API server with fake nodes: scaling, rolling
updates within maxSurge/maxUnavailable at every pod event, and Recreate."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.conftest import ApiServer
from tests.integration.controller.helpers import (
    DEPLOYMENTS,
    REPLICASETS,
    Binder,
    Bounds,
    PodWatch,
    controller_manager,
    deployment,
    deployment_done,
    node_names,
    wait_for,
)
from tests.integration.fakenodes import FakeNodes
from timonel.api.client import Client
from timonel.api.errors import ApiError

HASH = "pod-template-hash"


async def test_deployment_scales_and_rolls_out_within_bounds(api_server: ApiServer,
                                                             namespace: str) -> None:
    nodes = node_names(3)
    bounds = Bounds()
    async with Client.from_kubeconfig(api_server.kubeconfig) as client, \
            FakeNodes(client, nodes), Binder(client, namespace, nodes), \
            PodWatch(client, namespace, bounds) as watch, \
            controller_manager(client, ["replicaset", "deployment"]):
        d = deployment("web", 3, image="busybox:1", max_surge=1, max_unavailable=1)
        await client.create(DEPLOYMENTS, d, namespace=namespace)
        done = await wait_for(lambda: deployment_done(client, namespace, "web", 3),
                              what="3 available")
        assert done["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
        conds = {c["type"]: c for c in done["status"]["conditions"]}
        assert conds["Available"]["status"] == "True"
        assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
        assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
        (rs1,) = (await client.list(REPLICASETS, namespace))["items"]
        assert rs1["metadata"]["name"] == f"web-{rs1['metadata']['labels'][HASH]}"
        assert rs1["spec"]["selector"]["matchLabels"][HASH] == rs1["metadata"]["labels"][HASH]
        assert rs1["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "3"
        assert len(watch.created) == 3

        # Scale to 10 and back (kubectl scale writes the scale subresource).
        await client.patch(DEPLOYMENTS, namespace, "web", {"spec": {"replicas": 10}},
                           subresource="scale")
        await wait_for(lambda: deployment_done(client, namespace, "web", 10), what="10 available")
        await client.patch(DEPLOYMENTS, namespace, "web", {"spec": {"replicas": 3}},
                           subresource="scale")
        await wait_for(lambda: deployment_done(client, namespace, "web", 3), what="back to 3")
        await wait_for(lambda: _count(watch, 3), what="3 pods left")
        assert len(watch.created) == 10

        # A template change: never below 3-1 available nor above 3+1 pods.
        bounds.arm(lo=2, hi=4)
        await client.patch(DEPLOYMENTS, namespace, "web", {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox:2"}]}}}}, patch_type="strategic")
        done = await wait_for(lambda: deployment_done(client, namespace, "web", 3, image="busybox:2"),
                              what="rollout to busybox:2")
        await wait_for(lambda: _count(watch, 3), what="old pods gone")
        assert not watch.errors, watch.errors
        assert bounds.seen_hi >= 3 and bounds.seen_lo <= 3
        assert done["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
        rss = {rs["metadata"]["name"]: rs for rs in (await client.list(REPLICASETS, namespace))["items"]}
        assert rss[rs1["metadata"]["name"]]["spec"]["replicas"] == 0
        assert len(watch.created) == 13

        # The default 25% surge and unavailability of 3: at most 4 pods, never under 3 ready.
        await client.patch(DEPLOYMENTS, namespace, "web", {"spec": {"strategy": {
            "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}}, patch_type="merge")
        bounds.arm(lo=3, hi=4)
        await client.patch(DEPLOYMENTS, namespace, "web", {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox:3"}]}}}}, patch_type="strategic")
        await wait_for(lambda: deployment_done(client, namespace, "web", 3, image="busybox:3"),
                       what="rollout to busybox:3")
        await wait_for(lambda: _count(watch, 3), what="old pods gone")
        assert not watch.errors, watch.errors
        assert len(watch.created) == 16
        events = (await client.list(("v1", "Event"), namespace))["items"]
        scaling = [e["message"] for e in events if e["reason"] == "ScalingReplicaSet"]
        assert f"Scaled up replica set {rs1['metadata']['name']} from 0 to 3" in scaling
        assert f"Scaled up replica set {rs1['metadata']['name']} from 3 to 10" in scaling

        # The extensions/v1beta1 rollback request, kept as an annotation.
        await client.patch(DEPLOYMENTS, namespace, "web", {"metadata": {"annotations": {
            "deprecated.deployment.rollback.to": "2"}}})
        done = await wait_for(lambda: deployment_done(client, namespace, "web", 3,
                                                      image="busybox:2"),
                              what="rolled back to revision 2")
        assert "deprecated.deployment.rollback.to" not in done["metadata"]["annotations"]
        await wait_for(lambda: _count(watch, 3), what="old pods gone")
        assert not watch.errors, watch.errors
        assert len(watch.created) == 19


async def _count(watch: PodWatch, n: int) -> bool:
    return len(watch.live) == n


async def test_recreate_never_overlaps_old_and_new_pods(api_server: ApiServer,
                                                        namespace: str) -> None:
    nodes = node_names(2)

    def one_template(pods: dict[str, dict[str, Any]]) -> None:
        hashes = {p["metadata"]["labels"].get(HASH) for p in pods.values()}
        assert len(hashes) <= 1, f"pods of two templates at once: {hashes}"

    async with Client.from_kubeconfig(api_server.kubeconfig) as client, \
            FakeNodes(client, nodes), Binder(client, namespace, nodes), \
            PodWatch(client, namespace, one_template) as watch, \
            controller_manager(client, ["replicaset", "deployment"]):
        d = deployment("re", 3, image="busybox:1")
        d["spec"]["strategy"] = {"type": "Recreate"}
        await client.create(DEPLOYMENTS, d, namespace=namespace)
        await wait_for(lambda: deployment_done(client, namespace, "re", 3), what="3 available")
        await client.patch(DEPLOYMENTS, namespace, "re", {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox:2"}]}}}}, patch_type="strategic")
        await wait_for(lambda: deployment_done(client, namespace, "re", 3, image="busybox:2"),
                       what="recreated with busybox:2")
        assert not watch.errors, watch.errors
        assert len(watch.created) == 6


async def test_patches_do_not_conflict_with_status_writes(api_server: ApiServer,
                                                          namespace: str) -> None:
    # A controller writes status all the time; a user's patch (kubectl
    # scale, rollout undo, apply) names no resourceVersion and must not
    # fail with 409 because of it. A patch that does name one still must.
    async with Client.from_kubeconfig(api_server.kubeconfig) as client:
        await client.create(DEPLOYMENTS, deployment("busy", 1), namespace=namespace)

        async def write_status() -> None:
            for i in range(40):
                await client.patch(DEPLOYMENTS, namespace, "busy",
                                   {"status": {"observedGeneration": i}}, subresource="status")

        async def patch_spec() -> None:
            for i in range(40):
                await client.patch(DEPLOYMENTS, namespace, "busy",
                                   {"metadata": {"annotations": {"n": str(i)}}})
                await client.patch(DEPLOYMENTS, namespace, "busy",
                                   [{"op": "replace", "path": "/spec/replicas", "value": i % 3}],
                                   patch_type="json")

        await asyncio.gather(write_status(), patch_spec())
        cur = await client.get(DEPLOYMENTS, namespace, "busy")
        stale = str(int(cur["metadata"]["resourceVersion"]) - 1)
        with pytest.raises(ApiError) as e:
            await client.patch(DEPLOYMENTS, namespace, "busy",
                               {"metadata": {"resourceVersion": stale, "labels": {"x": "y"}}})
        assert e.value.code == 409
