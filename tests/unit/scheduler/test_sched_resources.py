"""Pod requests (init containers, sidecars, overhead), NodeResourcesFit and
its scoring strategies, NodeResourcesBalancedAllocation."""

from __future__ import annotations

import pytest

from tests.unit.scheduler.conftest import node, pod, run_filter, run_scores, snapshot
from timonel.scheduler.framework import UNRESOLVABLE, UNSCHEDULABLE
from timonel.scheduler.plugins import noderesources
from timonel.scheduler.resources import DEFAULT_MEMORY, DEFAULT_MILLI_CPU, pod_requests


def _c(name: str, cpu: str, **extra: object) -> dict[str, object]:
    return {"name": name, "image": "x", "resources": {"requests": {"cpu": cpu}}, **extra}


def test_requests_sum_containers_and_take_the_largest_init_container() -> None:
    spec = {"containers": [_c("a", "200m"), _c("b", "300m")],
            "initContainers": [_c("i1", "400m"), _c("i2", "900m")]}
    r, nz_cpu, _ = pod_requests(spec)
    assert r.milli_cpu == 900 and nz_cpu == 900
    spec["initContainers"] = [_c("i1", "100m")]
    assert pod_requests(spec)[0].milli_cpu == 500


def test_sidecars_run_alongside_and_overhead_is_added() -> None:
    # A sidecar (restartPolicy Always) adds to the app containers and to
    # every later init container.
    spec = {"containers": [_c("app", "500m")],
            "initContainers": [_c("side", "200m", restartPolicy="Always"), _c("late", "600m")],
            "overhead": {"cpu": "50m", "memory": "10Mi"}}
    r, _, _ = pod_requests(spec)
    assert r.milli_cpu == max(500 + 200, 600 + 200) + 50
    assert r.memory == 10 * 1024 * 1024 and r.pods == 1


def test_containers_without_requests_count_as_defaults_for_scoring() -> None:
    r, nz_cpu, nz_mem = pod_requests({"containers": [{"name": "c", "image": "x"}]})
    assert r.milli_cpu == 0 and r.memory == 0
    assert (nz_cpu, nz_mem) == (DEFAULT_MILLI_CPU, DEFAULT_MEMORY)


def test_extended_resources_and_limits_only() -> None:
    spec = {"containers": [{"name": "c", "image": "x", "resources": {
        "requests": {"example.com/gpu": "2", "hugepages-2Mi": "4Mi"}}}]}
    r, _, _ = pod_requests(spec)
    assert r.scalar == {"example.com/gpu": 2, "hugepages-2Mi": 4 * 1024 * 1024}


FIT = noderesources.fit()


def test_fit_passes_and_fails_with_every_missing_resource() -> None:
    existing = pod("e", "3", "6Gi", node_name="n")
    snap = snapshot([node("n", cpu="4", memory="8Gi")], [existing])
    assert run_filter(FIT, pod(cpu="1", memory="2Gi"), snap, "n") is None
    st = run_filter(FIT, pod(cpu="1500m", memory="3Gi"), snap, "n")
    assert st is not None and st.code == UNSCHEDULABLE
    assert st.reasons == ["Insufficient cpu", "Insufficient memory"]
    # More than the whole node has: preemption cannot help.
    st = run_filter(FIT, pod(cpu="5"), snap, "n")
    assert st is not None and st.code == UNRESOLVABLE and st.reasons == ["Insufficient cpu"]


def test_fit_counts_pods_and_extended_resources() -> None:
    snap = snapshot([node("n", pods="1")], [pod("e", node_name="n")])
    st = run_filter(FIT, pod(), snap, "n")
    assert st is not None and st.reasons == ["Too many pods"]
    gpu = pod()
    gpu["spec"]["containers"][0]["resources"] = {"requests": {"example.com/gpu": "1"}}
    st = run_filter(FIT, gpu, snapshot([node("m")]), "m")
    assert st is not None and st.reasons == ["Insufficient example.com/gpu"]
    ignoring = noderesources.fit({"ignoredResources": ["example.com/gpu"]})
    assert run_filter(ignoring, gpu, snapshot([node("m")]), "m") is None


def test_least_allocated_prefers_emptier_nodes() -> None:
    snap = snapshot([node("empty", cpu="4", memory="8Gi"), node("busy", cpu="4", memory="8Gi")],
                    [pod("e", "2", "4Gi", node_name="busy")])
    scores = run_scores(FIT, pod(cpu="1", memory="2Gi"), snap)
    # ((4-1)/4*100 + (8-2)/8*100) / 2 = 75 and ((4-3)/4*100 + (8-6)/8*100) / 2 = 25
    assert scores == {"empty": 75, "busy": 25}


def test_most_allocated_and_requested_to_capacity_ratio() -> None:
    snap = snapshot([node("empty"), node("busy")], [pod("e", "2", "4Gi", node_name="busy")])
    most = noderesources.fit({"scoringStrategy": {"type": "MostAllocated"}})
    assert run_scores(most, pod(cpu="1", memory="2Gi"), snap) == {"empty": 25, "busy": 75}
    rtcr = noderesources.fit({"scoringStrategy": {
        "type": "RequestedToCapacityRatio",
        "resources": [{"name": "cpu", "weight": 1}],
        "requestedToCapacityRatio": {"shape": [{"utilization": 0, "score": 0},
                                               {"utilization": 100, "score": 10}]}}})
    assert run_scores(rtcr, pod(cpu="1", memory="2Gi"), snap) == {"empty": 25, "busy": 75}
    with pytest.raises(ValueError, match="unknown scoring strategy"):
        noderesources.fit({"scoringStrategy": {"type": "Random"}})


def test_balanced_allocation_prefers_even_cpu_and_memory_use() -> None:
    snap = snapshot([node("even", cpu="4", memory="4Gi"), node("skewed", cpu="4", memory="4Gi")],
                    [pod("e", "2", node_name="skewed")])
    scores = run_scores(noderesources.balanced(), pod(cpu="1", memory="1Gi"), snap)
    # even: 1/4 and 1/4 -> 100; skewed: 3/4 cpu vs 1/4 memory -> std 0.25 -> 75
    assert scores == {"even": 100, "skewed": 75}
