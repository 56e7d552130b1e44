"""Pod and node rows of `kubectl get` tables, against what kube-apiserver prints.

The cases marked "upstream" are the scenarios of kube-apiserver's own printer
tests (printers_test.go: TestPrintPod, TestPrintPodWithRestartableInitContainer,
TestPrintNodeStatus, ...) written as the JSON our API stores; their expected
cells are upstream's. The others are realistic objects as a kubelet reports
them, with the cells `kubectl get -o wide` shows for them.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from timonel.api.resources import by_kind
from timonel.api.server.tables import to_table

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
POD = by_kind("", "Pod")
NODE = by_kind("", "Node")


def ago(**kw: float) -> str:
    return (NOW - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def row(obj: dict[str, Any], rtype: Any = POD) -> dict[str, Any]:
    table = to_table([obj], rtype, now=NOW)
    json.dumps(table)  # the Table must be plain JSON
    return table["rows"][0]


def cells(obj: dict[str, Any], rtype: Any = POD) -> list[Any]:
    return row(obj, rtype)["cells"]


def pod(name: str, *, containers: int = 1, init: list[dict[str, Any]] | None = None,
        status: dict[str, Any] | None = None, created: str | None = None,
        **meta: Any) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "namespace": "default", **meta}
    if created:
        md["creationTimestamp"] = created
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": "busybox"}
                                           for i in range(containers)]}
    if init is not None:
        spec["initContainers"] = init
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec,
            "status": status or {}}


RUNNING: dict[str, Any] = {"running": {"startedAt": "2024-05-01T11:00:00Z"}}


def terminated_at(**kw: float) -> dict[str, Any]:
    return {"terminated": {"exitCode": 0, "finishedAt": ago(**kw)}}


# ---------------------------------------------------------------------------
# upstream TestPrintPod, TestPrintPodwide, TestPrintPodConditions


UPSTREAM_PODS = [
    # name, containers, status, expected (READY, STATUS, RESTARTS)
    ("test1", 2, {"phase": "podPhase", "containerStatuses": [
        {"ready": True, "restartCount": 3, "state": RUNNING}, {"restartCount": 3}]},
     ("1/2", "podPhase", "6")),
    ("test2", 2, {"phase": "podPhase", "containerStatuses": [
        {"ready": True, "restartCount": 3, "state": RUNNING},
        {"state": {"waiting": {"reason": "ContainerWaitingReason"}}, "restartCount": 3}]},
     ("1/2", "ContainerWaitingReason", "6")),
    ("test3", 2, {"phase": "podPhase", "containerStatuses": [
        {"state": {"waiting": {"reason": "ContainerWaitingReason"}}, "restartCount": 3},
        {"state": {"terminated": {"reason": "ContainerTerminatedReason"}}, "restartCount": 3}]},
     ("0/2", "ContainerWaitingReason", "6")),
    ("test4", 2, {"phase": "podPhase", "containerStatuses": [
        {"ready": True, "restartCount": 3, "state": RUNNING},
        {"ready": True, "restartCount": 3}]},
     ("1/2", "podPhase", "6")),
    ("test5", 2, {"reason": "podReason", "phase": "podPhase", "containerStatuses": [
        {"ready": True, "restartCount": 3, "state": RUNNING},
        {"ready": True, "restartCount": 3}]},
     ("1/2", "podReason", "6")),
    ("test6", 2, {"phase": "Running", "containerStatuses": [
        {"ready": True, "restartCount": 3,
         "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
        {"ready": True, "restartCount": 3, "state": RUNNING}]},
     ("1/2", "NotReady", "6")),
    ("test6b", 2, {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                   "containerStatuses": [
        {"ready": True, "restartCount": 3,
         "state": {"terminated": {"reason": "Completed", "exitCode": 0}}},
        {"ready": True, "restartCount": 3, "state": RUNNING}]},
     ("1/2", "Running", "6")),
    ("test12", 1, {"phase": "Running", "containerStatuses": [
        {"ready": True, "restartCount": 3, "state": RUNNING,
         "lastState": terminated_at(days=5)}]},
     ("1/1", "Running", "3 (5d ago)")),
    ("test13", 2, {"phase": "Running", "containerStatuses": [
        {"ready": True, "restartCount": 0, "state": RUNNING},
        {"ready": True, "restartCount": 3, "state": RUNNING,
         "lastState": terminated_at(days=10)}]},
     ("2/2", "Running", "3 (10d ago)")),
    ("test14", 2, {"phase": "Running", "containerStatuses": [
        {"ready": True, "restartCount": 6, "state": RUNNING, "lastState": terminated_at(days=5)},
        {"ready": True, "restartCount": 3, "state": RUNNING,
         "lastState": terminated_at(days=20)}]},
     ("2/2", "Running", "9 (5d ago)")),
    ("test15", 2, {"phase": "podPhase", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]},
     ("0/2", "SchedulingGated", "0")),
    ("test16", 1, {"phase": "Succeeded", "containerStatuses": [
        {"ready": False, "restartCount": 0,
         "state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]},
     ("0/1", "Completed", "0")),
    ("test17", 1, {"phase": "Failed", "containerStatuses": [
        {"ready": False, "restartCount": 0,
         "state": {"terminated": {"reason": "Error", "exitCode": 1}}}]},
     ("0/1", "Error", "0")),
]


@pytest.mark.parametrize(("name", "containers", "status", "expected"), UPSTREAM_PODS,
                         ids=[c[0] for c in UPSTREAM_PODS])
def test_upstream_pod_cases(name: str, containers: int, status: dict[str, Any],
                            expected: tuple[str, str, str]) -> None:
    got = cells(pod(name, containers=containers, status=status))
    assert got[:5] == [name, *expected, "<unknown>"]


@pytest.mark.parametrize(("init_count", "init_statuses", "expected"), [
    # test7: one init container restarting, one container not running
    (1, [{"restartCount": 3, "state": RUNNING, "lastState": terminated_at(seconds=10)}],
     ("0/1", "Init:0/1", "3 (10s ago)")),
    # test8: two init containers, the first restarting
    (2, [{"restartCount": 3, "state": RUNNING, "lastState": terminated_at(seconds=10)},
         {"state": {"waiting": {}}}],
     ("0/1", "Init:0/2", "3 (10s ago)")),
    # test9: the first completed without restarts, the second restarting
    (2, [{"state": {"terminated": {}}},
         {"restartCount": 3, "state": RUNNING, "lastState": terminated_at(seconds=10)}],
     ("0/1", "Init:1/2", "3 (10s ago)")),
    # test10: the first completed after restarts, the second restarting
    (2, [{"restartCount": 2, "state": {"terminated": {}}, "lastState": terminated_at(minutes=2)},
         {"restartCount": 3, "state": RUNNING, "lastState": terminated_at(seconds=10)}],
     ("0/1", "Init:1/2", "5 (10s ago)")),
])
def test_upstream_init_container_cases(init_count: int, init_statuses: list[dict[str, Any]],
                                       expected: tuple[str, str, str]) -> None:
    p = pod("p", init=[{"name": f"i{i}", "image": "busybox"} for i in range(init_count)],
            status={"phase": "podPhase", "initContainerStatuses": init_statuses,
                    "containerStatuses": [{"state": {"waiting": {}}}]})
    assert cells(p)[1:4] == list(expected)


def test_upstream_init_done_container_restarting() -> None:
    # test11: restarts of finished init containers no longer count
    p = pod("test11", init=[{"name": "i0"}], status={
        "phase": "Running",
        "initContainerStatuses": [{"restartCount": 2, "state": {"terminated": {}},
                                   "lastState": terminated_at(minutes=2)}],
        "containerStatuses": [{"restartCount": 4, "state": RUNNING,
                               "lastState": terminated_at(seconds=20)}]})
    assert cells(p)[1:4] == ["0/1", "Running", "4 (20s ago)"]


def test_upstream_deletion_cases() -> None:
    deleted = ago(seconds=10)
    running = pod("test19", deletionTimestamp=deleted, status={
        "phase": "Running", "containerStatuses": [{"state": RUNNING}]})
    pending = pod("test20", deletionTimestamp=deleted, status={"phase": "Pending"})
    succeeded = pod("test18", deletionTimestamp=deleted, status={
        "phase": "Succeeded",
        "containerStatuses": [{"state": {"terminated": {"reason": "Completed", "exitCode": 0}}}]})
    lost = pod("lost", deletionTimestamp=deleted, status={
        "phase": "Running", "reason": "NodeLost", "containerStatuses": [{"state": RUNNING}]})
    assert cells(running)[2] == "Terminating"
    assert cells(pending)[2] == "Terminating"
    assert cells(succeeded)[2] == "Completed"
    assert cells(lost)[2] == "Unknown"


SIDECARS = [{"name": "restartable-init-1", "restartPolicy": "Always"},
            {"name": "restartable-init-2", "restartPolicy": "Always"}]


@pytest.mark.parametrize(("phase", "initialized", "init_statuses", "containers", "expected"), [
    # the first sidecar running but not started
    ("Pending", "False",
     [{"name": "restartable-init-1", "restartCount": 3, "state": RUNNING, "started": False,
       "lastState": terminated_at(seconds=10)},
      {"name": "restartable-init-2", "state": {"waiting": {}}, "started": False}],
     [{"state": {"waiting": {}}}], ("0/3", "Init:0/2", "3 (10s ago)")),
    # the first started, the second running but not started
    ("Pending", "False",
     [{"name": "restartable-init-1", "restartCount": 3, "state": RUNNING, "started": True,
       "lastState": terminated_at(seconds=10)},
      {"name": "restartable-init-2", "state": RUNNING, "started": False}],
     [{"state": {"waiting": {}}}], ("0/3", "Init:1/2", "3 (10s ago)")),
    # both started, the container running
    ("Running", "True",
     [{"name": "restartable-init-1", "restartCount": 3, "state": RUNNING, "started": True,
       "lastState": terminated_at(seconds=10)},
      {"name": "restartable-init-2", "state": RUNNING, "started": True}],
     [{"ready": True, "restartCount": 4, "state": RUNNING, "lastState": terminated_at(seconds=20)}],
     ("1/3", "Running", "7 (10s ago)")),
    # both failed, the container completed
    ("Succeeded", "True",
     [{"name": "restartable-init-1", "restartCount": 3, "started": False,
       "state": {"terminated": {"reason": "Error", "exitCode": 137}},
       "lastState": terminated_at(seconds=10)},
      {"name": "restartable-init-2", "started": False,
       "state": {"terminated": {"reason": "Error", "exitCode": 137}}}],
     [{"restartCount": 4, "state": {"terminated": {"reason": "Completed", "exitCode": 0}},
       "lastState": terminated_at(seconds=20)}], ("0/3", "Completed", "7 (10s ago)")),
])
def test_upstream_sidecar_cases(phase: str, initialized: str, init_statuses: list[Any],
                                containers: list[Any], expected: tuple[str, str, str]) -> None:
    p = pod("p", init=SIDECARS, status={
        "phase": phase, "conditions": [{"type": "Initialized", "status": initialized}],
        "initContainerStatuses": init_statuses, "containerStatuses": containers})
    assert cells(p)[1:4] == list(expected)


def test_upstream_statuses_for_unknown_containers() -> None:
    p = pod("test4", init=[{"name": "init1"}, {"name": "sidecar1", "restartPolicy": "Always"}],
            status={"phase": "Running",
                    "initContainerStatuses": [{"name": "initinvalid"}, {"name": "init1"},
                                              {"name": "sidecar1"}],
                    "containerStatuses": [{"name": "containerinvalid"}, {"name": "container1"}]})
    assert cells(p)[1:4] == ["0/2", "Init:0/2", "0"]


def test_upstream_wide_columns() -> None:
    p = pod("test1", containers=2, status={
        "phase": "podPhase", "podIPs": [{"ip": "1.1.1.1"}, {"ip": "2001:db8::"}],
        "nominatedNodeName": "node1",
        "conditions": [{"type": "condition1", "status": "False"},
                       {"type": "condition2", "status": "True"}],
        "containerStatuses": [{"ready": True, "restartCount": 3, "state": RUNNING},
                              {"restartCount": 3}]})
    p["spec"]["nodeName"] = "test1"
    p["spec"]["readinessGates"] = [{"conditionType": f"condition{i}"} for i in (1, 2, 3)]
    assert cells(p) == ["test1", "1/2", "podPhase", "6", "<unknown>", "1.1.1.1", "test1", "node1",
                        "1/3"]
    bare = pod("test2", containers=2, status={"phase": "podPhase"})
    assert cells(bare)[5:] == ["<none>", "<none>", "<none>", "<none>"]


def test_upstream_row_conditions() -> None:
    ok = row(pod("a", status={"phase": "Succeeded"}))
    failed = row(pod("b", status={"phase": "Failed"}))
    running = row(pod("c", status={"phase": "Running"}))
    assert ok["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                 "message": "The pod has completed successfully."}]
    assert failed["conditions"] == [{"type": "Completed", "status": "True", "reason": "Failed",
                                     "message": "The pod failed."}]
    assert "conditions" not in running


# ---------------------------------------------------------------------------
# Realistic pods, as our node agent reports them


def kubelet_pod(name: str, statuses: list[dict[str, Any]], *, phase: str = "Running",
                created: str | None = None, init: list[dict[str, Any]] | None = None,
                init_statuses: list[dict[str, Any]] | None = None,
                **meta: Any) -> dict[str, Any]:
    specs = [{"name": st["name"], "image": st.get("image", "busybox:1.36")} for st in statuses]
    obj: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": f"uid-{name}",
                     "resourceVersion": "812", "creationTimestamp": created or ago(minutes=42),
                     "labels": {"app": "web"}, **meta},
        "spec": {"nodeName": "node-a", "containers": specs, "restartPolicy": "Always"},
        "status": {"phase": phase, "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}],
                   "hostIP": "172.18.0.2", "startTime": ago(minutes=42),
                   "conditions": [
                       {"type": "Initialized", "status": "True"},
                       {"type": "Ready", "status": "True" if all(
                           st.get("ready") for st in statuses) else "False"},
                       {"type": "PodScheduled", "status": "True"}],
                   "containerStatuses": [{"image": "busybox:1.36", "imageID": "sha256:abc",
                                          "restartCount": 0, "ready": False, **st}
                                         for st in statuses]},
    }
    if init is not None:
        obj["spec"]["initContainers"] = init
        obj["status"]["initContainerStatuses"] = init_statuses or []
    return obj


def test_running_pod_two_containers_one_restarted() -> None:
    p = kubelet_pod("web-7d4b9c-x2k", [
        {"name": "web", "image": "nginx:1.27", "ready": True, "started": True,
         "state": {"running": {"startedAt": ago(minutes=41)}}},
        {"name": "log-shipper", "ready": True, "started": True, "restartCount": 1,
         "state": {"running": {"startedAt": ago(minutes=5)}},
         "lastState": {"terminated": {"exitCode": 137, "reason": "Error",
                                      "startedAt": ago(minutes=41), "finishedAt": ago(minutes=5)}}},
    ])
    assert cells(p) == ["web-7d4b9c-x2k", "2/2", "Running", "1 (5m ago)", "42m", "10.244.1.7",
                        "node-a", "<none>", "<none>"]


def test_crash_loop_back_off_pod() -> None:
    p = kubelet_pod("crashy", [
        {"name": "app", "restartCount": 4,
         "state": {"waiting": {"reason": "CrashLoopBackOff",
                               "message": "back-off 1m20s restarting failed container=app"}},
         "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                      "finishedAt": ago(seconds=50)}}},
    ], created=ago(minutes=3, seconds=20))
    assert cells(p)[:5] == ["crashy", "0/1", "CrashLoopBackOff", "4 (50s ago)", "3m20s"]


@pytest.mark.parametrize(("state", "status"), [
    ({"terminated": {"exitCode": 137, "reason": "OOMKilled", "finishedAt": ago(seconds=3)}},
     "OOMKilled"),
    ({"terminated": {"exitCode": 2, "finishedAt": ago(seconds=3)}}, "ExitCode:2"),
    ({"terminated": {"exitCode": 143, "signal": 15, "finishedAt": ago(seconds=3)}}, "Signal:15"),
    ({"waiting": {"reason": "ContainerCreating"}}, "ContainerCreating"),
    ({"waiting": {"reason": "ErrImagePull", "message": "not found"}}, "ErrImagePull"),
    ({"waiting": {"reason": "CreateContainerConfigError"}}, "CreateContainerConfigError"),
])
def test_container_state_reasons(state: dict[str, Any], status: str) -> None:
    p = kubelet_pod("p", [{"name": "app", "state": state}])
    assert cells(p)[1:3] == ["0/1", status]


def test_init_container_pod() -> None:
    init = [{"name": "migrate", "image": "migrate:1"}]
    app = [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}]
    running = kubelet_pod("p", app, phase="Pending", init=init, init_statuses=[
        {"name": "migrate", "ready": False, "restartCount": 0, "state": RUNNING}])
    running["status"]["conditions"][0]["status"] = "False"
    assert cells(running)[1:4] == ["0/1", "Init:0/1", "0"]

    failing = kubelet_pod("p", app, phase="Pending", init=init, init_statuses=[
        {"name": "migrate", "restartCount": 2,
         "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                      "finishedAt": ago(seconds=30)}}}])
    failing["status"]["conditions"][0]["status"] = "False"
    assert cells(failing)[1:4] == ["0/1", "Init:CrashLoopBackOff", "2 (30s ago)"]

    for term, shown in (({"exitCode": 1, "reason": "Error"}, "Init:Error"),
                        ({"exitCode": 3}, "Init:ExitCode:3"),
                        ({"exitCode": 137, "signal": 9}, "Init:Signal:9")):
        failed = kubelet_pod("p", app, phase="Pending", init=init, init_statuses=[
            {"name": "migrate", "state": {"terminated": term}}])
        failed["status"]["conditions"][0]["status"] = "False"
        assert cells(failed)[2] == shown

    done = kubelet_pod("p", app, phase="Pending", init=init, init_statuses=[
        {"name": "migrate", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}])
    assert cells(done)[1:4] == ["0/1", "PodInitializing", "0"]


def test_terminating_pod() -> None:
    p = kubelet_pod("web", [{"name": "web", "ready": True, "state": RUNNING}],
                    deletionTimestamp=ago(seconds=5), deletionGracePeriodSeconds=30)
    assert cells(p)[1:3] == ["1/1", "Terminating"]


def test_completed_pod() -> None:
    p = kubelet_pod("job-x7", [
        {"name": "work", "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                  "finishedAt": ago(minutes=1)}}}],
        phase="Succeeded")
    r = row(p)
    assert r["cells"][1:4] == ["0/1", "Completed", "0"]
    assert r["conditions"][0]["reason"] == "Succeeded"


def test_evicted_and_pending_pods() -> None:
    evicted = pod("e", status={"phase": "Failed", "reason": "Evicted",
                               "message": "The node was low on resource: memory."})
    assert cells(evicted)[1:3] == ["0/1", "Evicted"]
    assert cells(pod("q", status={"phase": "Pending"}))[1:3] == ["0/1", "Pending"]


# ---------------------------------------------------------------------------
# Nodes


def node(name: str, *, conditions: list[dict[str, Any]] | None = None,
         unschedulable: bool = False, labels: dict[str, str] | None = None,
         **status: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"unschedulable": True} if unschedulable else {},
            "status": {"conditions": conditions or [], **status}}


READY = [{"type": "Ready", "status": "True"}]
NOT_READY = [{"type": "Ready", "status": "False"}]


@pytest.mark.parametrize(("n", "status"), [
    (node("foo1", conditions=READY), "Ready"),
    (node("foo2", conditions=READY, unschedulable=True), "Ready,SchedulingDisabled"),
    (node("foo3", conditions=READY + READY), "Ready"),
    (node("foo4", conditions=NOT_READY), "NotReady"),
    (node("foo5", conditions=NOT_READY, unschedulable=True), "NotReady,SchedulingDisabled"),
    (node("foo6", conditions=[{"type": "InvalidValue", "status": "True"}]), "Unknown"),
    (node("foo7", conditions=[{}]), "Unknown"),
    (node("foo8", conditions=[{"type": "InvalidValue", "status": "True"}], unschedulable=True),
     "Unknown,SchedulingDisabled"),
])
def test_upstream_node_status(n: dict[str, Any], status: str) -> None:
    assert cells(n, NODE)[:5] == [n["metadata"]["name"], status, "<none>", "<unknown>", ""]


def test_upstream_node_roles_and_addresses() -> None:
    roles = node("foo10", labels={"node-role.kubernetes.io/master": "",
                                  "node-role.kubernetes.io/control-plane": "",
                                  "node-role.kubernetes.io/proxy": "", "kubernetes.io/role": "node"})
    assert cells(roles, NODE)[2] == "control-plane,master,node,proxy"
    assert cells(node("foo11", labels={"kubernetes.io/role": "node"}), NODE)[2] == "node"
    addrs = node("foo3", addresses=[{"type": "ExternalIP", "address": "2.2.2.2"},
                                    {"type": "InternalIP", "address": "3.3.3.3"},
                                    {"type": "ExternalIP", "address": "4.4.4.4"}])
    assert cells(addrs, NODE)[5:] == ["3.3.3.3", "2.2.2.2", "<unknown>", "<unknown>", "<unknown>"]


def test_cordoned_ready_node() -> None:
    n = node("node-a", unschedulable=True, labels={
        "kubernetes.io/hostname": "node-a", "node-role.kubernetes.io/control-plane": ""},
        conditions=[{"type": "MemoryPressure", "status": "False"},
                    {"type": "DiskPressure", "status": "False"},
                    {"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        addresses=[{"type": "InternalIP", "address": "172.18.0.2"},
                   {"type": "Hostname", "address": "node-a"}],
        nodeInfo={"kubeletVersion": "v1.32.0", "osImage": "Debian GNU/Linux 12 (bookworm)",
                  "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "timonel://0.1.0"})
    n["metadata"]["creationTimestamp"] = ago(days=5, hours=3)
    n["spec"]["taints"] = [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
    assert cells(n, NODE) == ["node-a", "Ready,SchedulingDisabled", "control-plane", "5d3h",
                              "v1.32.0", "172.18.0.2", "<none>", "Debian GNU/Linux 12 (bookworm)",
                              "6.1.0-18-amd64", "timonel://0.1.0"]
