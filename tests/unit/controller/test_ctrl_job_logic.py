"""Job arithmetic: pod failure backoff (upstream's backoff_utils), the
completedIndexes interval strings, and how many pods a Job wants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from timonel.controller.job import backoff, indexes
from timonel.controller.job.podspec import (
    is_pod_failed,
    mutate_for_job,
    pods_to_remove,
    want_active,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def stamp(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def finished_pod(t: datetime, phase: str = "Failed") -> dict[str, Any]:
    return {"metadata": {"creationTimestamp": stamp(T0 - timedelta(hours=1))},
            "status": {"phase": phase, "containerStatuses": [
                {"name": "c", "state": {"terminated": {"exitCode": 1, "finishedAt": stamp(t)}}}]}}


@pytest.mark.parametrize(("failures", "expected"), [
    (0, 0.0), (1, 10.0), (2, 20.0), (3, 40.0), (6, 320.0), (7, 600.0), (100, 600.0)])
def test_backoff_delay_doubles_up_to_the_cap(failures: int, expected: float) -> None:
    assert backoff.backoff_delay(failures) == expected


def test_backoff_base_is_configurable() -> None:
    assert [backoff.backoff_delay(n, base=0.5, cap=3) for n in range(1, 6)] == [
        0.5, 1.0, 2.0, 3, 3]


def test_remaining_counts_from_the_last_failure() -> None:
    rec = backoff.BackoffRecord(2, T0)
    assert backoff.remaining(rec, T0 + timedelta(seconds=5)) == 15.0
    assert backoff.remaining(rec, T0 + timedelta(seconds=25)) == 0.0
    assert backoff.remaining(backoff.BackoffRecord(), T0) == 0.0


def test_record_accumulates_failures_and_a_success_resets() -> None:
    rec = backoff.next_record(backoff.BackoffRecord(), [], [finished_pod(T0)])
    assert (rec.failures_after_last_success, rec.last_failure) == (1, T0)
    later = T0 + timedelta(seconds=30)
    rec = backoff.next_record(rec, [], [finished_pod(later), finished_pod(T0 + timedelta(1))])
    assert rec.failures_after_last_success == 3 and rec.last_failure == T0 + timedelta(1)
    # A success resets; only failures after it count.
    ok = finished_pod(T0 + timedelta(seconds=40), "Succeeded")
    rec = backoff.next_record(rec, [ok], [finished_pod(T0 + timedelta(seconds=50)),
                                          finished_pod(T0 + timedelta(seconds=20))])
    assert rec.failures_after_last_success == 1
    assert rec.last_failure == T0 + timedelta(seconds=50)
    rec = backoff.next_record(rec, [ok], [])
    assert rec == backoff.BackoffRecord(0, None)


def test_finished_time_fallbacks() -> None:
    running = {"name": "c", "state": {"running": {"startedAt": stamp(T0)}}}
    pod = {"metadata": {"creationTimestamp": stamp(T0)},
           "status": {"containerStatuses": [running],
                      "conditions": [{"type": "Ready", "status": "False",
                                      "lastTransitionTime": stamp(T0 + timedelta(seconds=7))}]}}
    assert backoff.finished_time(pod) == T0 + timedelta(seconds=7)
    pod = {"metadata": {"creationTimestamp": stamp(T0),
                        "deletionTimestamp": stamp(T0 + timedelta(seconds=60)),
                        "deletionGracePeriodSeconds": 30}, "status": {}}
    assert backoff.finished_time(pod) == T0 + timedelta(seconds=30)
    assert backoff.finished_time({"metadata": {"creationTimestamp": stamp(T0)}}) == T0


@pytest.mark.parametrize(("text", "completions", "expected"), [
    ("", 5, set()), ("1,3-5,7", 10, {1, 3, 4, 5, 7}), ("0-2", 2, {0, 1}),
    ("5-3,x,2", 10, {2}), ("9", 5, set())])
def test_parse_indexes(text: str, completions: int, expected: set[int]) -> None:
    assert indexes.parse(text, completions) == expected


@pytest.mark.parametrize(("items", "text"), [
    ([], ""), ([3], "3"), ([1, 2], "1,2"), ([0, 1, 2], "0-2"), ([7, 1, 3, 4, 5], "1,3-5,7"),
    ([0, 1, 3, 4], "0,1,3,4")])
def test_format_indexes_like_upstream(items: list[int], text: str) -> None:
    assert indexes.format_intervals(items) == text


def test_pod_index_rejects_malformed() -> None:
    def pod(v: str) -> dict[str, Any]:
        return {"metadata": {"annotations": {indexes.COMPLETION_INDEX: v}}}

    assert indexes.pod_index(pod("3")) == 3
    assert indexes.pod_index(pod("03")) == indexes.UNKNOWN
    assert indexes.pod_index(pod("-1")) == indexes.UNKNOWN
    assert indexes.pod_index({"metadata": {}}) == indexes.UNKNOWN


def job(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "j"}, "spec": spec}


@pytest.mark.parametrize(("spec", "succeeded", "active", "want"), [
    ({"completions": 3, "parallelism": 2}, 0, 0, 2),
    ({"completions": 3, "parallelism": 2}, 2, 1, 1),
    ({"completions": 3, "parallelism": 2}, 3, 0, 0),
    ({"parallelism": 4}, 0, 1, 4),       # no completions: parallelism until a success
    ({"parallelism": 4}, 1, 3, 3),       # ...then leave the rest running
    ({"completions": 5, "parallelism": 5, "suspend": True}, 0, 5, 0),
])
def test_want_active(spec: dict[str, Any], succeeded: int, active: int, want: int) -> None:
    assert want_active(job(**spec), succeeded, active) == want


def _ipod(name: str, ix: str, ready: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": name, "annotations": {indexes.COMPLETION_INDEX: ix},
                         "creationTimestamp": stamp(T0)},
            "spec": {"nodeName": "n"},
            "status": {"phase": "Running",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_indexed_removes_duplicates_bad_and_succeeded_indexes() -> None:
    j = job(completions=3, parallelism=3, completionMode="Indexed")
    pods = [_ipod("a", "0"), _ipod("b", "0", ready=False), _ipod("c", "7"), _ipod("d", "x"),
            _ipod("e", "2"), _ipod("f", "1")]
    gone = {p["metadata"]["name"] for p in pods_to_remove(j, pods, 0, succeeded_indexes={2})}
    assert gone == {"b", "c", "d", "e"}


def test_indexed_pod_gets_index_hostname_and_env() -> None:
    pod: dict[str, Any] = {"metadata": {"labels": {"x": "y"}},
                           "spec": {"containers": [{"name": "c"}],
                                    "initContainers": [{"name": "i"}]}}
    mutate_for_job(pod, job(completionMode="Indexed"), 4)
    assert pod["metadata"]["finalizers"] == ["batch.kubernetes.io/job-tracking"]
    assert pod["metadata"]["annotations"][indexes.COMPLETION_INDEX] == "4"
    assert pod["metadata"]["labels"][indexes.COMPLETION_INDEX] == "4"
    assert pod["spec"]["hostname"] == "j-4"
    for c in pod["spec"]["containers"] + pod["spec"]["initContainers"]:
        assert c["env"][0]["name"] == "JOB_COMPLETION_INDEX"


def test_deleted_pods_count_as_failed_unless_succeeded() -> None:
    assert is_pod_failed({"status": {"phase": "Failed"}, "metadata": {}})
    assert is_pod_failed({"status": {"phase": "Running"},
                          "metadata": {"deletionTimestamp": stamp(T0)}})
    assert not is_pod_failed({"status": {"phase": "Succeeded"},
                              "metadata": {"deletionTimestamp": stamp(T0)}})
    assert not is_pod_failed({"status": {"phase": "Running"}, "metadata": {}})
