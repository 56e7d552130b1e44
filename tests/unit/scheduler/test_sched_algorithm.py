"""One decision end to end on a snapshot: failure messages like upstream's,
sampling, nominated nodes, preemption choices, the signature cache."""

from __future__ import annotations

import random

import pytest

from tests.unit.scheduler.conftest import info, node, pod, snapshot
from timonel.scheduler import algorithm, preemption
from timonel.scheduler.config import default_profile
from timonel.scheduler.framework import Diagnosis, FitError, Status, fit_error_message
from timonel.scheduler.sampling import RoundRobin, num_feasible_nodes_to_find

CP = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


def _schedule(snap, p, rr=None):  # type: ignore[no-untyped-def]
    return algorithm.schedule(default_profile(), snap, info(p), rr or RoundRobin(),
                              random.Random(0))


def test_failure_message_counts_reasons_like_upstream() -> None:
    nodes = [node(f"w{i}", cpu="1") for i in range(2)] + [node(f"cp{i}", taints=[CP])
                                                         for i in range(3)]
    with pytest.raises(FitError) as e:
        _schedule(snapshot(nodes), pod(cpu="2"))
    assert str(e.value) == ("0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had "
                            "untolerated taint {node-role.kubernetes.io/control-plane: }.")
    assert e.value.diagnosis.unschedulable_plugins == {"NodeResourcesFit", "TaintToleration"}


def test_message_sorts_counts_as_strings_and_adds_post_filter() -> None:
    d = Diagnosis(node_statuses={f"n{i}": Status("Unschedulable", ["b"]) for i in range(10)})
    d.node_statuses["x"] = Status("Unschedulable", ["a", "c"])
    d.node_statuses["y"] = Status("Unschedulable", ["a"])
    d.post_filter_msg = "preemption: 0/12 nodes are available: 12 Preemption is not helpful " \
                        "for scheduling."
    assert fit_error_message(12, d) == (
        "0/12 nodes are available: 1 c, 10 b, 2 a. preemption: 0/12 nodes are available: "
        "12 Preemption is not helpful for scheduling.")
    assert fit_error_message(3, Diagnosis(pre_filter_msg="boom")) == "0/3 nodes are available: boom."


def test_no_nodes() -> None:
    with pytest.raises(algorithm.NoNodesError, match="no nodes available to schedule pods"):
        _schedule(snapshot([]), pod())


@pytest.mark.parametrize(("nodes", "pct", "want"), [
    (50, 0, 50), (99, 0, 99), (100, 0, 100), (500, 0, 230), (1000, 0, 420), (5000, 0, 500),
    (6000, 0, 300),  # 50 - 6000/125 < 5: the 5 % floor
    (20000, 0, 1000), (1000, 30, 300), (1000, 5, 100), (1000, 100, 1000),
])
def test_adaptive_percentage_of_nodes_to_score(nodes: int, pct: int, want: int) -> None:
    assert num_feasible_nodes_to_find(pct, nodes) == want


def test_sampling_stops_early_and_rotates_the_start() -> None:
    snap = snapshot([node(f"n{i:03}") for i in range(200)])
    rr = RoundRobin()
    r = _schedule(snap, pod(), rr)
    assert r.feasible == 100 and r.evaluated == 100 and rr.next_start == 100
    r = _schedule(snap, pod(), rr)
    assert rr.next_start == 0
    assert 100 <= int(r.node[1:]) < 200


def test_assumed_pods_count_for_the_next_decision() -> None:
    snap = snapshot([node("a", cpu="1"), node("b", cpu="1")])
    placed = []
    for _ in range(2):
        pi = info(pod(cpu="600m"))
        r = _schedule(snap, pod(cpu="600m"))
        pi.node_name = r.node
        snap.add_pod(pi)
        placed.append(r.node)
    assert sorted(placed) == ["a", "b"]
    with pytest.raises(FitError, match="2 Insufficient cpu"):
        _schedule(snap, pod(cpu="600m"))


def test_signature_cache_sees_node_changes() -> None:
    snap = snapshot([node("a", cpu="1")])
    assert _schedule(snap, pod(cpu="500m")).node == "a"
    snap.add_pod(info(pod(cpu="800m", node_name="a")))
    with pytest.raises(FitError):
        _schedule(snap, pod(cpu="500m"))
    snap.set_node(node("a", cpu="2"))
    assert _schedule(snap, pod(cpu="500m")).node == "a"


def test_nominated_node_is_tried_first_and_reserved_for_equal_priority() -> None:
    snap = snapshot([node("a", cpu="1"), node("b", cpu="1")])
    waiting = info(pod("waiting", cpu="800m", priority=10))
    snap.nominated["a"] = {waiting.key: waiting}
    # A lower-priority pod must leave the nominated room alone.
    for _ in range(5):
        assert _schedule(snap, pod(cpu="500m", priority=0)).node == "b"
    p = pod(cpu="500m", priority=0)
    p["status"] = {"nominatedNodeName": "b"}
    assert _schedule(snap, p).node == "b"


def test_preemption_picks_the_node_with_the_least_important_victims() -> None:
    profile = default_profile()
    pods = [pod("low-a", cpu="800m", priority=1, node_name="a"),
            pod("mid-b", cpu="800m", priority=5, node_name="b"),
            pod("high-c", cpu="800m", priority=100, node_name="c")]
    snap = snapshot([node(n, cpu="1") for n in "abc"], pods)
    with pytest.raises(FitError) as e:
        algorithm.schedule(profile, snap, info(pod(cpu="800m", priority=50)), RoundRobin(),
                           random.Random(0))
    cand, msg = preemption.find_candidate(profile, snap, e.value, "PreemptLowerPriority")
    assert msg == "" and cand is not None
    assert cand.node == "a" and [v.name for v in cand.victims] == ["low-a"]


def test_preemption_keeps_victims_it_does_not_need() -> None:
    profile = default_profile()
    pods = [pod("small", cpu="200m", priority=1, node_name="a"),
            pod("big", cpu="700m", priority=2, node_name="a")]
    snap = snapshot([node("a", cpu="1")], pods)
    with pytest.raises(FitError) as e:
        algorithm.schedule(profile, snap, info(pod(cpu="500m", priority=9)), RoundRobin(),
                           random.Random(0))
    cand, _ = preemption.find_candidate(profile, snap, e.value, "PreemptLowerPriority")
    assert cand is not None and [v.name for v in cand.victims] == ["big"]


def test_preemption_messages() -> None:
    profile = default_profile()
    snap = snapshot([node("a", cpu="1"), node("cp", taints=[CP])],
                    [pod("peer", cpu="800m", priority=50, node_name="a")])
    with pytest.raises(FitError) as e:
        algorithm.schedule(profile, snap, info(pod(cpu="800m", priority=50)), RoundRobin(),
                           random.Random(0))
    cand, msg = preemption.find_candidate(profile, snap, e.value, "PreemptLowerPriority")
    assert cand is None
    assert msg == ("preemption: 0/2 nodes are available: 1 No preemption victims found for "
                   "incoming pod, 1 Preemption is not helpful for scheduling.")
    _, msg = preemption.find_candidate(profile, snap, e.value, "Never")
    assert msg == "not eligible due to preemptionPolicy=Never."
