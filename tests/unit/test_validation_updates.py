"""Immutable fields on update: refused with upstream's words, allowed changes accepted."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from timonel.api.defaults import apply_defaults
from timonel.api.errors import ApiError
from timonel.api.resources import by_api_version_kind
from timonel.api.validation import validate, validate_update


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    """An object as the server would have stored it: defaulted, with system metadata."""
    obj = copy.deepcopy(obj)
    rt = by_api_version_kind(obj["apiVersion"], obj["kind"])
    assert rt is not None
    apply_defaults(obj, rt.group, rt.kind)
    obj["metadata"].update(uid="6f1c3e52-0000-4000-8000-000000000001", resourceVersion="12",
                           creationTimestamp="2025-01-01T00:00:00Z", generation=1)
    assert validate(obj, rt) == []
    return obj


def update(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    """The update's causes, as `field: message` (empty when allowed)."""
    rt = by_api_version_kind(new["apiVersion"], new["kind"])
    assert rt is not None
    try:
        validate(new, rt, old=old)
    except ApiError as e:
        assert e.code == 422 and e.reason == "Invalid", e.message
        return [f"{c['field']}: {c['message']}" for c in e.causes or []]
    return []


POD: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
       "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                                "ports": [{"containerPort": 80}]}],
                "initContainers": [{"name": "init", "image": "busybox:1.36"}],
                "activeDeadlineSeconds": 600, "schedulingGates": [{"name": "example.com/gate"}]}}


def test_pod_image_updates_are_allowed() -> None:
    old = stored(POD)
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:1.27"
    new["spec"]["initContainers"][0]["image"] = "busybox:1.37"
    new["metadata"]["labels"] = {"app": "web"}
    assert update(new, old) == []


def test_pod_allowed_spec_changes() -> None:
    old = stored(POD)
    new = copy.deepcopy(old)
    new["spec"]["activeDeadlineSeconds"] = 300  # may only decrease
    new["spec"]["tolerations"].append({"key": "dedicated", "operator": "Exists"})  # additions
    new["spec"]["schedulingGates"] = []  # removal
    assert update(new, old) == []


def test_pod_spec_other_changes_are_forbidden() -> None:
    old = stored(POD)
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["ports"][0]["containerPort"] = 8080
    got = update(new, old)
    assert len(got) == 1
    assert got[0].startswith(
        "spec: Forbidden: pod updates may not change fields other than "
        "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
        "`spec.tolerations` (only additions to existing tolerations),"
        "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
        "negative)\n")
    assert "spec.containers[0].ports[0].containerPort: 80 -> 8080" in got[0]


def test_pod_containers_cannot_be_added_or_removed() -> None:
    old = stored(POD)
    new = copy.deepcopy(old)
    new["spec"]["containers"].append({"name": "side", "image": "busybox"})
    assert update(new, old) == ["spec.containers: Forbidden: pod updates may not add or remove "
                                "containers"]


def test_pod_restricted_updates_of_updatable_fields() -> None:
    old = stored(POD)
    longer = copy.deepcopy(old)
    longer["spec"]["activeDeadlineSeconds"] = 900
    assert update(longer, old) == ["spec.activeDeadlineSeconds: Invalid value: 900: must be less "
                                   "than or equal to previous value"]
    unset = copy.deepcopy(old)
    del unset["spec"]["activeDeadlineSeconds"]
    assert update(unset, old) == ["spec.activeDeadlineSeconds: Invalid value: null: must not "
                                  "update from a positive integer to nil value"]
    fewer = copy.deepcopy(old)
    fewer["spec"]["tolerations"] = fewer["spec"]["tolerations"][:1]
    assert update(fewer, old) == ["spec.tolerations: Forbidden: existing toleration can not be "
                                  "modified except its tolerationSeconds"]
    seconds = copy.deepcopy(old)
    seconds["spec"]["tolerations"][0]["tolerationSeconds"] = 60
    assert update(seconds, old) == []
    gated = copy.deepcopy(old)
    gated["spec"]["schedulingGates"].append({"name": "example.com/other"})
    assert update(gated, old) == ["spec.schedulingGates[1].name: Forbidden: only deletion is "
                                  "allowed, but found new scheduling gate 'example.com/other'"]


