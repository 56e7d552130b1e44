"""apply_patch: the API server's single entry point, dispatching on the content type."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from timonel.api.errors import ApiError
from timonel.api.patch import apply_patch, parse_apply_body

DEPLOYMENT = "io.k8s.api.apps.v1.Deployment"
NOW = "2024-05-01T10:00:00Z"


def live() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "u", "resourceVersion": "5",
                     "labels": {"app": "web"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                     {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}},
    }


def patch(ctype: str, body: Any, obj: dict[str, Any] | None = None, *,
          definition: str | None = DEPLOYMENT, force: bool = False,
          manager: str = "tester") -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return apply_patch(ctype, obj if obj is not None else live(), raw, definition=definition,
                       manager=manager, force=force, now=NOW)


def test_merge_patch() -> None:
    out = patch("application/merge-patch+json", {"spec": {"replicas": 3}})
    assert out["spec"]["replicas"] == 3
    assert "managedFields" not in out["metadata"]


def test_content_type_parameters_are_ignored() -> None:
    out = patch("application/merge-patch+json; charset=utf-8", {"spec": {"replicas": 3}})
    assert out["spec"]["replicas"] == 3


def test_json_patch() -> None:
    out = patch("application/json-patch+json",
                [{"op": "replace", "path": "/spec/template/spec/containers/0/image",
                  "value": "a:2"}])
    assert out["spec"]["template"]["spec"]["containers"][0]["image"] == "a:2"


def test_strategic_merge_patch() -> None:
    out = patch("application/strategic-merge-patch+json",
                {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "b:2"}]}}}})
    assert [c["image"] for c in out["spec"]["template"]["spec"]["containers"]] == ["a:1", "b:2"]


def test_apply_patch_with_a_json_body_creates() -> None:
    body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2}}
    out = apply_patch("application/apply-patch+yaml", None, json.dumps(body).encode(),
                      definition=DEPLOYMENT, manager="kubectl", force=False, now=NOW)
    assert out["spec"]["replicas"] == 2
    assert out["metadata"]["managedFields"][0]["operation"] == "Apply"


def test_apply_patch_with_a_yaml_body() -> None:
    body = b"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    when: 2024-05-01
spec:
  replicas: 4
"""
    out = patch("application/apply-patch+yaml", body, force=True)
    assert out["spec"]["replicas"] == 4
    # Timestamps stay strings (they would not survive as JSON otherwise).
    assert out["metadata"]["annotations"] == {"when": "2024-05-01"}


def test_yaml_keys_become_strings() -> None:
    assert parse_apply_body(b"apiVersion: v1\nkind: ConfigMap\ndata:\n  1: a\n  true: b\n") == {
        "apiVersion": "v1", "kind": "ConfigMap", "data": {"1": "a", "true": "b"}}


def test_inputs_are_untouched_and_result_independent() -> None:
    obj = live()
    saved = copy.deepcopy(obj)
    for ctype, body in [
        ("application/merge-patch+json", {"metadata": {"labels": {"x": "y"}}}),
        ("application/json-patch+json", [{"op": "add", "path": "/metadata/labels/x",
                                          "value": "y"}]),
        ("application/strategic-merge-patch+json", {"metadata": {"labels": {"x": "y"}}}),
    ]:
        out = patch(ctype, body, obj)
        out["metadata"]["labels"]["app"] = "mutated"
        out["spec"]["template"]["spec"]["containers"][0]["image"] = "mutated"
        assert obj == saved, ctype


@pytest.mark.parametrize("ctype", ["application/json", "text/plain", ""])
def test_unknown_content_types_are_415(ctype: str) -> None:
    with pytest.raises(ApiError) as e:
        patch(ctype, {})
    assert e.value.code == 415 and e.value.reason == "UnsupportedMediaType"
    assert e.value.message == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        "application/strategic-merge-patch+json, application/apply-patch+yaml")


def test_custom_resources_refuse_strategic_merge_patch_like_upstream() -> None:
    cr = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
          "spec": {"items": [1]}}
    with pytest.raises(ApiError) as e:
        patch("application/strategic-merge-patch+json", {"spec": {}}, cr, definition=None)
    assert e.value.code == 415
    assert e.value.message.endswith("application/json-patch+json, "
                                    "application/merge-patch+json, application/apply-patch+yaml")
    out = patch("application/merge-patch+json", {"spec": {"items": [2]}}, cr, definition=None)
    assert out["spec"] == {"items": [2]}


@pytest.mark.parametrize(("ctype", "body", "where"), [
    ("application/merge-patch+json", b'{"spec": {"replicas": }}', "line 1, column 23"),
    ("application/strategic-merge-patch+json", b'{\n  "a": 1,\n  oops\n}', "line 3, column 3"),
    ("application/json-patch+json", b"[{]", "line 1, column 3"),
    ("application/apply-patch+yaml", b"apiVersion: v1\nkind: [\n", "line 3, column 1"),
    ("application/apply-patch+yaml", b"a: b\n  c: d\n", "line 2, column 4"),
])
def test_malformed_bodies_are_400_with_the_position(ctype: str, body: bytes, where: str) -> None:
    with pytest.raises(ApiError) as e:
        patch(ctype, body)
    assert e.value.code == 400 and e.value.reason == "BadRequest"
    assert where in e.value.message


@pytest.mark.parametrize(("ctype", "body"), [
    ("application/merge-patch+json", b""),
    ("application/merge-patch+json", b"[1]"),
    ("application/strategic-merge-patch+json", b"null"),
    ("application/json-patch+json", b'{"op": "add"}'),
    ("application/apply-patch+yaml", b"- a\n- b\n"),
    ("application/apply-patch+yaml", b"   "),
])
def test_bodies_of_the_wrong_shape_are_400(ctype: str, body: bytes) -> None:
    with pytest.raises(ApiError) as e:
        patch(ctype, body)
    assert e.value.code == 400


def test_patch_replacing_the_whole_object_by_a_non_object_is_422() -> None:
    with pytest.raises(ApiError) as e:
        patch("application/json-patch+json", [{"op": "replace", "path": "", "value": [1]}])
    assert e.value.code == 422


def test_force_is_only_for_apply() -> None:
    with pytest.raises(ApiError) as e:
        patch("application/merge-patch+json", {}, force=True)
    assert e.value.code == 422 and "force" in e.value.message


def test_only_apply_creates() -> None:
    with pytest.raises(ApiError) as e:
        apply_patch("application/merge-patch+json", None, b"{}", definition=DEPLOYMENT,
                    manager="m", force=False, now=NOW)
    assert e.value.code == 404
