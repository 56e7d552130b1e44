"""The node lifecycle controller against a real API server with fake nodes:
a node whose Lease stops being renewed goes Ready=Unknown with the
unreachable taints, its pods are evicted as their tolerations say, taints go
when the node is back, pods of deleted nodes are removed, and every node
gets its own pod CIDR."""

from __future__ import annotations

import ipaddress
from typing import Any

from tests.integration.conftest import ApiServer
from tests.integration.controller.workload_helpers import (
    events_for,
    eventually,
    has_event,
    make_context,
    never,
    private_server,  # noqa: F401 (fixture)
    running,
)
from tests.integration.fakenodes import NODES, PODS, FakeNodes
from timonel.api import meta
from timonel.api.client import Client
from timonel.controller import node_lifecycle

UNREACHABLE = "node.kubernetes.io/unreachable"
NS = "default"


def pod(name: str, node: str, tolerations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeName": node, "containers": [{"name": "c", "image": "x"}]}
    if tolerations is not None:
        spec["tolerations"] = tolerations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"a": "b"}},
            "spec": spec}


def unreachable_for(seconds: int) -> list[dict[str, Any]]:
    return [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
             "tolerationSeconds": seconds}]


def ready(node: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")


def taint_keys(node: dict[str, Any]) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in node.get("spec", {}).get("taints") or []}


async def test_dead_node_is_tainted_and_its_pods_evicted(private_server: ApiServer) -> None:  # noqa: F811
    async with Client.from_kubeconfig(private_server.kubeconfig) as client, \
            FakeNodes(client, ["n1", "n2"], heartbeat_seconds=0.5) as nodes:
        ctx = make_context(client, "node-controller", node_monitor_grace_period=5.0,
                           node_monitor_period=0.5,
                           extra={"pod_gc_quarantine": 1.0, "pod_gc_period": 0.5})
        for name, node, tol in [("now", "n1", unreachable_for(0)),
                                ("short", "n1", unreachable_for(2)),
                                ("forever", "n1", [{"operator": "Exists"}]),
                                ("default", "n1", None),
                                ("other", "n2", unreachable_for(0))]:
            await client.create(PODS, pod(name, node, tol), namespace=NS)

        async def get_pod(name: str) -> dict[str, Any]:
            return await client.get(PODS, NS, name)

        async with running(ctx, node_lifecycle.run):
            # Pod CIDRs: one each, distinct, inside the cluster CIDR.
            async def cidrs() -> list[str] | None:
                got = [(await client.get(NODES, "", n))["spec"].get("podCIDR") for n in ("n1", "n2")]
                return got if all(got) else None

            c1, c2 = await eventually(cidrs, what="pod CIDRs")
            assert c1 != c2
            for c in (c1, c2):
                assert ipaddress.IPv4Network(c).subnet_of(ipaddress.IPv4Network("10.244.0.0/16"))
                assert ipaddress.IPv4Network(c).prefixlen == 24
            await eventually(lambda: _running(client, "now"), what="pod running")
            await nodes.stop_heartbeat("n1")

            async def tainted() -> dict[str, Any] | None:
                n = await client.get(NODES, "", "n1")
                want = {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}
                return n if want <= taint_keys(n) else None

            n1 = await eventually(tainted, timeout=40, what="unreachable taints on n1")
            cond = ready(n1)
            assert cond["status"] == "Unknown"
            assert cond["reason"] == "NodeStatusUnknown"
            assert cond["message"] == "Kubelet stopped posting node status."
            assert all(t.get("timeAdded") for t in n1["spec"]["taints"]
                       if t["key"] == UNREACHABLE)
            ne_added = next(t["timeAdded"] for t in n1["spec"]["taints"]
                            if t["key"] == UNREACHABLE and t["effect"] == "NoExecute")

            async def deleting(name: str) -> dict[str, Any] | None:
                p = await get_pod(name)
                return p if p["metadata"].get("deletionTimestamp") else None

            evicted_now = await eventually(lambda: deleting("now"), what="untolerating pod evicted")
            evicted_short = await eventually(lambda: deleting("short"), timeout=30,
                                             what="2 s pod evicted")
            # The 2 s toleration was honoured (timestamps have 1 s precision).
            waited = (meta.parse_time(evicted_short["metadata"]["deletionTimestamp"]) -
                      meta.parse_time(ne_added)).total_seconds()
            assert waited >= 1, waited
            disruption = [c for c in evicted_now["status"]["conditions"]
                          if c["type"] == "DisruptionTarget"]
            assert disruption and disruption[0]["reason"] == "DeletionByTaintManager"
            assert has_event(await events_for(client, NS, "short"), "TaintManagerEviction",
                             f"Marking for deletion Pod {NS}/short")
            # Pods on a dead node are marked not ready, with an event.
            forever = await get_pod("forever")
            assert ready(forever)["status"] == "False"
            assert has_event(await events_for(client, NS, "forever"), "NodeNotReady",
                             "Node is not ready")
            node_events = await events_for(client, NS, "n1")
            assert has_event(node_events, "NodeNotReady", "Node n1 status is now: NodeNotReady")
            assert has_event(node_events, "RegisteredNode", "Registered Node n1 in Controller")
            # Tolerated for ever, or for the default 300 s: still there; the
            # healthy node's pod is untouched.
            await never(lambda: _deleting_any(client, ["forever", "default", "other"]), 2.0,
                        "a tolerating pod or a healthy node's pod was evicted")
            assert taint_keys(await client.get(NODES, "", "n2")) == set()

            # The kubelet comes back: Ready again, taints gone.
            await nodes.resume_heartbeat("n1")

            async def untainted() -> bool:
                return not taint_keys(await client.get(NODES, "", "n1"))

            await eventually(untainted, what="taints removed from n1")

            # A deleted node's pods go (force-deleted: no kubelet will finish
            # them), and a new node gets a fresh CIDR.
            await nodes.stop_heartbeat("n2")
            await client.delete(NODES, "", "n2")

            async def other_gone() -> bool:
                names = {p["metadata"]["name"] for p in (await client.list(PODS, NS))["items"]}
                return "other" not in names

            await eventually(other_gone, what="pod of the deleted node removed")
            await nodes.add_node("n3")

            async def c3() -> str | None:
                return (await client.get(NODES, "", "n3"))["spec"].get("podCIDR")

            got = await eventually(c3, what="pod CIDR for n3")
            assert got != c1


