"""The ReplicaSet controller against a real API server with fake nodes."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import ApiServer
from tests.integration.controller.helpers import (
    PODS,
    REPLICASETS,
    Binder,
    PodWatch,
    controller_manager,
    node_names,
    wait_for,
)
from tests.integration.fakenodes import FakeNodes
from timonel.api.client import Client


def replica_set(name: str, replicas: int, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def active(pods: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods.values() if not p["metadata"].get("deletionTimestamp")]


async def test_replicaset_creates_heals_scales_adopts_and_releases(
        api_server: ApiServer, namespace: str) -> None:
    nodes = node_names(2)
    async with Client.from_kubeconfig(api_server.kubeconfig) as client, \
            FakeNodes(client, nodes), Binder(client, namespace, nodes), \
            PodWatch(client, namespace) as watch:

        async def status(ready: int) -> dict[str, Any] | None:
            cur = await client.get(REPLICASETS, namespace, "web")
            st = cur.get("status") or {}
            ok = (st.get("readyReplicas", 0) == ready and st.get("availableReplicas", 0) == ready
                  and st.get("replicas") == ready
                  and st.get("observedGeneration") == cur["metadata"]["generation"])
            return cur if ok else None

        async with controller_manager(client, ["replicaset"]):
            rs = await client.create(REPLICASETS, replica_set("web", 3, {"app": "web"}),
                                     namespace=namespace)
            cur = await wait_for(lambda: status(3), what="3 ready replicas")
            assert cur["status"]["fullyLabeledReplicas"] == 3
            pods = active(watch.live)
            assert len(pods) == 3 and len(watch.created) == 3
            for p in pods:
                assert p["metadata"]["name"].startswith("web-")
                assert p["metadata"]["ownerReferences"] == [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                    "uid": rs["metadata"]["uid"], "controller": True,
                    "blockOwnerDeletion": True}]

            # A deleted pod is replaced.
            victim = pods[0]["metadata"]["name"]
            await client.delete(PODS, namespace, victim)
            await wait_for(lambda: _replaced(watch, victim), what="a replacement pod")
            await wait_for(lambda: status(3), what="3 ready replicas again")
            assert len(watch.created) == 4

            # Scale up and down through the scale subresource (as kubectl scale).
            await client.patch(REPLICASETS, namespace, "web", {"spec": {"replicas": 6}},
                               subresource="scale")
            await wait_for(lambda: status(6), what="6 ready replicas")
            await client.patch(REPLICASETS, namespace, "web", {"spec": {"replicas": 2}},
                               subresource="scale")
            await wait_for(lambda: status(2), what="2 ready replicas")
            assert len(watch.created) == 7, "scaling must create exactly the difference"

        # A matching orphan, running while no controller looked, is adopted;
        # its deletion cost makes the ReplicaSet give up one of its own pods.
        orphan = {"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": "stray", "labels": {"app": "web"}, "annotations": {
                      "controller.kubernetes.io/pod-deletion-cost": "1000"}},
                  "spec": {"nodeName": nodes[0], "containers": [{"name": "c", "image": "x"}]}}
        await client.create(PODS, orphan, namespace=namespace)
        await wait_for(lambda: _running(watch, "stray"), what="the orphan running")
        async with controller_manager(client, ["replicaset"]):

            async def adopted_and_trimmed() -> bool:
                p = watch.live.get("stray")
                assert p is not None, "the orphan with the highest deletion cost was deleted"
                return bool(p["metadata"].get("ownerReferences")) and len(active(watch.live)) == 2

            await wait_for(adopted_and_trimmed, what="the orphan adopted and one pod deleted")
            assert watch.live["stray"]["metadata"]["ownerReferences"][0]["uid"] == \
                rs["metadata"]["uid"]
            await wait_for(lambda: status(2), what="2 ready replicas with the adopted pod")
            assert len(watch.created) == 8

            # A pod whose labels stop matching is released (and replaced).
            keep = sorted(p["metadata"]["name"] for p in active(watch.live))[0]
            await client.patch(PODS, namespace, keep, {"metadata": {"labels": {"app": "gone"}}})

            async def released() -> bool:
                p = await client.get(PODS, namespace, keep)
                return not p["metadata"].get("ownerReferences")

            await wait_for(released, what="the relabelled pod released")
            await wait_for(lambda: status(2), what="2 ready replicas after the release")
            owned = [p for p in active(watch.live) if p["metadata"].get("ownerReferences")]
            assert len(owned) == 2 and len(watch.created) == 9


async def _running(watch: PodWatch, name: str) -> bool:
    p = watch.live.get(name)
    return p is not None and (p.get("status") or {}).get("phase") == "Running"


async def _replaced(watch: PodWatch, victim: str) -> bool:
    return victim not in watch.live and len(active(watch.live)) == 3
