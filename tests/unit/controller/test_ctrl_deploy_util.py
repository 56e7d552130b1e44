"""The Deployment controller's arithmetic, hash, revisions and annotations."""

from __future__ import annotations

from typing import Any

import pytest

from timonel.controller.deployment import util


def dep(replicas: int, surge: Any = None, unavailable: Any = None, *, strategy: str = "RollingUpdate",
        annotations: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": replicas, "strategy": {"type": strategy}}
    if strategy == "RollingUpdate":
        spec["strategy"]["rollingUpdate"] = {"maxSurge": surge, "maxUnavailable": unavailable}
    return {"metadata": {"name": "web", "uid": "d-uid", "generation": 1,
                         "annotations": annotations or {}},
            "spec": {**spec, "template": {"metadata": {"labels": {"app": "web"}},
                                          "spec": {"containers": [{"name": "c", "image": "i"}]}}}}


def rs(name: str, replicas: int, *, available: int = 0, status_replicas: int | None = None,
       created: str = "2024-01-01T00:00:00Z", annotations: dict[str, str] | None = None
       ) -> dict[str, Any]:
    return {"metadata": {"name": name, "uid": f"uid-{name}", "creationTimestamp": created,
                         "annotations": annotations or {}},
            "spec": {"replicas": replicas},
            "status": {"replicas": replicas if status_replicas is None else status_replicas,
                       "availableReplicas": available}}


@pytest.mark.parametrize(("value", "total", "up", "want"), [
    (3, 10, True, 3), ("25%", 10, True, 3), ("25%", 10, False, 2), ("0%", 7, True, 0),
    ("100%", 7, False, 7), ("33%", 3, True, 1), ("33%", 3, False, 0), (None, 5, True, 0),
])
def test_scaled_value(value: Any, total: int, up: bool, want: int) -> None:
    assert util.scaled_value(value, total, up) == want


@pytest.mark.parametrize("bad", ["5", "abc%", "x", True])
def test_scaled_value_rejects_non_percentages(bad: Any) -> None:
    with pytest.raises(ValueError):
        util.scaled_value(bad, 10, True)


def test_fenceposts_and_limits() -> None:
    assert util.resolve_fenceposts("25%", "25%", 3) == (1, 0)
    assert util.resolve_fenceposts(0, 0, 3) == (0, 1)  # never both zero
    assert util.resolve_fenceposts("10%", "10%", 5) == (1, 0)
    assert util.max_surge(dep(10, "25%", "25%")) == 3
    assert util.max_unavailable(dep(10, "25%", "25%")) == 2
    assert util.max_unavailable(dep(2, 0, 5)) == 2  # capped at replicas
    assert util.max_unavailable(dep(0, 1, 1)) == 0
    recreate = dep(4, strategy="Recreate")
    assert util.max_surge(recreate) == 0 and util.max_unavailable(recreate) == 0


def test_new_replica_set_growth_respects_surge() -> None:
    d = dep(10, 2, 0)
    new, old = rs("new", 0), rs("old", 10, available=10)
    assert util.new_rs_new_replicas(d, [old, new], new) == 2
    new = rs("new", 2)
    assert util.new_rs_new_replicas(d, [old, new], new) == 2  # 12 already: no room
    old = rs("old", 8, available=8)
    assert util.new_rs_new_replicas(d, [old, new], new) == 4
    # Never beyond replicas, whatever the surge.
    assert util.new_rs_new_replicas(d, [rs("old", 0), rs("new", 9)], rs("new", 9)) == 10
    # Recreate: straight to replicas.
    assert util.new_rs_new_replicas(dep(5, strategy="Recreate"), [new], new) == 5


def test_surge_counts_pods_a_lagging_scale_down_still_has() -> None:
    d = dep(4, 1, 1)
    # The old ReplicaSet was told 3 but its status still counts 4 pods.
    old, new = rs("old", 3, status_replicas=4), rs("new", 1)
    assert util.new_rs_new_replicas(d, [old, new], new) == 1
    old = rs("old", 3, status_replicas=3)
    assert util.new_rs_new_replicas(d, [old, new], new) == 2


def test_available_never_counts_more_than_a_replica_set_keeps() -> None:
    assert util.available_lower_bound(rs("old", 2, available=4)) == 2
    assert util.available_lower_bound(rs("old", 5, available=4)) == 4


def test_proportional_fraction_follows_max_replicas_annotation() -> None:
    d = dep(10, 0, 1)
    new = rs("new", 3, annotations={util.MAX_REPLICAS: "5"})
    old = rs("old", 2, annotations={util.MAX_REPLICAS: "5"})
    assert util.replica_set_fraction(new, d) == 3
    assert util.replica_set_fraction(old, d) == 2
    assert util.proportion(new, d, 5, 0) == 3
    assert util.proportion(old, d, 5, 3) == 2
    assert util.proportion(rs("zero", 0), d, 5, 0) == 0
    # Scaling down to zero removes everything.
    assert util.replica_set_fraction(new, dep(0, 0, 1)) == -3
    # Scaling down: never more than allowed.
    assert util.proportion(new, dep(2, 0, 1), -3, 0) == -2


def test_round_half_away_from_zero_like_go() -> None:
    assert [util.round_half_away(x) for x in (0.5, 1.5, 2.5, -0.5, -2.5, 1.49)] == \
        [1, 2, 3, -1, -3, 1]


def test_hash_is_stable_safe_and_sensitive() -> None:
    t = dep(1)["spec"]["template"]
    h = util.compute_hash(t)
    assert h == util.compute_hash(dep(1)["spec"]["template"])
    assert set(h) <= set("bcdfghjklmnpqrstvwxz2456789") and 1 <= len(h) <= 10
    assert util.compute_hash(t, 1) != h and util.compute_hash(t, 1) != util.compute_hash(t, 2)
    other = dep(1)["spec"]["template"]
    other["spec"]["containers"][0]["image"] = "j"
    assert util.compute_hash(other) != h
    # FNV-32a reference values.
    assert util.fnv32a(b"") == 0x811C9DC5 and util.fnv32a(b"a") == 0xE40C292C


def test_templates_equal_ignoring_hash_and_empty_fields() -> None:
    t1 = dep(1)["spec"]["template"]
    t2 = dep(1)["spec"]["template"]
    t2["metadata"]["labels"][util.POD_TEMPLATE_HASH] = "abc"
    t2["metadata"]["annotations"] = {}
    t2["spec"]["volumes"] = None
    assert util.equal_ignore_hash(t1, t2)
    t2["spec"]["containers"][0]["image"] = "other"
    assert not util.equal_ignore_hash(t1, t2)
    assert util.POD_TEMPLATE_HASH in t2["metadata"]["labels"]  # inputs untouched


def test_new_and_old_replica_sets() -> None:
    d = dep(3)
    matching = rs("a", 3, created="2024-01-02T00:00:00Z")
    matching["spec"]["template"] = dep(3)["spec"]["template"]
    twin = rs("b", 0, created="2024-01-03T00:00:00Z")
    twin["spec"]["template"] = dep(3)["spec"]["template"]
    other = rs("c", 1, created="2024-01-01T00:00:00Z")
    other["spec"]["template"] = {"metadata": {"labels": {"app": "x"}}}
    assert util.find_new_replica_set(d, [twin, other, matching]) is matching  # the oldest
    assert [r["metadata"]["name"] for r in util.find_old_replica_sets(d, [twin, other, matching])] \
        == ["b", "c"]


def test_revisions() -> None:
    rss = [rs(n, 0, annotations={util.REVISION: v}) for n, v in
           (("a", "1"), ("b", "3"), ("c", "2"), ("d", "junk"))]
    assert util.max_revision(rss) == 3
    assert util.last_revision(rss) == 2
    assert util.max_revision([]) == 0 and util.last_revision([rs("x", 0)]) == 0
    assert [r["metadata"]["name"] for r in util.by_revision(rss)] == ["d", "a", "c", "b"]


def test_new_replica_set_annotations_and_rollback_history() -> None:
    d = dep(3, 1, 0, annotations={"team": "a", util.LAST_APPLIED: "{}", util.REVISION: "7"})
    new = rs("new", 0)
    assert util.set_new_replica_set_annotations(d, new, 1, exists=False)
    ann = new["metadata"]["annotations"]
    assert ann == {"team": "a", util.REVISION: "1", util.DESIRED_REPLICAS: "3",
                   util.MAX_REPLICAS: "4"}
    # Nothing new: no change.
    assert not util.set_new_replica_set_annotations(d, new, 1, exists=True)
    # Reused by a rollback: the old revision goes to the history.
    assert util.set_new_replica_set_annotations(d, new, 3, exists=True)
    assert ann[util.REVISION] == "3" and ann[util.REVISION_HISTORY] == "1"
    util.set_new_replica_set_annotations(d, new, 5, exists=True)
    assert ann[util.REVISION] == "5" and ann[util.REVISION_HISTORY] == "1,3"
    # The history is kept under a length limit, dropping the oldest.
    util.set_new_replica_set_annotations(d, new, 6, exists=True, limit_chars=4)
    assert ann[util.REVISION_HISTORY] == "3,5"
    # A lower revision never goes back.
    assert not util.set_new_replica_set_annotations(d, new, 2, exists=True)
    assert ann[util.REVISION] == "6"


def test_saturated_and_complete() -> None:
    d = dep(3, 1, 0)
    full = rs("new", 3, available=3, annotations={util.DESIRED_REPLICAS: "3"})
    assert util.is_saturated(d, full)
    assert not util.is_saturated(d, rs("new", 3, available=2,
                                       annotations={util.DESIRED_REPLICAS: "3"}))
    assert not util.is_saturated(d, None)
    status = {"updatedReplicas": 3, "replicas": 3, "availableReplicas": 3, "observedGeneration": 1}
    assert util.deployment_complete(d, status)
    assert not util.deployment_complete(d, {**status, "observedGeneration": 0})
    assert not util.deployment_complete(d, {**status, "replicas": 4})
