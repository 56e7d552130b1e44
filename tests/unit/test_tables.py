"""The `meta.k8s.io/v1` Table as kube-apiserver serves it to `kubectl get`.

Column lists, cell values and their JSON types follow upstream's printers; the
cases marked "upstream" come from its printer tests (TestPrintDeployment,
TestPrintJob, TestPrintDaemonSet, duration_test.go...).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timonel.api.errors import ApiError
from timonel.api.resources import RESOURCES, ResourceType, by_kind
from timonel.api.server.tables import human_duration, to_table

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def rtype(group: str, kind: str) -> ResourceType:
    r = by_kind(group, kind)
    assert r is not None
    return r


def ago(**kw: float) -> str:
    return (NOW - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


def obj(name: str, namespace: str | None = "shop", **fields: Any) -> dict[str, Any]:
    md: dict[str, Any] = {"name": name, "creationTimestamp": ago(days=2), "resourceVersion": "7"}
    if namespace:
        md["namespace"] = namespace
    return {"metadata": md, **fields}


def cells(group: str, kind: str, o: dict[str, Any]) -> list[Any]:
    table = to_table([o], rtype(group, kind), now=NOW)
    json.dumps(table)
    row = table["rows"][0]["cells"]
    assert len(row) == len(table["columnDefinitions"])
    return row


def columns(group: str, kind: str) -> list[tuple[str, str, int]]:
    defs = to_table([], rtype(group, kind))["columnDefinitions"]
    return [(c["name"], c["type"], c["priority"]) for c in defs]


# ---------------------------------------------------------------------------
# Human durations (upstream duration_test.go)


@pytest.mark.parametrize(("d", "want"), [
    (timedelta(seconds=1), "1s"), (timedelta(seconds=70), "70s"),
    (timedelta(seconds=190), "3m10s"), (timedelta(minutes=70), "70m"),
    (timedelta(hours=47), "47h"), (timedelta(hours=49), "2d1h"),
    (timedelta(hours=8 * 24 + 2), "8d"), (timedelta(days=367), "367d"),
    (timedelta(hours=365 * 2 * 24 + 25), "2y1d"), (timedelta(hours=365 * 8 * 24 + 2), "8y"),
    (timedelta(seconds=-2), "<invalid>"), (timedelta(seconds=-2, microseconds=1), "0s"),
    (timedelta(0), "0s"), (timedelta(milliseconds=999), "0s"),
    (timedelta(minutes=2, milliseconds=-1), "119s"), (timedelta(minutes=2), "2m"),
    (timedelta(minutes=2, seconds=1), "2m1s"), (timedelta(minutes=10, milliseconds=-1), "9m59s"),
    (timedelta(minutes=10), "10m"), (timedelta(minutes=10, seconds=1), "10m"),
    (timedelta(hours=3, milliseconds=-1), "179m"), (timedelta(hours=3), "3h"),
    (timedelta(hours=3, minutes=1), "3h1m"), (timedelta(hours=8, milliseconds=-1), "7h59m"),
    (timedelta(hours=8), "8h"), (timedelta(hours=8, minutes=59), "8h"),
    (timedelta(days=2, milliseconds=-1), "47h"), (timedelta(days=2), "2d"),
    (timedelta(days=8, milliseconds=-1), "7d23h"), (timedelta(days=8), "8d"),
    (timedelta(days=730, milliseconds=-1), "729d"), (timedelta(days=730), "2y"),
    (timedelta(days=731, milliseconds=-1), "2y"), (timedelta(days=731), "2y1d"),
    (timedelta(days=8 * 365, milliseconds=-1), "7y364d"), (timedelta(days=8 * 365), "8y"),
    (timedelta(days=9 * 365), "9y"),
])
def test_human_duration(d: timedelta, want: str) -> None:
    assert human_duration(d) == want


# ---------------------------------------------------------------------------
# The Table object


POD = rtype("", "Pod")


def test_table_shape_for_a_list() -> None:
    pods = [obj("a", status={"phase": "Running"}, spec={"containers": [{"name": "c"}]}),
            obj("b", namespace="other", spec={"containers": [{"name": "c"}]})]
    table = to_table(pods, POD, now=NOW, list_meta={"resourceVersion": "99", "continue": "tok",
                                                     "remainingItemCount": 3})
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "99", "continue": "tok",
                                 "remainingItemCount": 3}
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Ready", "Status", "Restarts", "Age", "IP", "Node", "Nominated Node",
        "Readiness Gates"]
    for c in table["columnDefinitions"]:
        assert set(c) == {"name", "type", "format", "description", "priority"}
    name = table["columnDefinitions"][0]
    assert name["format"] == "name"
    assert name["description"].startswith("Name must be unique within a namespace.")
    assert table["columnDefinitions"][5]["description"].startswith("podIP address allocated")
    # kubectl get -A reads the namespace from each row's PartialObjectMetadata.
    assert table["rows"][1]["object"] == {"kind": "PartialObjectMetadata",
                                          "apiVersion": "meta.k8s.io/v1",
                                          "metadata": pods[1]["metadata"]}
    assert table["rows"][1]["object"]["metadata"]["namespace"] == "other"


def test_single_object_and_watch_tables() -> None:
    p = obj("a", spec={"containers": [{"name": "c"}]})
    table = to_table([p], POD, now=NOW)
    assert table["metadata"] == {"resourceVersion": "7"}
    later = to_table([p], POD, now=NOW, include_headers=False)
    assert later["columnDefinitions"] == []
    assert later["rows"] == table["rows"]
    assert to_table([], POD, list_meta={"resourceVersion": ""})["metadata"] == {}


def test_include_object() -> None:
    p = obj("a", spec={"containers": [{"name": "c"}]})
    full = to_table([p], POD, include_object="Object")["rows"][0]["object"]
    assert full["apiVersion"] == "v1" and full["kind"] == "Pod" and full["spec"] == p["spec"]
    assert "apiVersion" not in p  # the input is not changed
    assert "object" not in to_table([p], POD, include_object="None")["rows"][0]
    assert to_table([p], POD, include_object="")["rows"][0]["object"]["kind"] == (
        "PartialObjectMetadata")
    beta = to_table([p], POD, api_version="meta.k8s.io/v1beta1")
    assert beta["apiVersion"] == beta["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"
    with pytest.raises(ApiError) as e:
        to_table([p], POD, include_object="Everything")
    assert e.value.code == 400
    assert e.value.message == 'unrecognized includeObject value: "Everything"'


def test_every_served_kind_prints_a_minimal_object() -> None:
    for r in RESOURCES:
        table = to_table([{"metadata": {"name": "x"}}, {}], r, now=NOW)
        json.dumps(table)
        width = len(table["columnDefinitions"])
        assert width >= 2, r.kind
        assert all(len(row["cells"]) == width for row in table["rows"]), r.kind


def test_default_table_is_name_and_created_at() -> None:
    assert columns("rbac.authorization.k8s.io", "ClusterRole") == [
        ("Name", "string", 0), ("Created At", "date", 0)]
    role = obj("admin", namespace=None)
    role["metadata"]["creationTimestamp"] = "2024-04-29T10:11:12+00:00"
    assert cells("rbac.authorization.k8s.io", "ClusterRole", role) == [
        "admin", "2024-04-29T10:11:12Z"]
    assert cells("rbac.authorization.k8s.io", "Role", obj("r"))[0] == "r"
    assert cells("", "LimitRange", {"metadata": {"name": "l"}}) == ["l", "0001-01-01T00:00:00Z"]


def test_age_of_an_object_without_creation_time_is_unknown() -> None:
    assert cells("", "ConfigMap", {"metadata": {"name": "c"}}) == ["c", 0, "<unknown>"]


# ---------------------------------------------------------------------------
# Workloads

TEMPLATE = {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"},
                                    {"name": "log", "image": "busybox:1.36"}]}}


def test_deployment_mid_rollout() -> None:
    assert columns("apps", "Deployment") == [
        ("Name", "string", 0), ("Ready", "string", 0), ("Up-to-date", "string", 0),
        ("Available", "string", 0), ("Age", "string", 0), ("Containers", "string", 1),
        ("Images", "string", 1), ("Selector", "string", 1)]
    d = obj("web", spec={"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                         "template": TEMPLATE},
            status={"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1,
                    "readyReplicas": 3, "availableReplicas": 3, "unavailableReplicas": 1})
    assert cells("apps", "Deployment", d) == ["web", "3/3", 1, 3, "2d", "web,log",
                                              "nginx:1.27,busybox:1.36", "app=web"]


def test_upstream_deployment_and_daemonset() -> None:
    d = obj("test1", spec={"replicas": 5, "selector": {"matchLabels": {"foo": "bar"}},
                           "template": {"spec": {"containers": [
                               {"name": "fake-container1", "image": "fake-image1"},
                               {"name": "fake-container2", "image": "fake-image2"}]}}},
            status={"replicas": 10, "updatedReplicas": 2, "availableReplicas": 1,
                    "unavailableReplicas": 4})
    d["metadata"]["creationTimestamp"] = (NOW + timedelta(seconds=1.9)).isoformat()
    assert cells("apps", "Deployment", d) == [
        "test1", "0/5", 2, 1, "0s", "fake-container1,fake-container2", "fake-image1,fake-image2",
        "foo=bar"]
    ds = obj("test1", spec={"selector": {"matchLabels": {"foo": "bar"}},
                            "template": d["spec"]["template"]},
             status={"currentNumberScheduled": 2, "desiredNumberScheduled": 3, "numberReady": 1,
                     "updatedNumberScheduled": 2, "numberAvailable": 0})
    ds["metadata"]["creationTimestamp"] = d["metadata"]["creationTimestamp"]
    assert cells("apps", "DaemonSet", ds) == [
        "test1", 3, 2, 1, 2, 0, "<none>", "0s", "fake-container1,fake-container2",
        "fake-image1,fake-image2", "foo=bar"]
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux", "disk": "ssd"}
    assert cells("apps", "DaemonSet", ds)[6] == "disk=ssd,kubernetes.io/os=linux"


def test_replicaset_and_statefulset() -> None:
    rs = obj("web-7d4b9c", spec={"replicas": 3, "template": TEMPLATE, "selector": {
        "matchLabels": {"app": "web", "pod-template-hash": "7d4b9c"}}},
        status={"replicas": 3, "readyReplicas": 2, "availableReplicas": 2})
    assert columns("apps", "ReplicaSet")[1:4] == [("Desired", "integer", 0),
                                                  ("Current", "integer", 0),
                                                  ("Ready", "integer", 0)]
    assert cells("apps", "ReplicaSet", rs) == ["web-7d4b9c", 3, 3, 2, "2d", "web,log",
                                               "nginx:1.27,busybox:1.36",
                                               "app=web,pod-template-hash=7d4b9c"]
    # A scaled-down ReplicaSet keeps replicas: 0 and shows it.
    rs["spec"]["replicas"] = 0
    assert cells("apps", "ReplicaSet", rs)[1] == 0
    sts = obj("db", spec={"replicas": 3, "serviceName": "db", "template": TEMPLATE},
              status={"replicas": 3, "readyReplicas": 2})
    assert cells("apps", "StatefulSet", sts) == ["db", "2/3", "2d", "web,log",
                                                 "nginx:1.27,busybox:1.36"]


@pytest.mark.parametrize(("spec", "status", "meta", "expected"), [
    ({"completions": 2}, {"succeeded": 1}, {}, ["Running", "1/2", ""]),
    ({}, {}, {}, ["Running", "0/1", ""]),
    ({"parallelism": 3}, {"succeeded": 1}, {}, ["Running", "1/1 of 3", ""]),
    ({}, {"startTime": ago(minutes=-1), "completionTime": ago(minutes=-31)}, {},
     ["Running", "0/1", "30m"]),
    ({}, {"startTime": ago(minutes=20)}, {}, ["Running", "0/1", "20m"]),
    ({}, {"conditions": [{"type": "Complete", "status": "True"}]}, {}, ["Complete", "0/1", ""]),
    ({}, {"conditions": [{"type": "Failed", "status": "True"}]}, {}, ["Failed", "0/1", ""]),
    ({}, {"conditions": [{"type": "Suspended", "status": "True"}]}, {},
     ["Suspended", "0/1", ""]),
    ({}, {"conditions": [{"type": "FailureTarget", "status": "True"}]}, {},
     ["FailureTarget", "0/1", ""]),
    ({}, {}, {"deletionTimestamp": ago(seconds=1)}, ["Terminating", "0/1", ""]),
])
def test_upstream_jobs(spec: dict[str, Any], status: dict[str, Any], meta: dict[str, Any],
                       expected: list[Any]) -> None:
    job = obj("job1", spec=spec, status=status)
    job["metadata"].update(meta)
    assert cells("batch", "Job", job)[1:4] == expected


def test_completed_job_row() -> None:
    job = obj("backup-28573", spec={"completions": 1, "template": {"spec": {"containers": [
        {"name": "dump", "image": "pg:16"}]}}, "selector": {"matchLabels": {
            "batch.kubernetes.io/controller-uid": "u1"}}},
        status={"succeeded": 1, "startTime": ago(minutes=3), "completionTime": ago(seconds=47),
                "conditions": [{"type": "Complete", "status": "True"}]})
    assert cells("batch", "Job", job) == [
        "backup-28573", "Complete", "1/1", "2m13s", "2d", "dump", "pg:16",
        "batch.kubernetes.io/controller-uid=u1"]


def test_cronjob() -> None:
    assert columns("batch", "CronJob")[:7] == [
        ("Name", "string", 0), ("Schedule", "string", 0), ("Timezone", "string", 0),
        ("Suspend", "boolean", 0), ("Active", "integer", 0), ("Last Schedule", "string", 0),
        ("Age", "string", 0)]
    cj = obj("backup", spec={"schedule": "*/5 * * * *", "jobTemplate": {"spec": {
        "template": {"spec": {"containers": [{"name": "dump", "image": "pg:16"}]}}}}},
        status={"active": [{"name": "backup-1"}], "lastScheduleTime": ago(minutes=3)})
    assert cells("batch", "CronJob", cj) == ["backup", "*/5 * * * *", "<none>", "False", 1, "3m",
                                             "2d", "dump", "pg:16", "<none>"]
    cj["spec"].update(suspend=True, timeZone="Europe/Madrid")
    del cj["status"]["lastScheduleTime"]
    assert cells("batch", "CronJob", cj)[2:6] == ["Europe/Madrid", "True", 1, "<none>"]


def test_controller_revision() -> None:
    cr = obj("fluentd-5b9", revision=3, data={}, )
    cr["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "fluentd", "uid": "u",
         "controller": True}]
    assert cells("apps", "ControllerRevision", cr) == ["fluentd-5b9", "daemonset.apps/fluentd", 3,
                                                       "2d"]
    del cr["metadata"]["ownerReferences"]
    assert cells("apps", "ControllerRevision", cr)[1] == "<none>"


def test_every_column_has_upstreams_description() -> None:
    # Descriptions are read from the OpenAPI definitions by name; a typo in a
    # reference would silently leave one empty.
    for r in RESOURCES:
        for c in to_table([], r)["columnDefinitions"]:
            assert c["description"], (r.kind, c["name"])
            assert c["type"] in ("string", "integer", "boolean", "date"), (r.kind, c["name"])


_KEYS = st.sampled_from([
    "metadata", "spec", "status", "name", "namespace", "labels", "creationTimestamp",
    "deletionTimestamp", "ownerReferences", "controller", "apiVersion", "kind", "containers",
    "initContainers", "containerStatuses", "initContainerStatuses", "state", "lastState", "waiting",
    "terminated", "running", "reason", "exitCode", "signal", "finishedAt", "ready", "started",
    "restartCount", "restartPolicy", "conditions", "type", "phase", "podIP", "podIPs", "ip",
    "readinessGates", "conditionType", "replicas", "readyReplicas", "selector", "matchLabels",
    "matchExpressions", "key", "operator", "values", "template", "jobTemplate", "nodeSelector",
    "ports", "port", "nodePort", "protocol", "subsets", "addresses", "endpoints", "loadBalancer",
    "ingress", "externalIPs", "clusterIPs", "involvedObject", "regarding", "series", "count",
    "lastObservedTime", "eventTime", "source", "hard", "used", "roleRef", "subjects", "data",
    "startTime", "completionTime", "completions", "parallelism", "succeeded", "active",
    "minAvailable", "capacity", "accessModes", "volumeName", "holderIdentity", "revision",
    "podSelector", "unschedulable", "nodeInfo", "suspend", "value", "globalDefault",
    "kubernetes.io/role", "node-role.kubernetes.io/worker", "binaryData", "secrets", "annotations",
])
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False),
                     st.sampled_from(["", "x", "Running", "True", "Always", "In",
                                      "2024-04-30T11:00:00Z", "not-a-time", "LoadBalancer"]))
_JSON = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=5)), max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(RESOURCES), st.dictionaries(_KEYS, _JSON, max_size=6))
def test_any_stored_shape_prints_without_crashing(r: ResourceType, o: dict[str, Any]) -> None:
    try:
        table = to_table([o], r, now=NOW)
    except ApiError:
        return
    json.dumps(table)
    assert len(table["rows"][0]["cells"]) == len(table["columnDefinitions"])
