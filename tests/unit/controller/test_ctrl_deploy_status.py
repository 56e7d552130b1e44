"""Deployment status and the Progressing/Available conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from timonel.controller.deployment import status as st

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def stamp(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def dep(replicas: int = 3, *, generation: int = 2, status: dict[str, Any] | None = None,
        deadline: int | None = 600, paused: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": replicas, "paused": paused, "strategy": {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}}}
    if deadline is not None:
        spec["progressDeadlineSeconds"] = deadline
    return {"metadata": {"name": "web", "generation": generation}, "spec": spec,
            "status": status or {}}


def rs(name: str, replicas: int, ready: int, available: int) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "readyReplicas": ready,
                       "availableReplicas": available}}


def cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    c = st.get_condition(status, ctype)
    assert c is not None, status
    return c


def test_counts_and_available_condition() -> None:
    new, old = rs("new", 2, 2, 1), rs("old", 2, 2, 2)
    status = st.calculate_status([old, new], new, dep(3), NOW)
    assert {k: v for k, v in status.items() if k != "conditions"} == {
        "observedGeneration": 2, "replicas": 4, "updatedReplicas": 2, "readyReplicas": 4,
        "availableReplicas": 3, "unavailableReplicas": 1}
    assert cond(status, "Available")["status"] == "True"
    assert cond(status, "Available")["reason"] == "MinimumReplicasAvailable"
    status = st.calculate_status([rs("new", 3, 0, 0)], None, dep(3), NOW)
    assert "updatedReplicas" not in status and "availableReplicas" not in status
    assert cond(status, "Available")["reason"] == "MinimumReplicasUnavailable"


def test_set_condition_keeps_transition_time_while_status_holds() -> None:
    status: dict[str, Any] = {}
    st.set_condition(status, st.new_condition("Progressing", "True", "A", "m", NOW - timedelta(60)))
    first = dict(cond(status, "Progressing"))
    st.set_condition(status, st.new_condition("Progressing", "True", "A", "m2", NOW))
    assert cond(status, "Progressing") == first  # same status and reason: unchanged
    st.set_condition(status, st.new_condition("Progressing", "True", "B", "m3", NOW))
    c = cond(status, "Progressing")
    assert c["reason"] == "B" and c["lastTransitionTime"] == first["lastTransitionTime"]
    st.set_condition(status, st.new_condition("Progressing", "False", "C", "m4", NOW))
    assert cond(status, "Progressing")["lastTransitionTime"] == st._fmt(NOW)
    st.remove_condition(status, "Progressing")
    assert "conditions" not in status


def test_progressing_then_complete() -> None:
    old_status = {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1,
                  "conditions": [st.new_condition("Progressing", "True", st.NEW_REPLICA_SET,
                                                  "created", NOW - timedelta(seconds=30))]}
    d = dep(3, status=old_status)
    new, old = rs("new", 2, 2, 2), rs("old", 2, 2, 2)
    status = st.rollout_status([old, new], new, d, now=NOW)
    c = cond(status, "Progressing")
    assert c["reason"] == st.REPLICA_SET_UPDATED and c["message"] == 'ReplicaSet "new" is progressing.'
    assert c["lastUpdateTime"] == st._fmt(NOW)
    assert c["lastTransitionTime"] == stamp(30)  # still True: transition time kept
    d = dep(3, status=status)
    new = rs("new", 3, 3, 3)
    done = st.rollout_status([rs("old", 0, 0, 0), new], new, d, now=NOW)
    c = cond(done, "Progressing")
    assert c["reason"] == st.NEW_RS_AVAILABLE
    assert c["message"] == 'ReplicaSet "new" has successfully progressed.'
    # A resync of a complete rollout changes nothing.
    assert st.rollout_status([rs("old", 0, 0, 0), new], new, dep(3, status=done),
                             now=NOW + timedelta(hours=1)) == done


def test_deadline_exceeded_without_progress() -> None:
    updated = st.new_condition("Progressing", "True", st.REPLICA_SET_UPDATED, "x",
                               NOW - timedelta(seconds=20))
    base = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 1, "availableReplicas": 2,
            "readyReplicas": 2, "unavailableReplicas": 1, "conditions": [updated]}
    new, old = rs("new", 1, 0, 0), rs("old", 2, 2, 2)
    d = dep(3, status=base, deadline=10)
    assert st.timed_out(d, base, NOW)
    status = st.rollout_status([old, new], new, d, now=NOW)
    c = cond(status, "Progressing")
    assert c["status"] == "False" and c["reason"] == st.TIMED_OUT
    assert c["message"] == 'ReplicaSet "new" has timed out progressing.'
    # Within the deadline: nothing happens, and the controller looks again later.
    d = dep(3, status=base, deadline=60)
    same = st.rollout_status([old, new], new, d, now=NOW)
    assert cond(same, "Progressing")["reason"] == st.REPLICA_SET_UPDATED
    assert st.stuck_requeue_after(d, same, NOW) == 41
    assert st.stuck_requeue_after(dep(3, status=base, deadline=10), same, NOW) == 0
    # No deadline: no Progressing condition at all.
    assert st.get_condition(st.rollout_status([old, new], new, dep(3, status=base, deadline=None),
                                              now=NOW), "Progressing") is None


def test_replica_failure_is_carried_over_and_cleared() -> None:
    new = rs("new", 1, 0, 0)
    new["status"]["conditions"] = [{"type": "ReplicaFailure", "status": "True",
                                    "reason": "FailedCreate", "message": "quota",
                                    "lastTransitionTime": stamp(5)}]
    failure = st.replica_failure([new], new)
    assert failure is not None and failure["reason"] == "FailedCreate"
    status = st.rollout_status([new], new, dep(1), failure, NOW)
    assert cond(status, "ReplicaFailure")["message"] == "quota"
    cleared = st.rollout_status([new], new, dep(1, status=status), None, NOW)
    assert st.get_condition(cleared, "ReplicaFailure") is None


def test_pause_and_resume_conditions() -> None:
    c = st.paused_condition(dep(paused=True), NOW)
    assert c is not None and c["status"] == "Unknown" and c["reason"] == st.PAUSED
    paused = dep(paused=True, status={"conditions": [c]})
    assert st.paused_condition(paused, NOW) is None
    resumed = st.paused_condition(dep(paused=False, status={"conditions": [c]}), NOW)
    assert resumed is not None and resumed["reason"] == st.RESUMED
    timed_out = st.new_condition("Progressing", "False", st.TIMED_OUT, "x", NOW)
    assert st.paused_condition(dep(paused=True, status={"conditions": [timed_out]}), NOW) is None
