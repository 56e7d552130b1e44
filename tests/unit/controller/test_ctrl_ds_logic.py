"""DaemonSet placement (nodeSelector, node affinity, taints with the daemon
default tolerations), rolling update planning, and revision hashing."""

from __future__ import annotations

from typing import Any

import pytest

from timonel.controller import history
from timonel.controller.daemonset import placement, rollout


def node(name: str, labels: dict[str, str] | None = None,
         taints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "spec": {"taints": taints or []}}


def ds(pod_spec: dict[str, Any] | None = None, **strategy: Any) -> dict[str, Any]:
    return {"metadata": {"name": "d", "namespace": "ns", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"app": "d"}},
                                  "spec": pod_spec or {"containers": [{"name": "c"}]}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": strategy}}}


def test_node_selector_and_affinity() -> None:
    d = ds({"nodeSelector": {"role": "web"}, "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]},
        ]}}}})
    assert placement.should_run(d, node("n", {"role": "web", "zone": "a"})) == (True, True)
    assert placement.should_run(d, node("n", {"role": "web", "zone": "c"})) == (False, False)
    assert placement.should_run(d, node("special", {"role": "web"})) == (True, True)
    assert placement.should_run(d, node("n", {"zone": "a"})) == (False, False)


@pytest.mark.parametrize(("op", "values", "label", "ok"), [
    ("NotIn", ["a"], None, True), ("NotIn", ["a"], "a", False), ("Exists", [], "x", True),
    ("DoesNotExist", [], None, True), ("Gt", ["3"], "5", True), ("Lt", ["3"], "5", False),
    ("Gt", ["3"], "abc", False)])
def test_affinity_operators(op: str, values: list[str], label: str | None, ok: bool) -> None:
    spec = {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "k", "operator": op,
                                                     "values": values}]}]}}}}
    n = node("n", {"k": label} if label is not None else {})
    assert placement.matches_node_affinity(spec, n) is ok


def test_taints_and_daemon_tolerations() -> None:
    d = ds()
    # Daemon pods tolerate node trouble and cordoning...
    for key, effect in [("node.kubernetes.io/unreachable", "NoExecute"),
                        ("node.kubernetes.io/not-ready", "NoExecute"),
                        ("node.kubernetes.io/unschedulable", "NoSchedule"),
                        ("node.kubernetes.io/disk-pressure", "NoSchedule")]:
        assert placement.should_run(d, node("n", taints=[{"key": key, "effect": effect}])) == (
            True, True)
    # ...but not a user's taints. NoSchedule: no new pod, an existing one stays.
    assert placement.should_run(d, node("n", taints=[{"key": "x", "effect": "NoSchedule"}])) == (
        False, True)
    assert placement.should_run(d, node("n", taints=[{"key": "x", "effect": "NoExecute"}])) == (
        False, False)
    # network-unavailable is tolerated only with hostNetwork.
    t = [{"key": "node.kubernetes.io/network-unavailable", "effect": "NoSchedule"}]
    assert placement.should_run(d, node("n", taints=t))[0] is False
    hn = ds({"hostNetwork": True, "containers": [{"name": "c"}]})
    assert placement.should_run(hn, node("n", taints=t))[0] is True


def test_default_tolerations_replace_timed_ones() -> None:
    spec = {"tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 300}]}
    placement.add_or_update_tolerations(spec, placement.daemon_tolerations(spec))
    unreachable = [t for t in spec["tolerations"] if t["key"] == "node.kubernetes.io/unreachable"]
    assert unreachable == [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                            "effect": "NoExecute"}]


def test_pin_to_node_and_target() -> None:
    spec: dict[str, Any] = {"affinity": {"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1}]}}}
    placement.pin_to_node(spec, "n7")
    pod = {"spec": spec}
    assert placement.target_node(pod) == "n7"
    assert spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert placement.target_node({"spec": {"nodeName": "n1"}}) == "n1"


@pytest.mark.parametrize(("value", "total", "up", "want"), [
    (1, 10, True, 1), ("25%", 10, True, 3), ("25%", 10, False, 2), ("0%", 5, True, 0)])
def test_scaled(value: Any, total: int, up: bool, want: int) -> None:
    assert rollout.scaled(value, total, up) == want


def test_scaled_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="percentage"):
        rollout.scaled("ten", 10, True)


def test_surge_and_unavailable_defaults_to_one() -> None:
    assert rollout.surge_and_unavailable(ds(maxSurge=0, maxUnavailable=0), 10) == (0, 1)
    assert rollout.surge_and_unavailable(ds(maxSurge="20%", maxUnavailable=0), 10) == (2, 0)


def pod(name: str, hash_: str, ready: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"controller-revision-hash": hash_}},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def available(p: dict[str, Any]) -> bool:
    return p["status"]["conditions"][0]["status"] == "True"


def test_plan_max_unavailable() -> None:
    nodes = {f"n{i}": [pod(f"p{i}", "old")] for i in range(4)}
    delete, create = rollout.plan(nodes, "new", 0, 2, available)
    assert [p["metadata"]["name"] for p in delete] == ["p0", "p1"] and create == []
    # One node already has an unavailable new pod: only one more may go.
    nodes["n0"] = [pod("q0", "new", ready=False)]
    delete, _ = rollout.plan(nodes, "new", 0, 2, available)
    assert [p["metadata"]["name"] for p in delete] == ["p1"]
    # An unavailable old pod is replaced regardless.
    nodes["n3"] = [pod("p3", "old", ready=False)]
    delete, _ = rollout.plan(nodes, "new", 0, 1, available)
    assert [p["metadata"]["name"] for p in delete] == ["p3"]


def test_plan_max_surge() -> None:
    nodes = {f"n{i}": [pod(f"p{i}", "old")] for i in range(3)}
    delete, create = rollout.plan(nodes, "new", 1, 0, available)
    assert delete == [] and create == ["n0"]
    nodes["n0"].append(pod("q0", "new", ready=False))
    assert rollout.plan(nodes, "new", 1, 0, available) == ([], [])
    nodes["n0"][1] = pod("q0", "new")
    delete, create = rollout.plan(nodes, "new", 1, 0, available)
    assert [p["metadata"]["name"] for p in delete] == ["p0"]


def test_revision_hash_is_stable_and_collision_probe_changes_it() -> None:
    owner = ds()
    data = history.template_patch(owner)
    assert data["spec"]["template"]["$patch"] == "replace"
    h0 = history.hash_revision(data, 0)
    assert h0 == history.hash_revision(history.template_patch(ds()), 0)
    assert h0 != history.hash_revision(data, 1)
    rev = history.new_revision(owner, data, 3, 0)
    assert rev["metadata"]["name"] == f"d-{h0}" and rev["revision"] == 3
    assert rev["metadata"]["labels"] == {"app": "d", history.HASH_LABEL: h0}
    assert rev["metadata"]["ownerReferences"][0]["uid"] == "u1"
    assert history.template_of(rev) == owner["spec"]["template"]
    assert set(h0) <= set("bcdfghjklmnpqrstvwxz2456789")
