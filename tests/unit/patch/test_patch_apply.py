"""Server-side apply and managedFields bookkeeping, following upstream's field management."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timonel.api.errors import ApiError
from timonel.api.patch import record_update, server_side_apply

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
CONFIGMAP = "io.k8s.api.core.v1.ConfigMap"
T0, T1, T2, T3, T4 = (f"2024-05-01T10:00:0{i}Z" for i in range(5))


def config(replicas: int | None = 2, image: str = "nginx:1.25",
           labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
                     "spec": {"containers": [{"name": "nginx", "image": image}]}},
        **extra,
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default",
                         "labels": labels if labels is not None else {"app": "web"}},
            "spec": spec}


def entries(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["manager"]: e for e in obj["metadata"].get("managedFields", [])}


def owns(obj: dict[str, Any], manager: str, *path: str) -> bool:
    node = entries(obj).get(manager, {}).get("fieldsV1", {})
    for pe in path:
        if pe not in node:
            return False
        node = node[pe]
    return True


def stored(obj: dict[str, Any]) -> dict[str, Any]:
    """What the server would store: system metadata the caller adds."""
    out = copy.deepcopy(obj)
    out["metadata"].update({"uid": "u-1", "resourceVersion": "7",
                            "creationTimestamp": "2024-05-01T09:00:00Z", "generation": 1})
    return out


def test_create_records_one_apply_entry() -> None:
    cfg = config()
    saved = copy.deepcopy(cfg)
    obj = server_side_apply(None, cfg, "kubectl", False, DEPLOYMENT, T0)
    assert cfg == saved
    assert obj["spec"]["replicas"] == 2
    [entry] = obj["metadata"]["managedFields"]
    assert {k: v for k, v in entry.items() if k != "fieldsV1"} == {
        "manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1", "time": T0,
        "fieldsType": "FieldsV1"}
    assert entry["fieldsV1"]["f:spec"]["f:replicas"] == {}
    assert "f:name" not in entry["fieldsV1"]["f:metadata"]


def test_create_update_conflict_force_lifecycle() -> None:
    # 1. create
    live = stored(server_side_apply(None, config(), "kubectl", False, DEPLOYMENT, T0))
    # 2. the same manager applies again without the label and with a new image
    live = stored(server_side_apply(live, config(labels={}, image="nginx:1.26"), "kubectl",
                                    False, DEPLOYMENT, T1))
    assert "labels" not in live["metadata"]
    assert live["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert live["metadata"]["uid"] == "u-1"
    assert not owns(live, "kubectl", "f:metadata", "f:labels")
    # 3. another manager (an ordinary update) scales the deployment
    scaled = copy.deepcopy(live)
    scaled["spec"]["replicas"] = 5
    live = stored(record_update(live, scaled, "hpa-controller", "apps/v1", T2))
    assert owns(live, "hpa-controller", "f:spec", "f:replicas")
    assert not owns(live, "kubectl", "f:spec", "f:replicas")
    # 4. applying another replica count conflicts
    with pytest.raises(ApiError) as e:
        server_side_apply(live, config(labels={}, image="nginx:1.26", replicas=3), "kubectl",
                          False, DEPLOYMENT, T3)
    assert e.value.code == 409 and e.value.reason == "Conflict"
    assert e.value.message == ('Apply failed with 1 conflict: conflict with "hpa-controller" '
                               "using apps/v1: .spec.replicas")
    assert e.value.causes == [{"type": "FieldManagerConflict",
                               "message": 'conflict with "hpa-controller" using apps/v1',
                               "field": ".spec.replicas"}]
    # 5. force takes the field over; the controller's entry, now empty, goes away
    forced = server_side_apply(live, config(labels={}, image="nginx:1.26", replicas=3), "kubectl",
                               True, DEPLOYMENT, T4)
    assert forced["spec"]["replicas"] == 3
    assert owns(forced, "kubectl", "f:spec", "f:replicas")
    assert set(entries(forced)) == {"kubectl"}
    assert entries(forced)["kubectl"]["time"] == T4


def test_applying_the_same_value_shares_ownership() -> None:
    live = stored(server_side_apply(None, config(), "alice", False, DEPLOYMENT, T0))
    live = stored(server_side_apply(live, {"apiVersion": "apps/v1", "kind": "Deployment",
                                           "metadata": {"name": "web"}, "spec": {"replicas": 2}},
                                    "bob", False, DEPLOYMENT, T1))
    assert owns(live, "alice", "f:spec", "f:replicas") and owns(live, "bob", "f:spec", "f:replicas")
    # Alice stops applying replicas: Bob still owns it, so it stays.
    live = stored(server_side_apply(live, config(replicas=None), "alice", False, DEPLOYMENT, T2))
    assert live["spec"]["replicas"] == 2
    # Bob changing the shared value now conflicts with nobody.
    out = server_side_apply(live, {"apiVersion": "apps/v1", "kind": "Deployment",
                                   "metadata": {"name": "web"}, "spec": {"replicas": 4}},
                            "bob", False, DEPLOYMENT, T3)
    assert out["spec"]["replicas"] == 4


def test_fields_taken_by_an_updater_are_not_pruned() -> None:
    live = stored(server_side_apply(None, config(), "kubectl", False, DEPLOYMENT, T0))
    edited = copy.deepcopy(live)
    edited["spec"]["replicas"] = 7
    live = stored(record_update(live, edited, "kubectl-edit", "apps/v1", T1))
    out = server_side_apply(live, config(replicas=None), "kubectl", False, DEPLOYMENT, T2)
    assert out["spec"]["replicas"] == 7
    # A field only the applier owned is removed when it stops applying it.
    out = server_side_apply(live, config(labels={}, replicas=None), "kubectl", False,
                            DEPLOYMENT, T2)
    assert "labels" not in out["metadata"] and out["spec"]["replicas"] == 7


def test_list_map_items_are_merged_per_owner() -> None:
    live = stored(server_side_apply(None, config(), "team-a", False, DEPLOYMENT, T0))
    sidecar: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "envoy", "image": "envoy:1"}]}}}}
    live = stored(server_side_apply(live, sidecar, "mesh", False, DEPLOYMENT, T1))
    assert [c["name"] for c in live["spec"]["template"]["spec"]["containers"]] == ["nginx", "envoy"]
    # The mesh stops applying its container: only that item goes.
    sidecar["spec"]["template"]["spec"]["containers"] = []
    out = server_side_apply(live, sidecar, "mesh", False, DEPLOYMENT, T2)
    assert [c["name"] for c in out["spec"]["template"]["spec"]["containers"]] == ["nginx"]
    assert "mesh" not in entries(out)


def test_atomic_values_are_replaced_and_conflict_as_a_whole() -> None:
    cfg = config()
    cfg["spec"]["template"]["spec"]["containers"][0]["args"] = ["a", "b"]
    live = stored(server_side_apply(None, cfg, "kubectl", False, DEPLOYMENT, T0))
    cfg["spec"]["template"]["spec"]["containers"][0]["args"] = ["c"]
    out = server_side_apply(live, cfg, "kubectl", False, DEPLOYMENT, T1)
    assert out["spec"]["template"]["spec"]["containers"][0]["args"] == ["c"]
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
             "spec": {"selector": {"matchLabels": {"app": "other"}}}}
    with pytest.raises(ApiError) as e:
        server_side_apply(live, other, "someone", False, DEPLOYMENT, T1)
    assert e.value.causes and e.value.causes[0]["field"] == ".spec.selector"


def test_several_conflicts_are_listed_per_manager() -> None:
    live = stored(server_side_apply(None, config(), "kubectl", False, DEPLOYMENT, T0))
    changed = config(replicas=9, image="other:1")
    with pytest.raises(ApiError) as e:
        server_side_apply(live, changed, "ci", False, DEPLOYMENT, T1)
    assert e.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl":\n'
        "- .spec.replicas\n"
        '- .spec.template.spec.containers[name="nginx"].image')
    assert [c["field"] for c in e.value.causes or []] == [
        ".spec.replicas", '.spec.template.spec.containers[name="nginx"].image']


def test_objects_without_managed_fields_belong_to_before_first_apply() -> None:
    live = stored(config())
    with pytest.raises(ApiError) as e:
        server_side_apply(live, config(replicas=4), "ci", False, DEPLOYMENT, T1)
    assert '"before-first-apply" using apps/v1' in e.value.message
    out = server_side_apply(live, config(), "ci", False, DEPLOYMENT, T1)
    assert set(entries(out)) == {"ci", "before-first-apply"}


def test_kubectl_takes_over_from_client_side_apply_without_conflict() -> None:
    last = config()
    created = stored(last)
    created["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(last)}
    live = stored(record_update(None, created, "kubectl-client-side-apply", "apps/v1", T0))
    out = server_side_apply(live, config(replicas=3), "kubectl", False, DEPLOYMENT, T1)
    assert out["spec"]["replicas"] == 3
    synced = json.loads(out["metadata"]["annotations"][
        "kubectl.kubernetes.io/last-applied-configuration"])
    assert synced["spec"]["replicas"] == 3
    # Any other manager name gets the conflict.
    with pytest.raises(ApiError):
        server_side_apply(live, config(replicas=3), "argocd", False, DEPLOYMENT, T1)


def test_sets_are_unions_with_value_ownership() -> None:
    live = stored(server_side_apply(None, {"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": {"name": "c", "finalizers": ["a"]}},
                                    "one", False, CONFIGMAP, T0))
    out = server_side_apply(live, {"apiVersion": "v1", "kind": "ConfigMap",
                                   "metadata": {"name": "c", "finalizers": ["b"]}},
                            "two", False, CONFIGMAP, T1)
    assert out["metadata"]["finalizers"] == ["a", "b"]
    assert owns(out, "two", "f:metadata", "f:finalizers", 'v:"b"')


def test_custom_resources_use_granular_maps_and_atomic_lists() -> None:
    cr = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
          "spec": {"size": 1, "ports": [1, 2]}}
    live = stored(server_side_apply(None, cr, "op", False, None, T0))
    assert entries(live)["op"]["fieldsV1"] == {
        "f:spec": {".": {}, "f:ports": {}, "f:size": {}}}
    out = server_side_apply(live, {**cr, "spec": {"ports": [3]}}, "op", False, None, T1)
    assert out["spec"] == {"ports": [3]}


def test_null_system_metadata_in_the_configuration_is_ignored() -> None:
    live = stored(server_side_apply(None, config(), "kubectl", False, DEPLOYMENT, T0))
    cfg = config()
    cfg["metadata"]["creationTimestamp"] = None
    out = server_side_apply(live, cfg, "kubectl", False, DEPLOYMENT, T1)
    assert out["metadata"]["creationTimestamp"] == "2024-05-01T09:00:00Z"


def test_result_shares_nothing_with_the_live_object() -> None:
    live = stored(server_side_apply(None, config(), "kubectl", False, DEPLOYMENT, T0))
    saved = copy.deepcopy(live)
    out = server_side_apply(live, config(), "kubectl", False, DEPLOYMENT, T1)
    out["spec"]["template"]["spec"]["containers"][0]["image"] = "mutated"
    out["metadata"]["managedFields"][0]["fieldsV1"].clear()
    assert live == saved


@pytest.mark.parametrize(("applied", "code", "words"), [
    ({**config(), "metadata": {"name": "web", "managedFields": [{}]}}, 400, ["managedFields"]),
    ({**config(), "apiVersion": "apps/v1beta1"}, 400, ["Incorrect version", "apps/v1beta1"]),
    ({**config(), "kind": "StatefulSet"}, 400, ["Incorrect kind"]),
    ({k: v for k, v in config().items() if k != "kind"}, 400, ["kind must be set"]),
    ({**config(), "spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}, 422,
     ["omits key field 'name'"]),
    ({**config(), "spec": {"template": {"spec": {"containers": [{"name": "a"}, {"name": "a"}]}}}},
     422, ["duplicate entries for key [name=\"a\"]"]),
    ({**config(), "metadata": {"name": "web", "finalizers": ["x", None]}}, 422,
     ["associative list without keys"]),
])
def test_bad_configurations(applied: dict[str, Any], code: int, words: list[str]) -> None:
    live = stored(server_side_apply(None, config(), "kubectl", False, DEPLOYMENT, T0))
    with pytest.raises(ApiError) as e:
        server_side_apply(live, applied, "kubectl", False, DEPLOYMENT, T1)
    assert e.value.code == code
    for word in words:
        assert word in e.value.message


def test_apply_needs_a_field_manager() -> None:
    with pytest.raises(ApiError) as e:
        server_side_apply(None, config(), "", False, DEPLOYMENT, T0)
    assert e.value.code == 422 and "fieldManager" in e.value.message


# record_update ----------------------------------------------------------------

def test_create_records_update_entry_like_kubectl_create() -> None:
    obj = record_update(None, stored(config()), "kubectl-create", "apps/v1", T0)
    [entry] = obj["metadata"]["managedFields"]
    assert entry["operation"] == "Update" and entry["manager"] == "kubectl-create"
    fields = entry["fieldsV1"]
    assert fields["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
    assert fields["f:spec"]["f:template"]["f:spec"]["f:containers"] == {
        'k:{"name":"nginx"}': {".": {}, "f:image": {}, "f:name": {}}}


def test_update_moves_changed_fields_and_keeps_inputs() -> None:
    old = record_update(None, stored(config()), "kubectl-create", "apps/v1", T0)
    new = copy.deepcopy(old)
    new["spec"]["replicas"] = 4
    saved_old, saved_new = copy.deepcopy(old), copy.deepcopy(new)
    out = record_update(old, new, "scaler", "apps/v1", T1)
    assert old == saved_old and new == saved_new
    assert owns(out, "scaler", "f:spec", "f:replicas")
    assert not owns(out, "kubectl-create", "f:spec", "f:replicas")
    assert entries(out)["kubectl-create"]["time"] == T0
    assert [e["manager"] for e in out["metadata"]["managedFields"]] == ["kubectl-create", "scaler"]


def test_update_without_changes_leaves_managed_fields_alone() -> None:
    old = record_update(None, stored(config()), "kubectl-create", "apps/v1", T0)
    out = record_update(old, copy.deepcopy(old), "someone", "apps/v1", T1)
    assert out["metadata"]["managedFields"] == old["metadata"]["managedFields"]


def test_update_records_the_subresource() -> None:
    old = record_update(None, stored(config()), "kubectl-create", "apps/v1", T0)
    new = copy.deepcopy(old)
    new["status"] = {"replicas": 2}
    out = record_update(old, new, "controller", "apps/v1", T1, subresource="status")
    assert entries(out)["controller"]["subresource"] == "status"


def test_sending_an_empty_entry_clears_managed_fields() -> None:
    old = record_update(None, stored(config()), "kubectl-create", "apps/v1", T0)
    new = copy.deepcopy(old)
    new["metadata"]["managedFields"] = [{}]
    assert "managedFields" not in record_update(old, new, "x", "apps/v1", T1)["metadata"]


def test_sent_managed_fields_replace_the_stored_ones() -> None:
    old = record_update(None, stored(config()), "kubectl-create", "apps/v1", T0)
    new = copy.deepcopy(old)
    new["metadata"]["managedFields"] = [{
        "manager": "restored", "operation": "Update", "apiVersion": "apps/v1", "time": T0,
        "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]
    out = record_update(old, new, "x", "apps/v1", T1)
    assert set(entries(out)) == {"restored"}


def test_at_most_ten_update_managers() -> None:
    obj = record_update(None, {"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": "c"}, "data": {}}, "create", "v1", "t00")
    for i in range(12):
        new = copy.deepcopy(obj)
        new["data"][f"k{i}"] = "v"
        obj = record_update(obj, new, f"writer-{i:02d}", "v1", f"t{i + 1:02d}")
    managers = [e["manager"] for e in obj["metadata"]["managedFields"]]
    assert len(managers) == 10
    assert "ancient-changes" in managers and "writer-11" in managers
    assert "create" not in managers and "writer-00" not in managers
    ancient = entries(obj)["ancient-changes"]["fieldsV1"]["f:data"]
    assert "f:k0" in ancient and "f:k1" in ancient


json_leaves = st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(["a", "b", ""])


def _port_key(port: Any) -> Any:
    return (port["containerPort"], port.get("protocol", "TCP"))


def _name(container: Any) -> Any:
    return container["name"]


_port: dict[str, st.SearchStrategy[Any]] = {"containerPort": st.integers(1, 3)}
_container_optional: dict[str, st.SearchStrategy[Any]] = {
    "image": st.sampled_from(["x:1", "x:2"]),
    "args": st.lists(json_leaves, max_size=2),
    "ports": st.lists(st.fixed_dictionaries(
        _port, optional={"protocol": st.sampled_from(["TCP", "UDP"])}),
        max_size=2, unique_by=_port_key),
}
_container: dict[str, st.SearchStrategy[Any]] = {"name": st.sampled_from(["a", "b", "c"])}
random_containers = st.lists(
    st.fixed_dictionaries(_container, optional=_container_optional),
    max_size=3, unique_by=_name,
)
random_configs = st.fixed_dictionaries({
    "labels": st.dictionaries(st.sampled_from(["x", "y", "z"]), st.sampled_from(["1", "2"]),
                              max_size=3),
    "replicas": st.none() | st.integers(0, 3),
    "containers": random_containers,
    "finalizers": st.lists(st.sampled_from(["f1", "f2", "f3"]), max_size=3, unique=True),
})


def random_config(c: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"template": {"spec": {"containers": c["containers"]}}}
    if c["replicas"] is not None:
        spec["replicas"] = c["replicas"]
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": c["labels"], "finalizers": c["finalizers"]},
            "spec": spec}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_configs, random_configs)
def test_random_applies_are_idempotent_or_api_errors(first: dict[str, Any],
                                                     second: dict[str, Any]) -> None:
    try:
        live = stored(server_side_apply(None, random_config(first), "one", False, DEPLOYMENT, T0))
        cfg = random_config(second)
        saved = copy.deepcopy(cfg)
        once = stored(server_side_apply(live, cfg, "two", True, DEPLOYMENT, T1))
        twice = server_side_apply(once, cfg, "two", False, DEPLOYMENT, T2)
    except ApiError as e:
        assert e.code in (400, 409, 422)
        return
    assert cfg == saved
    for obj in (once, twice):
        obj["metadata"].pop("managedFields", None)
    assert twice == once
