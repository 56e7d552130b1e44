"""Strategic merge patch against the real upstream definitions (Pod, Deployment, ...).

Cases follow the upstream semantics (apimachinery strategicpatch): merge by
key, unions of scalars, directives, ordering, and the exact patches kubectl
sends on client-side apply.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timonel.api.errors import ApiError
from timonel.api.patch import strategic_merge_patch

POD = "io.k8s.api.core.v1.Pod"
DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
SERVICE = "io.k8s.api.core.v1.Service"
PDB = "io.k8s.api.policy.v1.PodDisruptionBudget"


def containers(*specs: str) -> list[dict[str, Any]]:
    """`containers("a=a:1", "b")` -> [{"name": "a", "image": "a:1"}, {"name": "b"}]."""
    out = []
    for s in specs:
        name, _, image = s.partition("=")
        out.append({"name": name, "image": image} if image else {"name": name})
    return out


def pod_with(*specs: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": containers(*specs), **spec}}


def names(obj: dict[str, Any]) -> list[str]:
    return [c["name"] for c in obj["spec"]["containers"]]


# (description, definition, original, patch, expected result)
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("scalar fields are replaced and new ones added", POD,
     {"spec": {"restartPolicy": "Always"}},
     {"spec": {"restartPolicy": "Never", "hostname": "h"}},
     {"spec": {"restartPolicy": "Never", "hostname": "h"}}),
    ("null deletes a key, also a missing one", POD,
     {"metadata": {"labels": {"a": "1", "b": "2"}}},
     {"metadata": {"labels": {"b": None, "c": None}}},
     {"metadata": {"labels": {"a": "1"}}}),
    ("nulls inside a new subtree are dropped", POD,
     {"spec": {}},
     {"spec": {"securityContext": {"runAsUser": 1, "runAsGroup": None}}},
     {"spec": {"securityContext": {"runAsUser": 1}}}),
    ("containers merge by name, the patch order first", POD,
     {"spec": {"containers": containers("1", "2=b", "3")}},
     {"spec": {"containers": [{"name": "3", "image": "c"}, {"name": "1", "image": "a"}]}},
     {"spec": {"containers": [{"name": "2", "image": "b"}, {"name": "3", "image": "c"},
                              {"name": "1", "image": "a"}]}}),
    # Upstream quirk: without $setElementOrder a new item goes before the
    # server's items that the patch does not name (kubectl patch does this).
    ("a new container goes first without an order list", POD,
     {"spec": {"containers": containers("a=a:1")}},
     {"spec": {"containers": [{"name": "b", "image": "b:1"}]}},
     {"spec": {"containers": containers("b=b:1", "a=a:1")}}),
    ("a new container goes where $setElementOrder says", POD,
     {"spec": {"containers": containers("a=a:1")}},
     {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
               "containers": [{"name": "b", "image": "b:1"}]}},
     {"spec": {"containers": containers("a=a:1", "b=b:1")}}),
    ("$patch: delete removes the item with that key (all duplicates)", POD,
     {"spec": {"containers": containers("a", "b", "b", "c")}},
     {"spec": {"containers": [{"name": "b", "$patch": "delete"}]}},
     {"spec": {"containers": containers("a", "c")}}),
    ("$patch: replace in a list replaces the whole list", POD,
     {"spec": {"containers": containers("a", "b")}},
     {"spec": {"containers": [{"$patch": "replace"}, {"name": "z", "image": "z"}]}},
     {"spec": {"containers": containers("z=z")}}),
    ("$patch: replace alone empties a merging list", POD,
     {"spec": {"containers": containers("a", "b")}},
     {"spec": {"containers": [{"$patch": "replace"}]}},
     {"spec": {"containers": []}}),
    ("$patch: replace on a map replaces it", POD,
     {"spec": {"nodeSelector": {"a": "1", "b": "2"}}},
     {"spec": {"nodeSelector": {"c": "3", "$patch": "replace"}}},
     {"spec": {"nodeSelector": {"c": "3"}}}),
    ("$patch: delete on a map empties it", POD,
     {"spec": {"nodeSelector": {"a": "1"}}},
     {"spec": {"nodeSelector": {"$patch": "delete"}}},
     {"spec": {"nodeSelector": {}}}),
    ("lists without a strategy are replaced (args)", POD,
     {"spec": {"containers": [{"name": "a", "args": ["1", "2"]}]}},
     {"spec": {"containers": [{"name": "a", "args": ["3"]}]}},
     {"spec": {"containers": [{"name": "a", "args": ["3"]}]}}),
    ("lists of scalars with strategy merge are unions in patch order", POD,
     {"metadata": {"finalizers": ["1", "2", "3"]}},
     {"metadata": {"finalizers": ["3", "1", "4"]}},
     {"metadata": {"finalizers": ["2", "3", "1", "4"]}}),
    ("$deleteFromPrimitiveList removes scalars", POD,
     {"metadata": {"finalizers": ["a", "b", "b", "c"]}},
     {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}},
     {"metadata": {"finalizers": ["a", "c"]}}),
    ("$setElementOrder orders a scalar list; the server's extra items stay", POD,
     {"metadata": {"finalizers": ["1", "2", "3", "4"]}},
     {"metadata": {"$setElementOrder/finalizers": ["1", "2"],
                   "$deleteFromPrimitiveList/finalizers": ["3"]}},
     {"metadata": {"finalizers": ["1", "2", "4"]}}),
    ("$setElementOrder puts new items where the order list says", POD,
     {"spec": {"containers": [{"name": "1", "tty": True}, {"name": "2", "image": "2"}]}},
     {"spec": {"$setElementOrder/containers": [{"name": "4"}, {"name": "1"}, {"name": "2"},
                                                {"name": "3"}],
               "containers": [{"name": "4", "image": "4"}, {"name": "3", "image": "3"}]}},
     {"spec": {"containers": [{"name": "4", "image": "4"}, {"name": "1", "tty": True},
                              {"name": "2", "image": "2"}, {"name": "3", "image": "3"}]}}),
    ("$setElementOrder without a patch list reorders the live list", POD,
     {"spec": {"containers": containers("1", "3")}},
     {"spec": {"$setElementOrder/containers": [{"name": "3"}, {"name": "2"}, {"name": "1"}]}},
     {"spec": {"containers": containers("3", "1")}}),
    ("$retainKeys drops the unlisted keys (Deployment strategy)", DEPLOYMENT,
     {"spec": {"strategy": {"type": "RollingUpdate",
                            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}}},
     {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": None, "type": "Recreate"}}},
     {"spec": {"strategy": {"type": "Recreate"}}}),
    ("$retainKeys in a list item swaps a volume source", POD,
     {"spec": {"containers": [], "volumes": [{"name": "data", "emptyDir": {}},
                                             {"name": "other", "emptyDir": {}}]}},
     {"spec": {"volumes": [{"$retainKeys": ["configMap", "name"], "name": "data",
                            "configMap": {"name": "cm"}}]}},
     {"spec": {"containers": [], "volumes": [{"name": "data", "configMap": {"name": "cm"}},
                                             {"name": "other", "emptyDir": {}}]}}),
    ("a retainKeys-strategy map without the directive merges", DEPLOYMENT,
     {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}},
     {"spec": {"strategy": {"rollingUpdate": {"maxUnavailable": 2}}}},
     {"spec": {"strategy": {"type": "RollingUpdate",
                            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 2}}}}),
    ("strategy replace replaces an object (PDB selector)", PDB,
     {"spec": {"selector": {"matchLabels": {"a": "1"}}}},
     {"spec": {"selector": {"matchExpressions": [{"key": "b", "operator": "Exists"}]}}},
     {"spec": {"selector": {"matchExpressions": [{"key": "b", "operator": "Exists"}]}}}),
    ("service ports merge by port", SERVICE,
     {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}},
     {"spec": {"ports": [{"port": 80, "targetPort": 9090}]}},
     {"spec": {"ports": [{"port": 80, "targetPort": 9090}, {"port": 443}]}}),
    ("env merges by name inside a merged container", POD,
     {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"},
                                                    {"name": "Y", "value": "2"}]}]}},
     {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "3"}]}]}},
     {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"},
                                                    {"name": "Y", "value": "3"}]}]}}),
    ("a type change replaces the value", POD,
     {"metadata": {"annotations": {"a": "b"}}},
     {"metadata": {"annotations": "oops"}},
     {"metadata": {"annotations": "oops"}}),
    ("unknown fields merge like plain objects", POD,
     {"spec": {"futureField": {"a": 1, "b": [1, 2]}}},
     {"spec": {"futureField": {"a": 2, "b": [3]}}},
     {"spec": {"futureField": {"a": 2, "b": [3]}}}),
]


@pytest.mark.parametrize(("definition", "original", "patch", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_strategic_merge_patch(definition: str, original: dict[str, Any], patch: dict[str, Any],
                               expected: dict[str, Any]) -> None:
    before_original, before_patch = copy.deepcopy(original), copy.deepcopy(patch)
    assert strategic_merge_patch(original, patch, definition) == expected
    assert original == before_original and patch == before_patch


def deployment(*specs: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default",
                     "labels": labels if labels is not None else {"app": "web", "tier": "front"},
                     "annotations": {}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "strategy": {"type": "RollingUpdate",
                              "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": containers(*specs)}}},
    }


def test_kubectl_client_side_apply_image_change_and_label_removal() -> None:
    """The patch `kubectl apply` sends after editing an image and deleting a label."""
    live = deployment("web=nginx:1.25", "sidecar=envoy:1")
    live["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
    new_config = deployment("web=nginx:1.26", "sidecar=envoy:1", labels={"app": "web"})
    last_applied = json.dumps(new_config, separators=(",", ":")) + "\n"
    patch = {
        "metadata": {
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied},
            "labels": {"tier": None},
        },
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "web"}, {"name": "sidecar"}],
            "containers": [{"image": "nginx:1.26", "name": "web"}],
        }}},
    }
    out = strategic_merge_patch(live, patch, DEPLOYMENT)
    assert out["metadata"]["labels"] == {"app": "web"}
    assert out["metadata"]["annotations"] == {
        "kubectl.kubernetes.io/last-applied-configuration": last_applied}
    assert out["spec"]["template"]["spec"]["containers"] == [
        {"name": "web", "image": "nginx:1.26", "ports": [{"containerPort": 80}]},
        {"name": "sidecar", "image": "envoy:1"},
    ]
    assert out["spec"]["strategy"] == live["spec"]["strategy"]


def test_kubectl_client_side_apply_removing_a_container() -> None:
    live = deployment("web=nginx", "sidecar=envoy", "debug=busybox")
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "web"}, {"name": "debug"}],
        "containers": [{"$patch": "delete", "name": "sidecar"}],
    }}}}
    out = strategic_merge_patch(live, patch, DEPLOYMENT)
    assert names(out["spec"]["template"]) == ["web", "debug"]


def test_image_change_of_one_container_keeps_the_others() -> None:
    live = deployment("a=a:1", "b=b:1", "c=c:1")
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}}}
    out = strategic_merge_patch(live, patch, DEPLOYMENT)
    assert out["spec"]["template"]["spec"]["containers"] == containers("a=a:1", "b=b:2", "c=c:1")
    assert live["spec"]["template"]["spec"]["containers"][1]["image"] == "b:1"


def test_kubectl_rollout_restart_patch() -> None:
    live = deployment("a=a:1")
    patch = {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"}}}}}
    out = strategic_merge_patch(live, patch, DEPLOYMENT)
    assert out["spec"]["template"]["metadata"] == {
        "labels": {"app": "web"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"}}


def test_strategy_switch_to_recreate_with_retain_keys() -> None:
    live = deployment("a=a:1")
    patch = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    out = strategic_merge_patch(live, patch, DEPLOYMENT)
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_result_shares_nothing_with_inputs() -> None:
    live = deployment("a=a:1", "b=b:1")
    patch = {"spec": {"template": {"spec": {"containers": [
        {"name": "c", "image": "c:1", "env": [{"name": "X", "value": "1"}]}]}}}}
    saved_live, saved_patch = copy.deepcopy(live), copy.deepcopy(patch)
    out = strategic_merge_patch(live, patch, DEPLOYMENT)
    out["metadata"]["labels"]["app"] = "changed"
    for c in out["spec"]["template"]["spec"]["containers"]:
        c["image"] = "changed"
        for e in c.get("env", []):
            e["value"] = "changed"
    assert live == saved_live and patch == saved_patch


def test_without_a_definition_lists_are_replaced_and_maps_merged() -> None:
    live = {"spec": {"items": [{"name": "a"}, {"name": "b"}], "map": {"x": 1, "y": 2}}}
    patch = {"spec": {"items": [{"name": "c"}], "map": {"y": None, "z": 3}}}
    assert strategic_merge_patch(live, patch, None) == {
        "spec": {"items": [{"name": "c"}], "map": {"x": 1, "z": 3}}}


# (description, patch on a Pod, status code, words in the message)
ERRORS = [
    ("unknown $patch value in a map",
     {"spec": {"nodeSelector": {"$patch": "frob"}}}, 400, ["unknown patch type", "spec.nodeSelector"]),
    ("unknown $patch value in a list item",
     {"spec": {"containers": [{"name": "a", "$patch": "frob"}]}}, 400, ["unknown patch type"]),
    ("unknown directive",
     {"spec": {"$frobnicate": 1}}, 400, ["unknown strategic merge patch directive", "$frobnicate"]),
    ("$retainKeys not a list",
     {"spec": {"$retainKeys": "x"}}, 400, ["invalid patch format of retainKeys"]),
    ("patch key outside $retainKeys",
     {"spec": {"$retainKeys": ["hostname"], "subdomain": "x"}}, 422,
     ["patch content doesn't match retainKeys list", "subdomain"]),
    ("order list out of step with the patch list",
     {"spec": {"$setElementOrder/containers": [{"name": "1"}, {"name": "2"}, {"name": "3"}],
               "containers": [{"name": "3", "image": "x"}, {"name": "1", "image": "y"}]}}, 400,
     ["invalid patch format of setElementOrder list", "spec.containers"]),
    ("order list that is not a list",
     {"spec": {"$setElementOrder/containers": {"name": "a"}}}, 400,
     ["invalid patch format of setElementOrder list"]),
    ("list item without the merge key",
     {"spec": {"containers": [{"image": "x"}]}}, 400,
     ["does not contain declared merge key: name", "spec.containers"]),
    ("delete directive without the merge key",
     {"spec": {"containers": [{"$patch": "delete"}]}}, 400, ["declared merge key"]),
    ("lists of lists",
     {"metadata": {"finalizers": [["a"]]}}, 422, ["lists of lists are not supported"]),
    ("mixed element types",
     {"metadata": {"finalizers": [{"a": 1}]}}, 400, ["not identical"]),
    ("$deleteFromPrimitiveList not a list",
     {"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}, 400,
     ["invalid patch format of primitive list"]),
]


@pytest.mark.parametrize(("patch", "code", "words"), [e[1:] for e in ERRORS],
                         ids=[e[0] for e in ERRORS])
def test_bad_patches(patch: dict[str, Any], code: int, words: list[str]) -> None:
    live = pod_with("1", "2", "3")
    live["metadata"]["finalizers"] = ["x"]
    with pytest.raises(ApiError) as e:
        strategic_merge_patch(live, patch, POD)
    assert e.value.code == code
    for word in words:
        assert word in e.value.message


def test_patch_must_be_an_object() -> None:
    with pytest.raises(ApiError) as e:
        strategic_merge_patch({}, [1], POD)  # type: ignore[arg-type]
    assert e.value.code == 400


smp_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2) | st.sampled_from(["a", "b", "replace",
                                                                       "delete", "merge"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["name", "image", "$patch", "$retainKeys", "args", "env", "value",
                         "$setElementOrder/env", "$deleteFromPrimitiveList/args",
                         "$setElementOrder/containers", "containers", "finalizers",
                         "labels", "spec", "metadata", "x"]),
        inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(smp_values)
def test_random_patches_raise_only_api_errors(patch: Any) -> None:
    live = pod_with("a=a:1", "b=b:1")
    live["metadata"]["finalizers"] = ["f1"]
    live["spec"]["containers"][0]["env"] = [{"name": "X", "value": "1"}]
    before = copy.deepcopy(live)
    if not isinstance(patch, dict):
        patch = {"spec": patch}
    try:
        strategic_merge_patch(live, patch, POD)
    except ApiError as e:
        assert e.code in (400, 422)
    assert live == before
