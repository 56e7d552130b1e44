"""Plugins that look at other pods: InterPodAffinity and PodTopologySpread."""

from __future__ import annotations

from tests.unit.scheduler.conftest import info, node, pod, run_filter, run_scores, snapshot
from timonel.scheduler.framework import UNRESOLVABLE, UNSCHEDULABLE
from timonel.scheduler.plugins import interpodaffinity, podtopologyspread
from timonel.scheduler.plugins.spreadindex import index_of

IPA = interpodaffinity.new()
PTS = podtopologyspread.new()
ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"


def _term(labels: dict[str, str], key: str, **extra: object) -> dict[str, object]:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key, **extra}


def _zones() -> list[dict[str, object]]:
    return [node("a1", labels={ZONE: "a"}), node("a2", labels={ZONE: "a"}),
            node("b1", labels={ZONE: "b"}), node("nozone")]


def test_required_affinity_follows_matching_pods_by_topology() -> None:
    snap = snapshot(_zones(), [pod("db", labels={"app": "db"}, node_name="a1")])
    aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        _term({"app": "db"}, ZONE)]}}
    p = pod(affinity=aff)
    assert run_filter(IPA, p, snap, "a2") is None  # same zone as the db pod
    st = run_filter(IPA, p, snap, "b1")
    assert st is not None and st.code == UNRESOLVABLE
    assert st.reasons == ["node(s) didn't match pod affinity rules"]
    assert run_filter(IPA, p, snap, "nozone") is not None


def test_first_pod_of_a_self_affine_group_may_go_anywhere_with_the_key() -> None:
    snap = snapshot(_zones())
    aff = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        _term({"app": "web"}, ZONE)]}}
    p = pod(labels={"app": "web"}, affinity=aff)
    assert run_filter(IPA, p, snap, "b1") is None
    assert run_filter(IPA, p, snap, "nozone") is not None
    other = pod(labels={"app": "other"}, affinity=aff)
    assert run_filter(IPA, other, snap, "b1") is not None


def test_required_anti_affinity_both_ways() -> None:
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        _term({"app": "web"}, HOST)]}}
    snap = snapshot(_zones(), [pod("w0", labels={"app": "web"}, node_name="a1", affinity=anti)])
    # The incoming pod's own anti-affinity.
    st = run_filter(IPA, pod(labels={"app": "web"}, affinity=anti), snap, "a1")
    assert st is not None and st.code == UNSCHEDULABLE
    assert st.reasons == ["node(s) didn't match pod anti-affinity rules"]
    assert run_filter(IPA, pod(labels={"app": "web"}, affinity=anti), snap, "a2") is None
    # An existing pod's anti-affinity repels a pod without any terms of its own.
    st = run_filter(IPA, pod(labels={"app": "web"}), snap, "a1")
    assert st is not None and st.reasons == [
        "node(s) didn't satisfy existing pods anti-affinity rules"]
    assert run_filter(IPA, pod(labels={"app": "api"}), snap, "a1") is None


def test_affinity_namespaces_and_namespace_selector() -> None:
    snap = snapshot(_zones(), [pod("db", namespace="data", labels={"app": "db"}, node_name="b1")])
    snap.namespace_labels = {"data": {"team": "x"}, "default": {}}
    own_ns = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        _term({"app": "db"}, ZONE)]}}
    assert run_filter(IPA, pod(affinity=own_ns), snap, "b1") is not None  # db is elsewhere
    named = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        _term({"app": "db"}, ZONE, namespaces=["data"])]}}
    assert run_filter(IPA, pod(affinity=named), snap, "b1") is None
    by_label = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        _term({"app": "db"}, ZONE, namespaceSelector={"matchLabels": {"team": "x"}})]}}
    assert run_filter(IPA, pod(affinity=by_label), snap, "b1") is None
    assert run_filter(IPA, pod(affinity=by_label), snap, "a1") is not None
    everywhere = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        _term({"app": "db"}, ZONE, namespaceSelector={})]}}
    assert run_filter(IPA, pod(affinity=everywhere), snap, "b1") is None


def test_preferred_affinity_and_anti_affinity_scores() -> None:
    snap = snapshot(_zones(), [pod("cache", labels={"app": "cache"}, node_name="a1"),
                               pod("noisy", labels={"app": "noisy"}, node_name="b1")])
    pref = {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "podAffinityTerm": _term({"app": "cache"}, ZONE)}]},
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "podAffinityTerm": _term({"app": "noisy"}, ZONE)}]}}
    scores = run_scores(IPA, pod(affinity=pref), snap, ["a1", "a2", "b1", "nozone"])
    assert scores == {"a1": 100, "a2": 100, "b1": 0, "nozone": 50}


