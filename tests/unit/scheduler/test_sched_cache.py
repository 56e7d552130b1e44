"""The cache: assumed pods count at once and are confirmed or forgotten;
terminal pods free their node; pods of unknown nodes wait for them;
priorities come from PriorityClasses."""

from __future__ import annotations

from tests.unit.scheduler.conftest import node, pod
from timonel.scheduler.cache import Cache


def test_assume_confirm_forget() -> None:
    c = Cache()
    c.set_node(node("n", cpu="2"))
    p = pod("web", cpu="500m")
    assumed = c.assume(c.pod_info(p), "n")
    ni = c.snapshot.by_name["n"]
    assert ni.requested.milli_cpu == 500 and c.is_assumed(assumed.key)
    # The watch shows the pod bound: confirmed, counted once.
    bound = {**p, "spec": {**p["spec"], "nodeName": "n"}}
    c.add_pod(bound)
    assert not c.is_assumed(assumed.key) and ni.requested.milli_cpu == 500
    assert c.pods[assumed.key] is assumed and assumed.pod is bound  # reused, newest object
    relabelled = {**bound, "metadata": {**bound["metadata"], "labels": {"v": "2"}}}
    c.add_pod(relabelled)
    assert c.pods[assumed.key].labels == {"v": "2"} and ni.requested.milli_cpu == 500
    other = c.assume(c.pod_info(pod("api", cpu="1")), "n")
    assert ni.requested.milli_cpu == 1500
    c.forget(other)
    assert ni.requested.milli_cpu == 500 and len(ni.pods) == 1


def test_terminal_and_deleted_pods_free_their_node() -> None:
    c = Cache()
    c.set_node(node("n"))
    p = pod("job", cpu="1", node_name="n")
    c.add_pod(p)
    assert c.snapshot.by_name["n"].requested.milli_cpu == 1000
    c.add_pod({**p, "status": {"phase": "Succeeded"}})
    assert c.snapshot.by_name["n"].requested.milli_cpu == 0
    c.add_pod(pod("again", cpu="1", node_name="n"))
    c.remove_pod(pod("again", node_name="n"))
    assert not c.snapshot.by_name["n"].pods


def test_pods_on_unknown_nodes_wait_for_them() -> None:
    c = Cache()
    c.add_pod(pod("early", cpu="1", node_name="late"))
    ni = c.set_node(node("late"))
    assert ni.requested.milli_cpu == 1000 and len(ni.pods) == 1
    c.remove_node(node("late"))
    assert "late" not in c.snapshot.by_name
    assert c.set_node(node("late")).requested.milli_cpu == 1000


def test_priority_from_priority_class() -> None:
    c = Cache()
    c.set_priority_class({"metadata": {"name": "high"}, "value": 1000,
                          "preemptionPolicy": "Never"})
    p = pod(priorityClassName="high")
    del p["spec"]["priority"]
    assert c.pod_info(p).priority == 1000
    assert c.preemption_policy(p) == "Never"
    assert c.pod_info(pod(priority=7)).priority == 7
    c.remove_priority_class({"metadata": {"name": "high"}})
    assert c.pod_info(p).priority == 0
