"""Property tests on the scheduling core: whatever the cluster and the pods,
no node is ever given more than it has, every binding passes every filter
(checked again on a snapshot rebuilt from scratch, without the caches and
incremental indexes the scheduler uses), and a pod is only refused when no
node would take it."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timonel.scheduler import algorithm
from timonel.scheduler.config import default_profile
from timonel.scheduler.framework import FitError
from timonel.scheduler.nodeinfo import Snapshot
from timonel.scheduler.podinfo import new_pod_info
from timonel.scheduler.resources import pod_requests, resource_list
from timonel.scheduler.sampling import RoundRobin

ZONES = ["a", "b", "c"]
TAINT = {"key": "dedicated", "value": "x", "effect": "NoSchedule"}


@st.composite
def nodes(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(1, 8))):
        labels = {"kubernetes.io/hostname": f"n{i}"}
        if draw(st.integers(0, 4)):
            labels["topology.kubernetes.io/zone"] = draw(st.sampled_from(ZONES))
        if draw(st.booleans()):
            labels["disk"] = draw(st.sampled_from(["ssd", "hdd"]))
        out.append({"metadata": {"name": f"n{i}", "labels": labels},
                    "spec": {"taints": [TAINT] if draw(st.integers(0, 4)) == 0 else [],
                             "unschedulable": draw(st.integers(0, 6)) == 0},
                    "status": {"allocatable": {
                        "cpu": f"{draw(st.integers(0, 4000))}m",
                        "memory": f"{draw(st.integers(0, 4096))}Mi",
                        "pods": str(draw(st.integers(0, 6)))},
                        "conditions": [{"type": "Ready",
                                        "status": "False" if draw(st.integers(0, 8)) == 0
                                        else "True"}]}})
    return out


@st.composite
def pods(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(1, 25))):
        app = draw(st.sampled_from(["web", "db"]))
        c: dict[str, Any] = {"name": "c", "image": "x", "resources": {"requests": {
            "cpu": f"{draw(st.integers(0, 1500))}m",
            "memory": f"{draw(st.integers(0, 1500))}Mi"}}}
        if draw(st.integers(0, 4)) == 0:
            c["ports"] = [{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}]
        spec: dict[str, Any] = {"containers": [c], "priority": 0}
        if draw(st.integers(0, 3)) == 0:
            spec["initContainers"] = [{"name": "i", "image": "x", "resources": {"requests": {
                "cpu": f"{draw(st.integers(0, 3000))}m"}}}]
        if draw(st.integers(0, 3)) == 0:
            spec["nodeSelector"] = {"disk": draw(st.sampled_from(["ssd", "hdd"]))}
        if draw(st.integers(0, 3)) == 0:
            spec["tolerations"] = [{"key": "dedicated", "operator": "Exists"}]
        if draw(st.integers(0, 3)) == 0:
            spec["affinity"] = {"podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [{
                    "labelSelector": {"matchLabels": {"app": app}},
                    "topologyKey": draw(st.sampled_from(
                        ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]))}]}}
        if draw(st.booleans()):
            spec["topologySpreadConstraints"] = [{
                "maxSkew": draw(st.sampled_from([1, 1, 2])),
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": draw(st.sampled_from(
                    ["DoNotSchedule", "DoNotSchedule", "ScheduleAnyway"])),
                "labelSelector": {"matchLabels": {"app": app}}}]
        out.append({"metadata": {"name": f"p{i}", "namespace": "default", "uid": f"u{i}",
                                 "labels": {"app": app}}, "spec": spec})
    return out


def fresh(node_objs: list[dict[str, Any]], placed: list[dict[str, Any]]) -> Snapshot:
    snap = Snapshot()
    for n in node_objs:
        snap.set_node(n)
    for p in placed:
        snap.add_pod(new_pod_info(p))
    return snap


def fits_fresh(node_objs: list[dict[str, Any]], placed: list[dict[str, Any]],
               pod: dict[str, Any], node: str) -> bool:
    snap = fresh(node_objs, placed)
    try:
        prep = algorithm.pre_filter(default_profile(), snap, new_pod_info(pod))
    except FitError:
        return False
    return algorithm.run_filters(prep, snap.by_name[node]) is None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes(), pods(), st.integers(0, 2 ** 32))
def test_bindings_fit_and_refusals_are_justified(node_objs: list[dict[str, Any]],
                                                  pod_objs: list[dict[str, Any]],
                                                  seed: int) -> None:
    profile = default_profile()
    snap = fresh(node_objs, [])
    rr, rng = RoundRobin(), random.Random(seed)
    placed: list[dict[str, Any]] = []
    for p in pod_objs:
        try:
            result = algorithm.schedule(profile, snap, new_pod_info(p), rr, rng)
        except FitError:
            assert not any(fits_fresh(node_objs, placed, p, n["metadata"]["name"])
                           for n in node_objs), "refused a pod some node would take"
            continue
        assert fits_fresh(node_objs, placed, p, result.node), "binding violates a filter"
        bound = {**p, "spec": {**p["spec"], "nodeName": result.node}}
        placed.append(bound)
        snap.add_pod(new_pod_info(bound))

    for n in node_objs:
        name = n["metadata"]["name"]
        alloc = resource_list(n["status"]["allocatable"])
        mine = [pod_requests(p["spec"])[0] for p in placed if p["spec"]["nodeName"] == name]
        assert sum(r.milli_cpu for r in mine) <= alloc.milli_cpu
        assert sum(r.memory for r in mine) <= alloc.memory
        assert len(mine) <= alloc.pods