def _spread(max_skew: int = 1, key: str = ZONE, when: str = "DoNotSchedule",
            **extra: object) -> list[dict[str, object]]:
    return [{"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": when,
             "labelSelector": {"matchLabels": {"app": "s"}}, **extra}]


def test_spread_filter_max_skew() -> None:
    pods = [pod(labels={"app": "s"}, node_name="a1"), pod(labels={"app": "s"}, node_name="a2")]
    snap = snapshot(_zones(), pods)
    p = pod(labels={"app": "s"}, topologySpreadConstraints=_spread())
    st = run_filter(PTS, p, snap, "a1")  # zone a: 2 + 1 - 0 > 1
    assert st is not None and st.code == UNSCHEDULABLE
    assert st.reasons == ["node(s) didn't match pod topology spread constraints"]
    assert run_filter(PTS, p, snap, "b1") is None
    st = run_filter(PTS, p, snap, "nozone")
    assert st is not None and st.code == UNRESOLVABLE and st.reasons == [
        "node(s) didn't match pod topology spread constraints (missing required label)"]
    loose = pod(labels={"app": "s"}, topologySpreadConstraints=_spread(3))
    assert run_filter(PTS, loose, snap, "a1") is None


def test_spread_min_domains_and_node_affinity_policy() -> None:
    snap = snapshot(_zones(), [pod(labels={"app": "s"}, node_name="b1")])
    # Two zones exist; minDomains 3 makes the global minimum 0.
    p = pod(labels={"app": "s"}, topologySpreadConstraints=_spread(1, minDomains=3))
    st = run_filter(PTS, p, snap, "b1")
    assert st is not None  # 1 + 1 - 0 > 1
    assert run_filter(PTS, p, snap, "a1") is None
    # nodeAffinityPolicy Honor (default): zone b is not counted when the
    # pod may only go to zone a, so zone a alone is the baseline.
    sel = {"nodeSelector": {ZONE: "a"}}
    honor = pod(labels={"app": "s"}, topologySpreadConstraints=_spread(1), **sel)
    assert run_filter(PTS, honor, snap, "a1") is None
    snap2 = snapshot(_zones(), [pod(labels={"app": "s"}, node_name="a1")])
    ignore = pod(labels={"app": "s"}, topologySpreadConstraints=_spread(
        1, nodeAffinityPolicy="Ignore"), **sel)
    assert run_filter(PTS, ignore, snap2, "a2") is not None  # b has 0, a would have 2
    honored = pod(labels={"app": "s"}, topologySpreadConstraints=_spread(1), **sel)
    assert run_filter(PTS, honored, snap2, "a2") is None


def test_spread_node_taints_policy() -> None:
    taint = [{"key": "k", "effect": "NoSchedule"}]
    nodes = [node("a1", labels={ZONE: "a"}), node("b1", labels={ZONE: "b"}, taints=taint)]
    snap = snapshot(nodes, [pod(labels={"app": "s"}, node_name="a1")])
    ignore = pod(labels={"app": "s"}, topologySpreadConstraints=_spread(1))
    assert run_filter(PTS, ignore, snap, "a1") is not None  # tainted b still counts with 0
    honor = pod(labels={"app": "s"}, topologySpreadConstraints=_spread(
        1, nodeTaintsPolicy="Honor"))
    assert run_filter(PTS, honor, snap, "a1") is None


def test_spread_index_follows_pods_and_nodes() -> None:
    snap = snapshot(_zones())
    p = pod(labels={"app": "s"}, topologySpreadConstraints=_spread())
    assert run_filter(PTS, p, snap, "a1") is None
    e = index_of(snap).entries
    assert len(e) == 1
    first = info(pod(labels={"app": "s"}, node_name="a1"))
    snap.add_pod(first)
    snap.add_pod(info(pod(labels={"app": "s"}, node_name="a2")))
    assert run_filter(PTS, p, snap, "a1") is not None
    snap.remove_pod(first)
    (entry,) = index_of(snap).entries.values()
    assert entry.counts == {"a": 1} and entry.minimum() == 0
    assert run_filter(PTS, p, snap, "b1") is None
    snap.set_node(node("c1", labels={ZONE: "c"}))  # a new, empty zone
    snap.add_pod(info(pod(labels={"app": "s"}, node_name="b1")))
    assert run_filter(PTS, p, snap, "b1") is not None
    assert run_filter(PTS, p, snap, "c1") is None


def test_spread_score_prefers_emptier_domains() -> None:
    pods = [pod(labels={"app": "s"}, node_name="a1"), pod(labels={"app": "s"}, node_name="a2")]
    snap = snapshot(_zones(), pods)
    p = pod(labels={"app": "s"}, topologySpreadConstraints=_spread(1, when="ScheduleAnyway"))
    scores = run_scores(PTS, p, snap)
    assert scores["b1"] == 100 and scores["a1"] < scores["b1"] and scores["nozone"] == 0
