"""ReplicaSet status as upstream computes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from timonel.api.errors import ApiError
from timonel.controller.replicaset import calculate_status

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def pod(labels: dict[str, str], ready: bool, ready_ago: float = 60) -> dict[str, Any]:
    when = (NOW - timedelta(seconds=ready_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                       "lastTransitionTime": when}]}}


RS = {"metadata": {"generation": 3},
      "spec": {"replicas": 4, "minReadySeconds": 30,
               "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}}},
      "status": {"replicas": 0, "observedGeneration": 2}}


def test_counts_fully_labeled_ready_and_available() -> None:
    pods = [pod({"app": "web", "tier": "front"}, True, 60),
            pod({"app": "web", "tier": "front"}, True, 10),  # ready, not yet available
            pod({"app": "web"}, True, 60),  # matches the selector, not the template
            pod({"app": "web", "tier": "front"}, False)]
    st = calculate_status(RS, pods, None, 0, NOW)
    assert st == {"replicas": 4, "fullyLabeledReplicas": 3, "readyReplicas": 3,
                  "availableReplicas": 2, "observedGeneration": 2}


def test_zero_counts_are_left_out_like_upstream() -> None:
    assert calculate_status(RS, [], None, -4, NOW) == {"replicas": 0, "observedGeneration": 2}


def test_failure_condition_set_once_and_cleared() -> None:
    err = ApiError(403, 'pods "web-x" is forbidden: exceeded quota')
    st = calculate_status(RS, [], err, -4, NOW)
    (cond,) = st["conditions"]
    assert cond["type"] == "ReplicaFailure" and cond["status"] == "True"
    assert cond["reason"] == "FailedCreate" and "exceeded quota" in cond["message"]
    failing = {**RS, "status": st}
    # Still failing: the condition (and its transition time) stays as it was.
    assert calculate_status(failing, [], ApiError(500, "other"), -4, NOW)["conditions"] == [cond]
    st = calculate_status(failing, [], ApiError(500, "x"), 2, NOW)
    assert st["conditions"][0]["reason"] == "FailedCreate"
    assert "conditions" not in calculate_status(failing, [], None, 0, NOW)
    deleting = calculate_status(RS, [], err, 2, NOW)
    assert deleting["conditions"][0]["reason"] == "FailedDelete"
