"""Pod helpers shared by controllers: templates, readiness, deletion order."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from timonel.controller.pods import (
    controller_of,
    controller_ref,
    filter_active_pods,
    is_pod_available,
    pod_from_template,
    pods_to_delete,
    rank_pods_for_deletion,
    seconds_until_available,
    slow_start_batch,
    sort_active_pods,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def ts(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, *, node: str = "n1", phase: str = "Running", ready: bool = True,
        ready_ago: float = 100, created_ago: float = 200, restarts: int = 0,
        cost: str | None = None, deleting: bool = False) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "creationTimestamp": ts(created_ago)}
    if cost is not None:
        md["annotations"] = {"controller.kubernetes.io/pod-deletion-cost": cost}
    if deleting:
        md["deletionTimestamp"] = ts(0)
    return {"metadata": md, "spec": {"nodeName": node},
            "status": {"phase": phase,
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": ts(ready_ago)}],
                       "containerStatuses": [{"name": "c", "restartCount": restarts}]}}


def names(pods: list[dict[str, Any]]) -> list[str]:
    return [p["metadata"]["name"] for p in pods]


OWNER = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
         "metadata": {"name": "web-abc", "namespace": "ns", "uid": "rs-uid"}}


def test_pod_from_template_carries_labels_owner_and_prefix() -> None:
    template: dict[str, Any] = {"metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"},
                             "finalizers": ["x/y"]},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    p = pod_from_template(template, OWNER)
    md = p["metadata"]
    assert md["generateName"] == "web-abc-" and "name" not in md
    assert md["namespace"] == "ns" and md["labels"] == {"app": "web"}
    assert md["annotations"] == {"a": "b"} and md["finalizers"] == ["x/y"]
    assert md["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                      "name": "web-abc", "uid": "rs-uid", "controller": True,
                                      "blockOwnerDeletion": True}]
    assert controller_of(p) == controller_ref(OWNER)
    # The template is copied, not shared.
    p["spec"]["containers"][0]["image"] = "other"
    p["metadata"]["labels"]["x"] = "y"
    assert template["spec"]["containers"][0]["image"] == "busybox"
    assert template["metadata"]["labels"] == {"app": "web"}
    named = pod_from_template(template, OWNER, name="web-0")
    assert named["metadata"]["name"] == "web-0" and "generateName" not in named["metadata"]


def test_availability_honours_min_ready_seconds() -> None:
    p = pod("a", ready_ago=5)
    assert is_pod_available(p, 0, NOW)
    assert is_pod_available(p, 4, NOW)
    assert not is_pod_available(p, 5, NOW)  # strictly longer than minReadySeconds
    assert not is_pod_available(p, 10, NOW)
    assert seconds_until_available(p, 10, NOW) == 5
    assert seconds_until_available(p, 0, NOW) is None
    assert not is_pod_available(pod("b", ready=False), 0, NOW)


def test_active_filter_drops_finished_and_deleting() -> None:
    pods = [pod("run"), pod("done", phase="Succeeded"), pod("fail", phase="Failed"),
            pod("del", deleting=True), pod("pend", phase="Pending", node="")]
    assert names(filter_active_pods(pods)) == ["run", "pend"]


def test_deletion_rank_follows_upstream_rules_in_order() -> None:
    # Each pair differs in exactly the rule under test; the first goes first.
    cases = [
        (pod("unassigned", node="", phase="Pending", ready=False), pod("assigned", phase="Pending", ready=False)),
        (pod("pending", phase="Pending", ready=False), pod("unknown", phase="Unknown", ready=False)),
        (pod("unknown", phase="Unknown"), pod("running")),
        (pod("notready", ready=False), pod("ready")),
        (pod("cheap", cost="-5"), pod("dear", cost="10")),
        (pod("recent-ready", ready_ago=1), pod("long-ready", ready_ago=1000)),
        (pod("restarts", restarts=3), pod("calm", restarts=0)),
        (pod("young", created_ago=1), pod("old", created_ago=5000)),
    ]
    for first, second in cases:
        for order in ([first, second], [second, first]):
            ranked = rank_pods_for_deletion(order, order, NOW)
            assert names(ranked)[0] == first["metadata"]["name"], (names(order), names(ranked))


def test_deletion_rank_prefers_doubled_up_nodes() -> None:
    crowded = [pod("c1", node="busy"), pod("c2", node="busy")]
    alone = pod("alone", node="quiet")
    # The lone pod is also the youngest: the node rule comes before age.
    alone["metadata"]["creationTimestamp"] = ts(1)
    ranked = rank_pods_for_deletion([alone, crowded[0]], [alone, *crowded], NOW)
    assert names(ranked)[0] == "c1"


def test_deletion_rank_is_logarithmic_in_age() -> None:
    # Ready 100 s and 110 s ago fall in the same power-of-two bucket of
    # nanoseconds: peers, ordered by UID rather than by the exact time.
    a, b = pod("a", ready_ago=100), pod("b", ready_ago=110)
    assert names(rank_pods_for_deletion([b, a], [a, b], NOW)) == ["a", "b"]
    a["metadata"]["uid"], b["metadata"]["uid"] = "uid-z", "uid-a"
    assert names(rank_pods_for_deletion([a, b], [a, b], NOW)) == ["b", "a"]
    # Far apart in age: the more recently ready goes first whatever the UID.
    c = pod("c", ready_ago=10000)
    c["metadata"]["uid"] = "uid-0"
    assert names(rank_pods_for_deletion([c, a], [a, c], NOW))[0] == "a"


def test_invalid_deletion_cost_counts_as_zero() -> None:
    bad, neg = pod("bad", cost="lots"), pod("neg", cost="-1")
    assert names(rank_pods_for_deletion([bad, neg], [bad, neg], NOW)) == ["neg", "bad"]


def test_pods_to_delete_takes_the_head() -> None:
    pods = [pod(f"p{i}", created_ago=10 ** (i + 1)) for i in range(4)]
    pods.append(pod("unready", ready=False, created_ago=1e6))
    random.Random(1).shuffle(pods)
    assert names(pods_to_delete(pods, pods, 2, NOW)) == ["unready", "p0"]
    assert len(pods_to_delete(pods, pods, 10, NOW)) == 5


def test_active_pods_order_without_ranks() -> None:
    pods = [pod("old", created_ago=5000, ready_ago=4000), pod("young", created_ago=10, ready_ago=5),
            pod("pending", phase="Pending", ready=False), pod("unready", ready=False)]
    assert names(sort_active_pods(pods)) == ["pending", "unready", "young", "old"]


async def test_slow_start_batch_grows_and_stops_at_first_failure() -> None:
    calls: list[int] = []
    in_flight = 0

    async def ok() -> None:
        nonlocal in_flight
        in_flight += 1
        calls.append(in_flight)
        await asyncio.sleep(0)
        in_flight -= 1

    successes, err = await slow_start_batch(10, 1, ok)
    assert successes == 10 and err is None
    assert max(calls) == 4  # batches 1, 2, 4 and the remaining 3

    n = 0

    async def fails_on_fourth() -> None:
        nonlocal n
        n += 1
        if n == 4:
            raise RuntimeError("quota")

    successes, err = await slow_start_batch(20, 1, fails_on_fourth)
    # Batches 1 and 2 succeed, the batch of 4 has one failure: stop there.
    assert n == 7 and successes == 6 and isinstance(err, RuntimeError)
