"""Unschedulable pods are explained (event and condition) and placed as soon
as a fitting node appears; preemption evicts lower-priority pods; the
`timonel scheduler` command campaigns for its Lease."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import urllib.request

from tests.integration.conftest import ApiServer
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
from timonel.api.errors import ApiError
from timonel.api.storage.etcd_process import free_port

TIMONEL = os.path.join(os.path.dirname(sys.executable), "timonel")


def _scheduled_condition(p: dict) -> dict | None:  # type: ignore[type-arg]
    for c in (p.get("status") or {}).get("conditions") or []:
        if c["type"] == "PodScheduled":
            return c  # type: ignore[no-any-return]
    return None


async def test_unschedulable_pod_is_explained_then_placed_when_a_node_fits(
        client: Client, ns: str) -> None:
    taints = {"u-cp": [{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]}
    async with FakeNodes(client, ["u-small", "u-cp"], cpu="2", taints=taints) as nodes, \
            running_scheduler(client):
        await client.create(PODS, pod("big", cpu="3"), namespace=ns)
        want = ("0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint "
                "{node-role.kubernetes.io/control-plane: }. preemption: 0/2 nodes are available: "
                "2 Preemption is not helpful for scheduling.")
        ev = await wait_for(lambda: events_for(client, ns, "big", "FailedScheduling"),
                            what="FailedScheduling event")
        assert ev[0]["message"] == want and ev[0]["type"] == "Warning"

        async def condition() -> dict | None:  # type: ignore[type-arg]
            return _scheduled_condition(await client.get(PODS, ns, "big"))

        cond = await wait_for(condition, what="PodScheduled condition")
        assert (cond["status"], cond["reason"], cond["message"]) == ("False", "Unschedulable", want)
        nodes.spec = ("8", "16Gi", "110")
        await nodes.add_node("u-large")
        got = await placements(client, ns, ["big"], timeout=20)
        assert got == {"big": "u-large"}
        await wait_for(lambda: _condition_true(client, ns, "big"), what="PodScheduled=True")


async def _condition_true(client: Client, ns: str, name: str) -> bool:
    c = _scheduled_condition(await client.get(PODS, ns, name))
    return c is not None and c["status"] == "True"


async def test_preemption_evicts_a_lower_priority_pod(client: Client, ns: str) -> None:
    pc = {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
          "metadata": {"name": f"high-{ns}"}, "value": 1000}
    await client.create(("scheduling.k8s.io/v1", "PriorityClass"), pc)
    async with FakeNodes(client, ["pr-1"], cpu="1"), running_scheduler(client) as sched:
        await client.create(PODS, pod("low", cpu="700m", terminationGracePeriodSeconds=1),
                            namespace=ns)
        assert await placements(client, ns, ["low"]) == {"low": "pr-1"}
        await wait_for(lambda: _known_class(sched, f"high-{ns}"), what="PriorityClass seen")
        await client.create(PODS, pod("high", cpu="700m", priorityClassName=f"high-{ns}"),
                            namespace=ns)

        async def low_gone() -> bool:
            try:
                await client.get(PODS, ns, "low")
            except ApiError as e:
                return e.code == 404
            return False

        await wait_for(low_gone, what="victim deleted")
        assert await placements(client, ns, ["high"]) == {"high": "pr-1"}
        ev = await events_for(client, ns, "low", "Preempted")
        assert ev and ev[0]["message"].endswith("on node pr-1")
        high = await client.get(PODS, ns, "high")
        assert high["status"].get("nominatedNodeName") in (None, "pr-1")
        # A pod that may not preempt says so.
        never = f"never-{ns}"
        await client.create(("scheduling.k8s.io/v1", "PriorityClass"), {
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": {"name": never}, "value": 2000, "preemptionPolicy": "Never"})
        await wait_for(lambda: _known_class(sched, never), what="PriorityClass seen")
        await client.create(PODS, pod("polite", cpu="700m", priorityClassName=never),
                            namespace=ns)
        ev = await wait_for(lambda: events_for(client, ns, "polite", "FailedScheduling"))
        assert ev[0]["message"] == ("0/1 nodes are available: 1 Insufficient cpu. "
                                    "not eligible due to preemptionPolicy=Never.")
        assert (await client.get(PODS, ns, "high"))["spec"]["nodeName"] == "pr-1"


async def _known_class(sched, name: str) -> bool:  # type: ignore[no-untyped-def]
    return name in sched.cache.priority_classes


async def test_scheduler_command_with_leader_election_schedules(
        client: Client, ns: str, sched_server: ApiServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "sched.yaml"
    cfg.write_text("apiVersion: kubescheduler.config.k8s.io/v1\n"
                   "kind: KubeSchedulerConfiguration\n"
                   "profiles:\n- schedulerName: cli-scheduler\n"
                   "  plugins:\n    score:\n      disabled: [{name: NodeResourcesFit}]\n")
    port = free_port()
    with open(tmp_path / "sched.log", "wb") as log:
        proc = subprocess.Popen([TIMONEL, "scheduler", "--kubeconfig", sched_server.kubeconfig,
                                 "--config", str(cfg), "--leader-elect",
                                 "--metrics-port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        async with FakeNodes(client, ["cli-1"]):
            await client.create(PODS, pod("by-cli", schedulerName="cli-scheduler"), namespace=ns)
            await client.create(PODS, pod("not-mine", schedulerName="someone-else"),
                                namespace=ns)
            assert await placements(client, ns, ["by-cli"]) == {"by-cli": "cli-1"}
            lease = await client.get(("coordination.k8s.io/v1", "Lease"), "kube-system",
                                     "kube-scheduler")
            assert lease["spec"]["holderIdentity"]
            await asyncio.sleep(0.5)
            assert not (await client.get(PODS, ns, "not-mine"))["spec"].get("nodeName")
            text = await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10)
                .read().decode())
            assert 'scheduler_schedule_attempts_total{profile="cli-scheduler",result="scheduled"} 1.0' \
                in text
            assert 'scheduler_pending_pods{queue="active"} 0.0' in text
    finally:
        proc.terminate()
        proc.wait(15)


def test_scheduler_command_rejects_a_bad_config(tmp_path, sched_server: ApiServer) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("profiles:\n- schedulerName: x\n  plugins:\n    filter:\n"
                   "      enabled: [{name: NoSuchPlugin}]\n")
    r = subprocess.run([TIMONEL, "scheduler", "--kubeconfig", sched_server.kubeconfig,
                        "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    assert "unknown plugin 'NoSuchPlugin'" in r.stderr and "Traceback" not in r.stderr