def test_pod_negative_grace_period_may_become_one() -> None:
    old = stored(POD)
    old["spec"]["terminationGracePeriodSeconds"] = -1
    new = copy.deepcopy(old)
    new["spec"]["terminationGracePeriodSeconds"] = 1
    assert update(new, old) == []
    new["spec"]["terminationGracePeriodSeconds"] = 5
    assert update(new, old)[0].startswith("spec: Forbidden: pod updates may not change fields")


@pytest.mark.parametrize("fld", ["name", "namespace", "uid", "creationTimestamp"])
def test_identity_metadata_is_immutable(fld: str) -> None:
    old = stored(POD)
    new = copy.deepcopy(old)
    new["metadata"][fld] = {"name": "web2", "namespace": "other", "uid": "another",
                            "creationTimestamp": "2030-01-01T00:00:00Z"}[fld]
    assert update(new, old) == [f"metadata.{fld}: Invalid value: {new['metadata'][fld]!r}: "
                                "field is immutable".replace("'", '"')]


def test_left_out_uid_and_creation_timestamp_are_not_changes() -> None:
    old = stored(POD)
    new = copy.deepcopy(old)
    del new["metadata"]["uid"], new["metadata"]["creationTimestamp"]
    assert update(new, old) == []


DEPLOYMENT: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "web", "namespace": "default"},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "w", "image": "nginx"}]}}}}


@pytest.mark.parametrize("kind", ["Deployment", "ReplicaSet", "DaemonSet"])
def test_apps_selector_is_immutable(kind: str) -> None:
    obj = copy.deepcopy(DEPLOYMENT)
    obj["kind"] = kind
    if kind == "DaemonSet":
        del obj["spec"]["replicas"]
    old = stored(obj)
    scaled = copy.deepcopy(old)
    scaled["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27"
    scaled["spec"]["template"]["metadata"]["labels"]["version"] = "2"
    assert update(scaled, old) == []
    moved = copy.deepcopy(old)
    moved["spec"]["selector"] = {"matchLabels": {"app": "web", "v": "2"}}
    moved["spec"]["template"]["metadata"]["labels"]["v"] = "2"
    assert update(moved, old) == ['spec.selector: Invalid value: {"matchLabels":{"app":"web",'
                                  '"v":"2"}}: field is immutable']


def test_statefulset_spec_is_immutable_except_listed_fields() -> None:
    obj = copy.deepcopy(DEPLOYMENT)
    obj["kind"] = "StatefulSet"
    obj["spec"]["serviceName"] = "web"
    old = stored(obj)
    ok = copy.deepcopy(old)
    ok["spec"]["replicas"] = 5
    ok["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    assert update(ok, old) == []
    bad = copy.deepcopy(old)
    bad["spec"]["serviceName"] = "other"
    assert update(bad, old) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', "
        "'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', "
        "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"]


def test_job_selector_and_template_are_immutable() -> None:
    job: dict[str, Any] = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "d"},
           "spec": {"selector": {"matchLabels": {"job": "j"}}, "manualSelector": True,
                    "template": {"metadata": {"labels": {"job": "j"}},
                                 "spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "busybox"}]}}}}
    old = stored(job)
    parallel = copy.deepcopy(old)
    parallel["spec"]["parallelism"] = 3
    assert update(parallel, old) == []
    image = copy.deepcopy(old)
    image["spec"]["template"]["spec"]["containers"][0]["image"] = "alpine"
    got = update(image, old)
    assert len(got) == 1 and got[0].startswith("spec.template: Invalid value: {")
    assert got[0].endswith(": field is immutable")
    # Suspended jobs may be re-pointed at other nodes before they start.
    old["spec"]["suspend"] = True
    moved = copy.deepcopy(old)
    moved["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    assert update(moved, old) == []


def test_service_cluster_ip_may_not_change_once_set() -> None:
    svc: dict[str, Any] = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "d"},
           "spec": {"ports": [{"port": 80}], "clusterIP": "10.96.0.10",
                    "clusterIPs": ["10.96.0.10"]}}
    old = stored(svc)
    kept = copy.deepcopy(old)
    del kept["spec"]["clusterIP"], kept["spec"]["clusterIPs"]  # kubectl apply leaves them out
    kept["spec"]["ports"][0]["port"] = 8080
    assert update(kept, old) == []
    changed = copy.deepcopy(old)
    changed["spec"]["clusterIP"] = "None"
    changed["spec"]["clusterIPs"] = ["None"]
    assert update(changed, old) == ['spec.clusterIPs[0]: Invalid value: ["None"]: may not change '
                                    "once set"]


@pytest.mark.parametrize(("kind", "payload"), [("ConfigMap", "data"), ("Secret", "data")])
def test_immutable_configmaps_and_secrets(kind: str, payload: str) -> None:
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "c", "namespace": "d"},
           payload: {"k": "djE="}}
    old = stored(obj)
    mutable = copy.deepcopy(old)
    mutable[payload] = {"k": "djI="}
    assert update(mutable, old) == []
    old["immutable"] = True
    frozen = copy.deepcopy(old)
    frozen[payload] = {"k": "djI="}
    assert update(frozen, old) == [
        f"{payload}: Forbidden: field is immutable when `immutable` is set"]
    thawed = copy.deepcopy(old)
    thawed["immutable"] = False
    assert update(thawed, old) == ["immutable: Forbidden: field is immutable when `immutable` is set"]
    relabeled = copy.deepcopy(old)
    relabeled["metadata"]["labels"] = {"a": "b"}
    assert update(relabeled, old) == []


