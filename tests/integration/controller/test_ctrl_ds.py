"""The DaemonSet controller against a real API server with fake nodes: one
pod per eligible node (nodeSelector, taints), pods pinned by node affinity
and bound by a stand-in scheduler, status counters, and a rolling update
that never has more than maxUnavailable nodes without an available pod."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tests.integration.conftest import ApiServer
from tests.integration.controller.workload_helpers import (
    Binder,
    eventually,
    make_context,
    new_namespace,
    pinned_node,
    private_server,  # noqa: F401 (fixture)
    running,
)
from tests.integration.fakenodes import NODES, PODS, FakeNodes
from timonel.api.client import Client
from timonel.controller import daemonset

DS = ("apps/v1", "DaemonSet")
REVISIONS = ("apps/v1", "ControllerRevision")
NAMES = ["ds-a", "ds-b", "ds-c", "ds-d"]


def daemonset_obj(name: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "updateStrategy": {"type": "RollingUpdate",
                                        "rollingUpdate": {"maxUnavailable": 1}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"nodeSelector": {"role": "web"},
                                           "containers": [{"name": "c", "image": "agent:1"}]}}}}


class PodWatch:
    """Every pod change in a namespace, with a check run after each event."""

    def __init__(self, client: Client, ns: str) -> None:
        self.client, self.ns = client, ns
        self.pods: dict[str, dict[str, Any]] = {}
        self.worst = 0
        self.nodes: list[str] = []
        self._task: asyncio.Task[None] | None = None

    def unavailable(self) -> int:
        """Desired nodes without a ready, live pod right now."""
        good = {pinned_node(p) for p in self.pods.values()
                if not p["metadata"].get("deletionTimestamp") and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p.get("status", {}).get("conditions") or [])}
        return sum(1 for n in self.nodes if n not in good)

    async def start(self) -> None:
        lst = await self.client.list(PODS, self.ns)
        self.pods = {p["metadata"]["name"]: p for p in lst["items"]}
        rv = lst["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._run(rv))

    async def _run(self, rv: str) -> None:
        async for etype, obj in self.client.watch(PODS, self.ns, resource_version=rv,
                                                  timeout_seconds=600):
            if etype == "BOOKMARK":
                continue
            if etype == "DELETED":
                self.pods.pop(obj["metadata"]["name"], None)
            else:
                self.pods[obj["metadata"]["name"]] = obj
            self.worst = max(self.worst, self.unavailable())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def test_one_pod_per_eligible_node_and_rolling_update(
        private_server: ApiServer) -> None:  # noqa: F811
    labels = {"ds-a": {"role": "web"}, "ds-b": {"role": "web"}, "ds-c": {"role": "web"},
              "ds-d": {"role": "db"}}
    taints = {"ds-c": [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]}
    async with Client.from_kubeconfig(private_server.kubeconfig) as client, \
            FakeNodes(client, NAMES, labels=labels, taints=taints, heartbeat_seconds=5), \
            Binder(client, NAMES):
        ns = await new_namespace(client, "ds")
        ctx = make_context(client, "daemonset-controller")
        async with running(ctx, daemonset.run):
            await client.create(DS, daemonset_obj("agent"), namespace=ns)

            async def placed() -> dict[str, dict[str, Any]] | None:
                pods = (await client.list(PODS, ns))["items"]
                by_node = {p["spec"].get("nodeName"): p for p in pods
                           if p.get("status", {}).get("phase") == "Running"}
                return by_node if len(by_node) == 2 and len(pods) == 2 else None

            by_node = await eventually(placed, what="a running pod on ds-a and ds-b")
            assert sorted(by_node) == ["ds-a", "ds-b"]  # ds-c tainted, ds-d not selected
            pod = by_node["ds-a"]
            assert pinned_node(pod) == "ds-a"
            tols = pod["spec"]["tolerations"]
            unreachable = [t for t in tols if t.get("key") == "node.kubernetes.io/unreachable"]
            assert unreachable == [{"key": "node.kubernetes.io/unreachable",
                                    "operator": "Exists", "effect": "NoExecute"}]
            assert any(t.get("key") == "node.kubernetes.io/unschedulable" for t in tols)
            first_hash = pod["metadata"]["labels"]["controller-revision-hash"]
            assert pod["metadata"]["labels"]["pod-template-generation"] == "1"
            assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"

            async def status_is(**want: int) -> dict[str, Any] | None:
                ds = await client.get(DS, ns, "agent")
                st = ds.get("status") or {}
                ok = all(st.get(k, 0) == v for k, v in want.items())
                return ds if ok and st.get("observedGeneration") == ds["metadata"][
                    "generation"] else None

            await eventually(lambda: status_is(desiredNumberScheduled=2, currentNumberScheduled=2,
                                               numberReady=2, numberAvailable=2,
                                               updatedNumberScheduled=2, numberMisscheduled=0),
                             what="status of 2 scheduled pods")
            revs = (await client.list(REVISIONS, ns))["items"]
            assert len(revs) == 1 and revs[0]["revision"] == 1
            assert revs[0]["metadata"]["labels"]["controller-revision-hash"] == first_hash

            # A node becoming eligible gets its pod.
            await client.patch(NODES, "", "ds-d", {"metadata": {"labels": {"role": "web"}}})
            await eventually(lambda: status_is(desiredNumberScheduled=3, numberAvailable=3),
                             what="a pod on newly labelled ds-d")

            # Rolling update: never more than maxUnavailable=1 node without a ready pod.
            watch = PodWatch(client, ns)
            watch.nodes = ["ds-a", "ds-b", "ds-d"]
            await watch.start()
            try:
                await client.patch(DS, ns, "agent", {"spec": {"template": {"spec": {
                    "containers": [{"name": "c", "image": "agent:2"}]}}}})

                async def rolled() -> dict[str, Any] | None:
                    ds = await status_is(desiredNumberScheduled=3, updatedNumberScheduled=3,
                                         numberAvailable=3, currentNumberScheduled=3)
                    if ds is None:
                        return None
                    pods = (await client.list(PODS, ns))["items"]
                    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
                    images = {p["spec"]["containers"][0]["image"] for p in live}
                    return ds if images == {"agent:2"} and len(live) == 3 else None

                await eventually(rolled, timeout=60, what="rolling update to agent:2")
            finally:
                await watch.stop()
            # maxSurge 0: each node is without its pod for a moment, one at a time.
            assert watch.worst == 1, f"{watch.worst} nodes were without a pod at once"
            revs = sorted((await client.list(REVISIONS, ns))["items"],
                          key=lambda r: r["revision"])
            assert [r["revision"] for r in revs] == [1, 2]
            pods = (await client.list(PODS, ns))["items"]
            new_hash = revs[1]["metadata"]["labels"]["controller-revision-hash"]
            assert {p["metadata"]["labels"]["controller-revision-hash"] for p in pods} == {
                new_hash}

            # A NoExecute taint it does not tolerate drives the daemon pod off.
            await client.patch(NODES, "", "ds-b", {"spec": {"taints": [
                {"key": "evict", "value": "y", "effect": "NoExecute"}]}})

            async def off_b() -> bool:
                pods = (await client.list(PODS, ns))["items"]
                return not any(pinned_node(p) == "ds-b" for p in pods)

            await eventually(off_b, what="daemon pod removed from NoExecute-tainted ds-b")
            await eventually(lambda: status_is(desiredNumberScheduled=2,
                                               currentNumberScheduled=2),
                             what="status after ds-b left")
