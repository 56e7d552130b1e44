"""Node-level plugins: NodeName, NodeUnschedulable, NodeReady,
TaintToleration, NodeAffinity, NodePorts, ImageLocality."""

from __future__ import annotations

import pytest

from tests.unit.scheduler.conftest import node, pod, run_filter, run_scores, snapshot
from timonel.scheduler.framework import UNRESOLVABLE, UNSCHEDULABLE
from timonel.scheduler.plugins import (
    imagelocality,
    nodeaffinity,
    nodename,
    nodeports,
    nodeready,
    nodeunschedulable,
    tainttoleration,
)


def test_node_name() -> None:
    snap = snapshot([node("a"), node("b")])
    assert run_filter(nodename.new(), pod(node_name="a"), snap, "a") is None
    st = run_filter(nodename.new(), pod(node_name="a"), snap, "b")
    assert st is not None and st.code == UNRESOLVABLE
    assert st.reasons == ["node(s) didn't match the requested node name"]
    assert run_filter(nodename.new(), pod(), snap, "b") is None


def test_node_unschedulable() -> None:
    snap = snapshot([node("cordoned", unschedulable=True), node("ok")])
    st = run_filter(nodeunschedulable.new(), pod(), snap, "cordoned")
    assert st is not None and st.reasons == ["node(s) were unschedulable"]
    assert run_filter(nodeunschedulable.new(), pod(), snap, "ok") is None
    tol = [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists",
            "effect": "NoSchedule"}]
    assert run_filter(nodeunschedulable.new(), pod(tolerations=tol), snap, "cordoned") is None


def test_node_ready() -> None:
    snap = snapshot([node("down", ready=False), node("up")])
    st = run_filter(nodeready.new(), pod(), snap, "down")
    assert st is not None and st.code == UNRESOLVABLE and st.reasons == ["node(s) were not ready"]
    assert run_filter(nodeready.new(), pod(), snap, "up") is None
    daemon = [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]
    assert run_filter(nodeready.new(), pod(tolerations=daemon), snap, "down") is None


TAINT = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}


@pytest.mark.parametrize(("tolerations", "fits"), [
    ([], False),
    ([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}], True),
    ([{"operator": "Exists"}], True),  # empty key with Exists tolerates everything
    ([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists",
       "effect": "NoExecute"}], False),
    ([{"key": "node-role.kubernetes.io/control-plane", "value": "x"}], False),
])
def test_taint_toleration_filter(tolerations: list[dict[str, str]], fits: bool) -> None:
    snap = snapshot([node("cp", taints=[TAINT])])
    st = run_filter(tainttoleration.new(), pod(tolerations=tolerations), snap, "cp")
    if fits:
        assert st is None
    else:
        assert st is not None and st.code == UNRESOLVABLE
        assert st.reasons == ["node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"]


def test_taint_toleration_no_execute_and_value_in_message() -> None:
    snap = snapshot([node("n", taints=[{"key": "k", "value": "v", "effect": "NoExecute"}])])
    st = run_filter(tainttoleration.new(), pod(), snap, "n")
    assert st is not None and st.reasons == ["node(s) had untolerated taint {k: v}"]
    assert run_filter(tainttoleration.new(),
                      pod(tolerations=[{"key": "k", "operator": "Equal", "value": "v"}]),
                      snap, "n") is None


def test_taint_toleration_score_prefers_fewer_intolerable_prefer_no_schedule() -> None:
    soft = {"key": "a", "value": "1", "effect": "PreferNoSchedule"}
    soft2 = {"key": "b", "value": "1", "effect": "PreferNoSchedule"}
    snap = snapshot([node("clean"), node("one", taints=[soft]), node("two", taints=[soft, soft2])])
    assert run_scores(tainttoleration.new(), pod(), snap) == {"clean": 100, "one": 50, "two": 0}
    tol = [{"key": "b", "operator": "Exists", "effect": "PreferNoSchedule"}]
    assert run_scores(tainttoleration.new(), pod(tolerations=tol), snap) == {
        "clean": 100, "one": 0, "two": 0}


def _affinity(*terms: list[dict[str, object]]) -> dict[str, object]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": t} for t in terms]}}}


