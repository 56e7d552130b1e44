"""The Job controller against a real API server with fake nodes: parallel
completions, backoff to BackoffLimitExceeded, Indexed completion, active
deadline and TTL after finished."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.conftest import ApiServer
from tests.integration.controller.workload_helpers import (
    Binder,
    events_for,
    eventually,
    finish_pod,
    has_event,
    make_context,
    never,
    new_namespace,
    private_server,  # noqa: F401 (fixture)
    running,
)
from tests.integration.fakenodes import PODS, FakeNodes
from timonel.api import meta
from timonel.api.client import Client
from timonel.controller import job as job_controller

JOBS = ("batch/v1", "Job")
NODES = ["job-n1", "job-n2"]
TRACKING = "batch.kubernetes.io/job-tracking"


@pytest.fixture
async def env(private_server: ApiServer) -> AsyncIterator[tuple[Client, str]]:  # noqa: F811
    async with Client.from_kubeconfig(private_server.kubeconfig) as client, \
            FakeNodes(client, NODES, heartbeat_seconds=5), Binder(client, NODES):
        ctx = make_context(client, "job-controller", extra={"job_backoff_base": 1.0})
        ns = await new_namespace(client, "job")
        async with running(ctx, job_controller.run):
            yield client, ns


def job(name: str, *, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {**spec, "template": {
                "metadata": {"labels": {"app": name, **(labels or {})}},
                "spec": {"restartPolicy": "Never",
                         "containers": [{"name": "c", "image": "busybox"}]}}}}


async def job_pods(client: Client, ns: str, name: str) -> list[dict[str, Any]]:
    return (await client.list(PODS, ns, label_selector=f"job-name={name}"))["items"]


def condition(j: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in j.get("status", {}).get("conditions") or [] if c["type"] == type_),
                None)


async def wait_condition(client: Client, ns: str, name: str, type_: str,
                         timeout: float = 60) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        j = await client.get(JOBS, ns, name)
        c = condition(j, type_)
        return j if c and c["status"] == "True" else None

    return await eventually(done, timeout=timeout, what=f"job {name} {type_}")


async def test_parallel_job_runs_two_at_a_time_and_completes(env: tuple[Client, str]) -> None:
    client, ns = env
    await client.create(JOBS, job("par", completions=3, parallelism=2), namespace=ns)

    async def running_pods() -> list[dict[str, Any]]:
        pods = await job_pods(client, ns, "par")
        return [p for p in pods if p.get("status", {}).get("phase") == "Running"]

    first = await eventually(lambda: _count(running_pods(), 2), what="two running pods")
    await never(lambda: _more_than(job_pods(client, ns, "par"), 2), 1.5, "a third pod")
    status = (await client.get(JOBS, ns, "par"))["status"]
    assert status["active"] == 2 and status["ready"] == 2 and status.get("startTime")
    pod = first[0]
    assert TRACKING in pod["metadata"]["finalizers"]
    ref = pod["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "Job" and ref["controller"] is True and ref["blockOwnerDeletion"] is True
    assert pod["metadata"]["generateName"] == "par-"

    await finish_pod(client, pod)
    # One succeeded: two completions left, so a replacement runs next to the other.
    await eventually(lambda: _count(running_pods(), 2), what="replacement pod running")
    assert len(await job_pods(client, ns, "par")) == 3
    for p in await running_pods():
        await finish_pod(client, p)
    j = await wait_condition(client, ns, "par", "Complete")
    st = j["status"]
    assert st["succeeded"] == 3 and "failed" not in st and "active" not in st
    assert st["ready"] == 0 and st["uncountedTerminatedPods"] == {}
    assert st["completionTime"] and st["startTime"]
    met = condition(j, "SuccessCriteriaMet")
    assert met and met["reason"] == "CompletionsReached"
    assert condition(j, "Complete")["reason"] == "CompletionsReached"  # type: ignore[index]
    for p in await job_pods(client, ns, "par"):
        assert TRACKING not in (p["metadata"].get("finalizers") or [])
    assert has_event(await events_for(client, ns, "par"), "Completed", "Job completed")
    assert has_event(await events_for(client, ns, "par"), "SuccessfulCreate", "Created pod: par-")


async def _count(aw: Any, n: int) -> list[dict[str, Any]] | None:
    items = await aw
    return items if len(items) == n else None


async def _more_than(aw: Any, n: int) -> bool:
    return len(await aw) > n


async def test_backoff_limit_exceeded(env: tuple[Client, str]) -> None:
    client, ns = env
    await client.create(JOBS, job("fails", labels={"fake/fail": "true"}, backoffLimit=2),
                        namespace=ns)
    j = await wait_condition(client, ns, "fails", "Failed", timeout=90)
    failed = condition(j, "Failed")
    assert failed and failed["reason"] == "BackoffLimitExceeded"
    assert failed["message"] == "Job has reached the specified backoff limit"
    target = condition(j, "FailureTarget")
    assert target and target["reason"] == "BackoffLimitExceeded"
    assert j["status"]["failed"] == 3 and "completionTime" not in j["status"]
    pods = await job_pods(client, ns, "fails")
    assert len(pods) == 3, [p["metadata"]["name"] for p in pods]
    created = sorted(meta.parse_time(p["metadata"]["creationTimestamp"]) for p in pods)
    # Backoff of 1 s then 2 s between recreations (timestamps have 1 s precision).
    assert (created[2] - created[0]).total_seconds() >= 2
    assert has_event(await events_for(client, ns, "fails"), "BackoffLimitExceeded")
    await never(lambda: _more_than(job_pods(client, ns, "fails"), 3), 1.5, "a fourth pod")


async def test_indexed_job_completes_every_index(env: tuple[Client, str]) -> None:
    client, ns = env
    await client.create(JOBS, job("idx", labels={"fake/complete": "true"}, completions=3,
                                  parallelism=3, completionMode="Indexed"), namespace=ns)
    j = await wait_condition(client, ns, "idx", "Complete")
    assert j["status"]["completedIndexes"] == "0-2"
    assert j["status"]["succeeded"] == 3
    pods = await job_pods(client, ns, "idx")
    by_index = {p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p
                for p in pods}
    assert sorted(by_index) == ["0", "1", "2"] and len(pods) == 3
    for ix, p in by_index.items():
        assert p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == ix
        assert p["spec"]["hostname"] == f"idx-{ix}"
        assert p["metadata"]["generateName"] == f"idx-{ix}-"
        env_var = next(e for e in p["spec"]["containers"][0]["env"]
                       if e["name"] == "JOB_COMPLETION_INDEX")
        assert "job-completion-index" in env_var["valueFrom"]["fieldRef"]["fieldPath"]


async def test_indexed_job_replaces_a_failed_index(env: tuple[Client, str]) -> None:
    client, ns = env
    await client.create(JOBS, job("idx2", completions=2, parallelism=2, backoffLimit=3,
                                  completionMode="Indexed"), namespace=ns)

    async def two_running() -> list[dict[str, Any]] | None:
        pods = [p for p in await job_pods(client, ns, "idx2")
                if p.get("status", {}).get("phase") == "Running"]
        return pods if len(pods) == 2 else None

    pods = await eventually(two_running, what="two indexed pods running")
    one = next(p for p in pods if p["metadata"]["annotations"][
        "batch.kubernetes.io/job-completion-index"] == "1")
    await finish_pod(client, one, exit_code=1)

    async def index1_again() -> dict[str, Any] | None:
        for p in await job_pods(client, ns, "idx2"):
            if (p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == "1"
                    and p["metadata"]["uid"] != one["metadata"]["uid"]
                    and p.get("status", {}).get("phase") == "Running"):
                return p
        return None

    again = await eventually(index1_again, what="index 1 recreated after backoff")
    await finish_pod(client, again)
    zero = next(p for p in pods if p["metadata"]["uid"] != one["metadata"]["uid"])
    await finish_pod(client, zero)
    j = await wait_condition(client, ns, "idx2", "Complete")
    assert j["status"]["completedIndexes"] == "0,1"
    assert j["status"]["failed"] == 1 and j["status"]["succeeded"] == 2


async def test_active_deadline_fails_the_job_and_stops_its_pods(env: tuple[Client, str]) -> None:
    client, ns = env
    await client.create(JOBS, job("slow", parallelism=2, completions=4,
                                  activeDeadlineSeconds=2), namespace=ns)
    j = await wait_condition(client, ns, "slow", "Failed", timeout=60)
    assert condition(j, "Failed")["reason"] == "DeadlineExceeded"  # type: ignore[index]
    assert condition(j, "FailureTarget")["message"] == (  # type: ignore[index]
        "Job was active longer than specified deadline")
    assert j["status"]["failed"] == 2 and "active" not in j["status"]

    async def no_pods_left() -> bool:
        return not await job_pods(client, ns, "slow")

    await eventually(no_pods_left, what="the job's pods to be gone")


async def test_ttl_after_finished_deletes_the_job(env: tuple[Client, str]) -> None:
    client, ns = env
    await client.create(JOBS, job("short", labels={"fake/complete": "true"},
                                  ttlSecondsAfterFinished=1), namespace=ns)
    await wait_condition(client, ns, "short", "Complete")

    async def deleting() -> bool:
        lst = (await client.list(JOBS, ns))["items"]
        return not any(j["metadata"]["name"] == "short" and not j["metadata"].get(
            "deletionTimestamp") for j in lst)

    # Deleted in the foreground: without a garbage collector running here the
    # Job stays marked (foregroundDeletion finalizer) until its pods are gone.
    await eventually(deleting, timeout=30, what="job deleted after its TTL")


async def test_restarted_controller_creates_no_extra_pods_and_counts_once(
        private_server: ApiServer) -> None:  # noqa: F811
    async with Client.from_kubeconfig(private_server.kubeconfig) as client, \
            FakeNodes(client, NODES, heartbeat_seconds=5), Binder(client, NODES):
        ns = await new_namespace(client, "job")
        await client.create(JOBS, job("rs", completions=4, parallelism=2), namespace=ns)

        async def running_pods() -> list[dict[str, Any]]:
            return [p for p in await job_pods(client, ns, "rs")
                    if p.get("status", {}).get("phase") == "Running"]

        ctx = make_context(client, "job-controller")
        async with running(ctx, job_controller.run):
            first = await eventually(lambda: _count(running_pods(), 2), what="two running pods")
            await finish_pod(client, first[0])
            await eventually(lambda: _count(running_pods(), 2), what="replacement running")
        # The controller is down while a pod finishes; a new one (fresh
        # caches, no memory) must count it once and not double the pods.
        for p in await running_pods():
            await finish_pod(client, p)
        ctx = make_context(client, "job-controller")
        async with running(ctx, job_controller.run):
            async def three_succeeded() -> dict[str, Any] | None:
                j = await client.get(JOBS, ns, "rs")
                return j if j.get("status", {}).get("succeeded") == 3 else None

            await eventually(three_succeeded, what="3 counted after the restart")
            last = await eventually(lambda: _count(running_pods(), 1), what="the fourth pod")
            await never(lambda: _more_than(job_pods(client, ns, "rs"), 4), 1.0, "a fifth pod")
            await finish_pod(client, last[0])
            j = await wait_condition(client, ns, "rs", "Complete")
        assert j["status"]["succeeded"] == 4 and "failed" not in j["status"]
        assert len(await job_pods(client, ns, "rs")) == 4