def test_secret_string_data_counts_as_data_when_immutable() -> None:
    secret: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"},
              "immutable": True, "data": {"k": "djE="}}
    old = stored(secret)
    same = copy.deepcopy(old)
    del same["data"]
    same["stringData"] = {"k": "v1"}
    assert validate_update(same, old, _rt(same)) == []


def test_secret_type_is_immutable() -> None:
    secret: dict[str, Any] = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"},
              "data": {"username": "dQ=="}}
    old = stored(secret)
    new = copy.deepcopy(old)
    new["type"] = "kubernetes.io/basic-auth"
    assert update(new, old) == ['type: Invalid value: "kubernetes.io/basic-auth": field is '
                                "immutable"]


def test_node_pod_cidr_is_set_once() -> None:
    node: dict[str, Any] = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}}
    old = stored(node)
    assigned = copy.deepcopy(old)
    assigned["spec"] = {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}
    assert update(assigned, old) == []
    moved = copy.deepcopy(assigned)
    moved["spec"] = {"podCIDR": "10.244.2.0/24", "podCIDRs": ["10.244.2.0/24"],
                     "unschedulable": True}
    assert update(moved, assigned) == [
        'spec.podCIDRs: Forbidden: node updates may not change podCIDR except from "" to valid']
    cordoned = copy.deepcopy(assigned)
    cordoned["spec"]["unschedulable"] = True
    assert update(cordoned, assigned) == []


def test_role_binding_role_ref_cannot_change() -> None:
    rb: dict[str, Any] = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
          "metadata": {"name": "rb", "namespace": "d"},
          "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "a"},
          "subjects": [{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"}]}
    old = stored(rb)
    new = copy.deepcopy(old)
    new["roleRef"]["name"] = "b"
    got = update(new, old)
    assert len(got) == 1 and got[0].startswith("roleRef: Invalid value: {")
    assert got[0].endswith("cannot change roleRef")


def test_update_also_runs_create_rules() -> None:
    old = stored(POD)
    new = copy.deepcopy(old)
    new["metadata"]["labels"] = {"bad key": "x"}
    assert update(new, old)[0].startswith('metadata.labels: Invalid value: "bad key"')


def test_ephemeral_containers_are_allowed_on_update_only() -> None:
    old = stored(POD)
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [{"name": "debug", "image": "busybox"}]
    assert update(new, old)[0].startswith("spec: Forbidden: pod updates may not change")
    old2 = copy.deepcopy(new)
    assert update(copy.deepcopy(old2), old2) == []
    rt = _rt(new)
    with pytest.raises(ApiError) as e:
        validate(copy.deepcopy(new), rt)
    assert any(c["message"] == "Forbidden: cannot be set on create" for c in e.value.causes or [])


def _rt(obj: dict[str, Any]) -> Any:
    return by_api_version_kind(obj["apiVersion"], obj["kind"])
