"""Pods land where the rules say, through a real API server and fake nodes."""

from __future__ import annotations

from collections import Counter

from tests.integration.scheduler.conftest import (
    PODS,
    FakeNodes,
    events_for,
    placements,
    pod,
    running_scheduler,
    wait_for,
)
from timonel.api.client import Client


async def test_node_selector_and_affinity_choose_the_node(client: Client, ns: str) -> None:
    labels = {"n-ssd": {"disk": "ssd"}, "n-hdd": {"disk": "hdd"}, "n-none": {}}
    async with FakeNodes(client, list(labels), labels=labels), running_scheduler(client):
        await client.create(PODS, pod("sel", nodeSelector={"disk": "ssd"}), namespace=ns)
        aff = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": "disk", "operator": "In", "values": ["hdd"]}]}]}}}
        await client.create(PODS, pod("aff", affinity=aff), namespace=ns)
        pref = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "preference": {"matchExpressions": [
                {"key": "disk", "operator": "DoesNotExist"}]}}]}}
        await client.create(PODS, pod("pref", affinity=pref), namespace=ns)
        got = await placements(client, ns, ["sel", "aff", "pref"])
        assert got == {"sel": "n-ssd", "aff": "n-hdd", "pref": "n-none"}
        ev = await wait_for(lambda: events_for(client, ns, "sel", "Scheduled"), what="event")
        assert ev[0]["message"] == f"Successfully assigned {ns}/sel to n-ssd"
        assert ev[0]["type"] == "Normal" and ev[0]["source"]["component"] == "default-scheduler"


async def test_pods_spread_evenly(client: Client, ns: str) -> None:
    names = ["sp-a", "sp-b", "sp-c"]
    async with FakeNodes(client, names), running_scheduler(client):
        for i in range(9):
            await client.create(PODS, pod(f"p{i}", labels={"app": "web"}), namespace=ns)
        got = await placements(client, ns, [f"p{i}" for i in range(9)])
        assert sorted(Counter(got.values()).values()) == [3, 3, 3]


async def test_topology_spread_keeps_zones_within_max_skew(client: Client, ns: str) -> None:
    zones = {"z-a1": "a", "z-a2": "a", "z-a3": "a", "z-b1": "b"}
    labels = {n: {"topology.kubernetes.io/zone": z} for n, z in zones.items()}
    tsc = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app": "spread"}}}]
    async with FakeNodes(client, list(zones), labels=labels), running_scheduler(client):
        for i in range(6):
            await client.create(PODS, pod(f"s{i}", labels={"app": "spread"},
                                          topologySpreadConstraints=tsc), namespace=ns)
        got = await placements(client, ns, [f"s{i}" for i in range(6)])
        per_zone = Counter(zones[n] for n in got.values())
        assert per_zone == {"a": 3, "b": 3}


async def test_anti_affinity_keeps_replicas_apart(client: Client, ns: str) -> None:
    names = ["aa-1", "aa-2", "aa-3"]
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "db"}},
         "topologyKey": "kubernetes.io/hostname"}]}}
    async with FakeNodes(client, names), running_scheduler(client):
        for i in range(4):
            await client.create(PODS, pod(f"db{i}", labels={"app": "db"}, affinity=anti),
                                namespace=ns)

        async def three_bound() -> dict[str, str] | None:
            items = (await client.list(PODS, ns))["items"]
            bound = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in items
                     if p["spec"].get("nodeName")}
            return bound if len(bound) == 3 else None

        bound = await wait_for(three_bound, what="three replicas bound")
        assert sorted(bound.values()) == names
        (left,) = {f"db{i}" for i in range(4)} - set(bound)
        ev = await wait_for(lambda: events_for(client, ns, left, "FailedScheduling"))
        assert ev[0]["message"] == (
            "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. "
            "preemption: 0/3 nodes are available: 3 No preemption victims found for "
            "incoming pod.")


async def test_taints_repel_and_cordoned_node_gets_nothing(client: Client, ns: str) -> None:
    taints = {"t-tainted": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}
    async with FakeNodes(client, ["t-tainted", "t-cordoned", "t-free"], taints=taints), \
            running_scheduler(client) as sched:
        node = await client.get(("v1", "Node"), "", "t-cordoned")
        node["spec"]["unschedulable"] = True
        await client.update(("v1", "Node"), node)

        async def cordon_seen() -> bool:
            ni = sched.cache.snapshot.by_name.get("t-cordoned")
            return ni is not None and ni.unschedulable

        await wait_for(cordon_seen, what="scheduler sees the cordon")
        for i in range(5):
            await client.create(PODS, pod(f"plain{i}"), namespace=ns)
        tol = [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
        await client.create(PODS, pod("tolerant", tolerations=tol,
                                      nodeSelector={"kubernetes.io/hostname": "t-tainted"}),
                            namespace=ns)
        got = await placements(client, ns, [*(f"plain{i}" for i in range(5)), "tolerant"])
        assert got.pop("tolerant") == "t-tainted"
        assert set(got.values()) == {"t-free"}



async def test_scheduling_gates_hold_a_pod_and_metrics_count_attempts(client: Client,
                                                                        ns: str) -> None:
    async with FakeNodes(client, ["g-1"]), running_scheduler(client) as sched:
        await client.create(PODS, pod("gated", schedulingGates=[{"name": "example.com/wait"}]),
                            namespace=ns)
        await client.create(PODS, pod("free"), namespace=ns)
        assert await placements(client, ns, ["free"]) == {"free": "g-1"}
        assert not (await client.get(PODS, ns, "gated"))["spec"].get("nodeName")
        gated = await client.get(PODS, ns, "gated")
        gated["spec"]["schedulingGates"] = []
        await client.update(PODS, gated)
        assert await placements(client, ns, ["gated"]) == {"gated": "g-1"}
        reg = sched.metrics.registry
        assert reg.get_sample_value("scheduler_schedule_attempts_total",
                                    {"result": "scheduled", "profile": "default-scheduler"}) == 2
        assert reg.get_sample_value("scheduler_pending_pods", {"queue": "active"}) == 0
        assert reg.get_sample_value("scheduler_scheduling_attempt_duration_seconds_count",
                                    {"result": "scheduled", "profile": "default-scheduler"}) == 2
