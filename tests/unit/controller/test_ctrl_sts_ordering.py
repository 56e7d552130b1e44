"""StatefulSet ordinal logic: what OrderedReady and Parallel do next for a
given set of pod states, and the pod identity helpers."""

from __future__ import annotations

from timonel.controller.statefulset import identity
from timonel.controller.statefulset.ordering import Action, PodState, plan

OLD, NEW = "web-old", "web-new"
HEALTHY = PodState(revision=NEW, phase="Running", ready=True, available=True)


def healthy(rev: str = NEW) -> PodState:
    return PodState(revision=rev, phase="Running", ready=True, available=True)


def run(pods: dict[int, PodState], replicas: int = 3, *, monotonic: bool = True,
        partition: int = 0, rolling: bool = True, start: int = 0,
        current: str = NEW) -> list[Action]:
    return plan(start=start, replicas=replicas, pods=pods, monotonic=monotonic,
                current_revision=current, update_revision=NEW, rolling=rolling,
                partition=partition)


def test_ordered_ready_creates_one_at_a_time() -> None:
    assert run({}) == [Action("create", 0, NEW)]
    # web-0 exists but is not ready yet: wait.
    assert run({0: PodState(revision=NEW, phase="Pending")}) == []
    assert run({0: PodState(revision=NEW, phase="Running", ready=True, available=False)}) == []
    assert run({0: healthy()}) == [Action("create", 1, NEW)]
    assert run({0: healthy(), 1: healthy()}) == [Action("create", 2, NEW)]
    assert run({0: healthy(), 1: healthy(), 2: healthy()}) == []


def test_ordered_ready_fills_a_gap_before_going_on() -> None:
    assert run({0: healthy(), 2: healthy()}) == [Action("create", 1, NEW)]


def test_parallel_creates_everything_at_once() -> None:
    assert run({1: PodState(revision=NEW)}, monotonic=False) == [
        Action("create", 0, NEW), Action("create", 2, NEW)]


def test_failed_pod_is_replaced() -> None:
    assert run({0: PodState(revision=NEW, phase="Failed")}) == [
        Action("delete", 0, why="failed")]


def test_scale_down_highest_first_and_one_at_a_time() -> None:
    pods = {i: healthy() for i in range(5)}
    assert run(pods, replicas=2) == [Action("delete", 4, why="condemned")]
    # web-4 is terminating: wait for it to go before touching web-3.
    pods[4] = PodState(revision=NEW, phase="Running", ready=True, terminating=True)
    assert run(pods, replicas=2) == []
    del pods[4]
    assert run(pods, replicas=2) == [Action("delete", 3, why="condemned")]


def test_scale_down_waits_for_unhealthy_pods_unless_it_is_the_first_unhealthy() -> None:
    pods = {0: healthy(), 1: healthy(), 2: healthy(), 3: PodState(revision=NEW, phase="Pending")}
    # web-3 (to be removed) is the first unhealthy pod: removing it is fine.
    assert run(pods, replicas=2) == [Action("delete", 3, why="condemned")]
    pods = {0: healthy(), 1: healthy(), 2: healthy(), 3: PodState(revision=NEW, phase="Pending"),
            4: PodState(revision=NEW, phase="Pending")}
    # web-4 is unhealthy but web-3 is the first unhealthy one: web-4 waits (as upstream).
    assert run(pods, replicas=2) == []


def test_parallel_scale_down_deletes_all_condemned() -> None:
    pods = {i: healthy() for i in range(4)}
    assert run(pods, replicas=1, monotonic=False) == [
        Action("delete", 3, why="condemned"), Action("delete", 2, why="condemned"),
        Action("delete", 1, why="condemned")]


def test_rolling_update_in_reverse_ordinal_order() -> None:
    pods = {i: healthy(OLD) for i in range(3)}
    assert run(pods, current=OLD) == [Action("delete", 2, why="update")]
    pods[2] = PodState(revision=NEW, phase="Pending")
    assert run(pods, current=OLD) == []  # the new web-2 is not healthy yet
    pods[2] = healthy()
    assert run(pods, current=OLD) == [Action("delete", 1, why="update")]


def test_rolling_update_stops_at_the_partition() -> None:
    pods = {0: healthy(OLD), 1: healthy(OLD), 2: healthy(NEW)}
    assert run(pods, partition=2, current=OLD) == []
    # Recreated pods below the partition get the current revision.
    assert run({0: healthy(OLD), 2: healthy(NEW)}, partition=2, current=OLD) == [
        Action("create", 1, OLD)]


def test_on_delete_never_deletes_for_updates() -> None:
    pods = {i: healthy(OLD) for i in range(3)}
    assert run(pods, rolling=False, current=OLD) == []


def test_start_ordinal() -> None:
    assert run({}, start=5) == [Action("create", 5, NEW)]
    pods = {5: healthy(), 6: healthy(), 7: healthy()}
    assert run(pods, replicas=2, start=5) == [Action("delete", 7, why="condemned")]


def test_identity() -> None:
    sts = {"metadata": {"name": "web", "namespace": "ns"},
           "spec": {"serviceName": "svc", "selector": {"matchLabels": {"app": "web"}},
                    "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}}
    template = {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c"}],
                         "volumes": [{"name": "data", "emptyDir": {}}]}}
    pod = identity.new_pod(sts, template, 2, "web-abc")
    assert pod["metadata"]["name"] == "web-2"
    assert pod["metadata"]["labels"] == {"app": "web", identity.POD_NAME_LABEL: "web-2",
                                         identity.POD_INDEX_LABEL: "2",
                                         "controller-revision-hash": "web-abc"}
    assert pod["spec"]["hostname"] == "web-2" and pod["spec"]["subdomain"] == "svc"
    assert pod["spec"]["volumes"] == [{"name": "data",
                                       "persistentVolumeClaim": {"claimName": "data-web-2"}}]
    assert identity.ordinal_of(sts, pod) == 2
    assert identity.ordinal_of(sts, {"metadata": {"name": "web-x"}}) is None
    assert identity.ordinal_of(sts, {"metadata": {"name": "webby-1"}}) is None
    assert identity.identity_matches(pod, sts, 2) and not identity.identity_matches(pod, sts, 1)
    claim = identity.claims_for(sts, 2)[0]
    assert claim["metadata"]["name"] == "data-web-2"
    assert claim["metadata"]["labels"] == {"app": "web"}
