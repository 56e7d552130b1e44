"""Field sets in the upstream FieldsV1 format: what an object owns, diffs, encoding."""

from __future__ import annotations

from typing import Any

import pytest

from timonel.api.patch.fieldsets import (
    STRIPPED,
    canonical_pe,
    compare,
    decode,
    encode,
    path_string,
    remove_paths,
    to_field_set,
)
from timonel.api.patch.shapes import root_shape

DEPLOYMENT = root_shape("io.k8s.api.apps.v1.Deployment")
POD = root_shape("io.k8s.api.core.v1.Pod")


def applied_deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25",
                                         "ports": [{"containerPort": 80}],
                                         "args": ["-g", "daemon off;"]}]},
            },
        },
    }


def test_fields_of_an_applied_deployment_match_upstream_fieldsv1() -> None:
    fields = to_field_set(applied_deployment(), DEPLOYMENT, strict=True) - STRIPPED
    # As the API server records `kubectl apply --server-side` of this manifest:
    # selector is an atomic map, args an atomic list, ports default to TCP.
    assert encode(fields) == {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {'k:{"name":"nginx"}': {
                    ".": {}, "f:args": {}, "f:image": {}, "f:name": {},
                    "f:ports": {'k:{"containerPort":80,"protocol":"TCP"}': {
                        ".": {}, "f:containerPort": {}}},
                }}},
            },
        },
    }


def test_set_items_are_values() -> None:
    fields = to_field_set({"metadata": {"finalizers": ["a", "b/c"]}}, POD)
    assert encode(fields) == {"f:metadata": {"f:finalizers": {'v:"a"': {}, 'v:"b/c"': {}}}}


def test_objects_without_schema_are_granular_maps_and_atomic_lists() -> None:
    shape = root_shape(None)
    fields = to_field_set({"spec": {"size": 3, "items": [1, 2], "nested": {"a": 1}}}, shape)
    assert encode(fields) == {"f:spec": {".": {}, "f:items": {},
                                         "f:nested": {".": {}, "f:a": {}}, "f:size": {}}}


def test_strict_mode_rejects_list_map_items_without_their_key() -> None:
    from timonel.api.errors import ApiError
    obj = {"spec": {"containers": [{"image": "x"}]}}
    with pytest.raises(ApiError) as e:
        to_field_set(obj, POD, strict=True)
    assert e.value.code == 422
    assert ".spec.containers[0]" in e.value.message and "'name'" in e.value.message
    # Stored objects are never refused: the item is tracked by index.
    assert ("f:spec", "f:containers", "i:0") in to_field_set(obj, POD)


def test_encode_decode_round_trip() -> None:
    fields = to_field_set(applied_deployment(), DEPLOYMENT)
    assert decode(encode(fields)) == fields


def test_decode_canonicalizes_keys_and_skips_unknown_kinds() -> None:
    raw: dict[str, Any] = {"f:spec": {'k:{"protocol":"TCP", "containerPort":80}': {}, "z:future": {}}}
    assert decode(raw) == {("f:spec", 'k:{"containerPort":80,"protocol":"TCP"}')}
    assert canonical_pe('v:"x"') == 'v:"x"'
    with pytest.raises(ValueError):
        decode({"f:a": 1})
    with pytest.raises(ValueError):
        decode({"nocolon": {}})


def test_path_strings_as_upstream_prints_them() -> None:
    assert path_string(("f:spec", "f:replicas")) == ".spec.replicas"
    assert path_string(("f:spec", "f:containers", 'k:{"name":"nginx"}', "f:image")) == \
        '.spec.containers[name="nginx"].image'
    assert path_string(("f:ports", 'k:{"containerPort":80,"protocol":"TCP"}')) == \
        '.ports[containerPort=80,protocol="TCP"]'
    assert path_string(("f:metadata", "f:finalizers", 'v:"a"')) == '.metadata.finalizers[="a"]'
    assert path_string(("f:args", "i:2")) == ".args[2]"


def test_compare_reports_changed_leaves_and_new_items() -> None:
    old = applied_deployment()
    new = applied_deployment()
    new["metadata"]["labels"] = {"app": "web", "tier": "front"}
    new["spec"]["replicas"] = 3
    del new["spec"]["selector"]
    new["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "envoy"})
    cmp = compare(old, new, DEPLOYMENT)
    sidecar = ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"sidecar"}')
    assert cmp.modified == {("f:spec", "f:replicas")}
    assert cmp.removed == {("f:spec", "f:selector")}
    assert cmp.added == {("f:metadata", "f:labels", "f:tier"), sidecar,
                         (*sidecar, "f:name"), (*sidecar, "f:image")}


def test_compare_on_create_marks_maps_and_items_but_not_structs() -> None:
    cmp = compare({}, applied_deployment(), DEPLOYMENT)
    assert ("f:metadata", "f:labels") in cmp.added
    assert ("f:spec", "f:template", "f:metadata", "f:labels") in cmp.added
    assert ("f:spec",) not in cmp.added and ("f:spec", "f:template") not in cmp.added
    assert encode(cmp.added - STRIPPED)["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}


def test_remove_paths_deletes_fields_items_and_emptied_objects() -> None:
    obj = applied_deployment()
    obj["metadata"]["finalizers"] = ["a", "b"]
    remove_paths(obj, [
        ("f:metadata", "f:labels", "f:app"),
        ("f:metadata", "f:finalizers", 'v:"a"'),
        ("f:spec", "f:template", "f:spec", "f:containers", 'k:{"name":"nginx"}', "f:ports",
         'k:{"containerPort":80,"protocol":"TCP"}'),
        ("f:spec", "f:nothing", "f:here"),
    ], DEPLOYMENT)
    assert "labels" not in obj["metadata"]
    assert obj["metadata"]["finalizers"] == ["b"]
    assert obj["spec"]["template"]["spec"]["containers"][0]["ports"] == []