@pytest.mark.parametrize(("spec", "fits"), [
    ({"nodeSelector": {"disk": "ssd"}}, True),
    ({"nodeSelector": {"disk": "hdd"}}, False),
    ({"nodeSelector": {"disk": "ssd", "gpu": "yes"}}, False),
    ({"affinity": _affinity([{"key": "disk", "operator": "In", "values": ["ssd", "nvme"]}])}, True),
    ({"affinity": _affinity([{"key": "disk", "operator": "NotIn", "values": ["ssd"]}])}, False),
    ({"affinity": _affinity([{"key": "gpu", "operator": "DoesNotExist"}])}, True),
    ({"affinity": _affinity([{"key": "cores", "operator": "Gt", "values": ["8"]}])}, True),
    ({"affinity": _affinity([{"key": "cores", "operator": "Lt", "values": ["8"]}])}, False),
    # Terms are ORed; requirements within a term ANDed.
    ({"affinity": _affinity([{"key": "gpu", "operator": "Exists"}],
                            [{"key": "disk", "operator": "Exists"}])}, True),
    ({"affinity": _affinity([{"key": "gpu", "operator": "DoesNotExist"},
                             {"key": "disk", "operator": "In", "values": ["hdd"]}])}, False),
    # nodeSelector and affinity must both match.
    ({"nodeSelector": {"disk": "hdd"},
      "affinity": _affinity([{"key": "disk", "operator": "Exists"}])}, False),
])
def test_node_affinity_filter(spec: dict[str, object], fits: bool) -> None:
    snap = snapshot([node("n", labels={"disk": "ssd", "cores": "16"})])
    st = run_filter(nodeaffinity.new(), pod(**spec), snap, "n")
    if fits:
        assert st is None
    else:
        assert st is not None and st.code == UNRESOLVABLE
        assert st.reasons == ["node(s) didn't match Pod's node affinity/selector"]


def test_node_affinity_match_fields_and_empty_term() -> None:
    snap = snapshot([node("a"), node("b")])
    by_name = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}
    assert run_filter(nodeaffinity.new(), pod(affinity=by_name), snap, "a") is not None
    assert run_filter(nodeaffinity.new(), pod(affinity=by_name), snap, "b") is None
    empty = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{}]}}}
    assert run_filter(nodeaffinity.new(), pod(affinity=empty), snap, "a") is not None


def test_node_affinity_preferred_score() -> None:
    snap = snapshot([node("ssd", labels={"disk": "ssd"}), node("hdd", labels={"disk": "hdd"}),
                     node("both", labels={"disk": "ssd", "zone": "a"})])
    pref = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 2, "preference": {"matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["ssd"]}]}},
        {"weight": 6, "preference": {"matchExpressions": [
            {"key": "zone", "operator": "Exists"}]}}]}}
    assert run_scores(nodeaffinity.new(), pod(affinity=pref), snap) == {
        "ssd": 25, "hdd": 0, "both": 100}


def test_node_ports() -> None:
    used = pod("web", node_name="n", ports=[{"containerPort": 80, "hostPort": 8080,
                                             "protocol": "TCP"}])
    snap = snapshot([node("n")], [used])
    same = pod(ports=[{"containerPort": 80, "hostPort": 8080, "protocol": "TCP"}])
    st = run_filter(nodeports.new(), same, snap, "n")
    assert st is not None and st.code == UNSCHEDULABLE
    assert st.reasons == ["node(s) didn't have free ports for the requested pod ports"]
    udp = pod(ports=[{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}])
    assert run_filter(nodeports.new(), udp, snap, "n") is None
    other = pod(ports=[{"containerPort": 80, "hostPort": 8081, "protocol": "TCP"}])
    assert run_filter(nodeports.new(), other, snap, "n") is None
    # A specific host IP conflicts with the wildcard the existing pod holds.
    ip = pod(ports=[{"containerPort": 80, "hostPort": 8080, "protocol": "TCP",
                     "hostIP": "10.0.0.1"}])
    assert run_filter(nodeports.new(), ip, snap, "n") is not None


def test_image_locality() -> None:
    mb = 1024 * 1024
    snap = snapshot([node("has-big", images=[(["registry/big:1"], 500 * mb)]),
                     node("has-small", images=[(["registry/small"], 10 * mb)]),
                     node("none")])
    scores = run_scores(imagelocality.new(), pod(image="registry/big:1"), snap)
    # 500 MB spread over 1 of 3 nodes: (500/3 - 23) / (1000 - 23) of 100.
    assert scores == {"has-big": 14, "has-small": 0, "none": 0}
    # Untagged names mean :latest; a small image stays below the threshold.
    assert run_scores(imagelocality.new(), pod(image="registry/small:latest"), snap) == {
        "has-big": 0, "has-small": 0, "none": 0}