async def _running(client: Client, name: str) -> bool:
    p = await client.get(PODS, NS, name)
    return p.get("status", {}).get("phase") == "Running"


async def _deleting_any(client: Client, names: list[str]) -> list[str]:
    out = []
    for name in names:
        p = await client.get(PODS, NS, name)
        if p["metadata"].get("deletionTimestamp"):
            out.append(name)
    return out


async def test_every_node_down_evicts_nobody(private_server: ApiServer) -> None:  # noqa: F811
    """When all nodes stop at once the control plane is more likely cut
    off than the nodes dead: conditions go Unknown, but no NoExecute taint
    and no eviction (upstream's master disruption mode)."""
    async with Client.from_kubeconfig(private_server.kubeconfig) as client, \
            FakeNodes(client, ["d1", "d2"], heartbeat_seconds=0.5) as nodes:
        # Nodes of the other test in this module may still exist: remove them.
        for n in (await client.list(NODES))["items"]:
            if n["metadata"]["name"] not in ("d1", "d2"):
                await client.delete(NODES, "", n["metadata"]["name"])
        # Tolerating for a few seconds: if one node is seen down a pass before
        # the other, its brief NoExecute taint is lifted before that runs out.
        await client.create(PODS, pod("d-pod", "d1", unreachable_for(6)), namespace=NS)
        ctx = make_context(client, "node-controller", node_monitor_grace_period=4.0,
                           node_monitor_period=0.5, extra={"allocate_node_cidrs": False})
        async with running(ctx, node_lifecycle.run):
            await nodes.stop_heartbeat("d1")
            await nodes.stop_heartbeat("d2")

            async def both_unknown() -> bool:
                got = [ready(await client.get(NODES, "", n))["status"] for n in ("d1", "d2")]
                return got == ["Unknown", "Unknown"]

            await eventually(both_unknown, timeout=40, what="both nodes Unknown")

            async def no_execute_taint() -> bool:
                found = [taint_keys(await client.get(NODES, "", n)) for n in ("d1", "d2")]
                return any(e == "NoExecute" for keys in found for _, e in keys)

            await never(no_execute_taint, 2.0, "a NoExecute taint in master disruption mode")
            p = await client.get(PODS, NS, "d-pod")
            assert not p["metadata"].get("deletionTimestamp")
            # NoSchedule taints still follow the conditions.
            assert (UNREACHABLE, "NoSchedule") in taint_keys(await client.get(NODES, "", "d1"))


async def test_evicted_pods_are_recreated_on_another_node(private_server: ApiServer) -> None:  # noqa: F811
    """With the ReplicaSet controller running, pods evicted from a dead node
    come back on a healthy one."""
    from tests.integration.controller.workload_helpers import Binder
    from timonel.controller import replicaset

    rs_type = ("apps/v1", "ReplicaSet")
    async with Client.from_kubeconfig(private_server.kubeconfig) as client:
        for n in (await client.list(NODES))["items"]:
            await client.delete(NODES, "", n["metadata"]["name"])
        hold = {"r2": [{"key": "hold", "value": "x", "effect": "NoSchedule"}]}
        async with FakeNodes(client, ["r1", "r2"], taints=hold, heartbeat_seconds=0.5) as nodes, \
                Binder(client, ["r1", "r2"]):
            ctx = make_context(client, node_monitor_grace_period=5.0, node_monitor_period=0.5,
                               extra={"allocate_node_cidrs": False})
            rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
                  "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                               "tolerations": unreachable_for(2),
                               "containers": [{"name": "c", "image": "x"}]}}}}
            async with running(ctx, node_lifecycle.run, replicaset.run):
                await client.create(rs_type, rs, namespace=NS)

                async def running_on(node: str) -> list[dict[str, Any]] | None:
                    pods = (await client.list(PODS, NS, label_selector="app=web"))["items"]
                    ok = [p for p in pods if p["spec"].get("nodeName") == node
                          and p.get("status", {}).get("phase") == "Running"
                          and not p["metadata"].get("deletionTimestamp")]
                    return ok if len(ok) == 2 else None

                first = await eventually(lambda: running_on("r1"), what="2 pods on r1")
                await client.patch(NODES, "", "r2", {"spec": {"taints": []}})
                await nodes.stop_heartbeat("r1")
                await eventually(lambda: running_on("r2"), timeout=60,
                                 what="2 replacement pods running on r2")
                for p in first:
                    old = await client.get(PODS, NS, p["metadata"]["name"])
                    assert old["metadata"].get("deletionTimestamp")  # evicted, stuck on dead r1
