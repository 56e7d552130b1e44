"""JSON merge patch (RFC 7386): the RFC's own examples and a round-trip property."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timonel.api.patch import merge_patch
from timonel.api.patch.jsonvalue import json_equal

# RFC 7386 appendix A: (target, patch, result).
RFC_EXAMPLES = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_EXAMPLES)
def test_rfc_examples(target: Any, patch: Any, expected: Any) -> None:
    before_target, before_patch = copy.deepcopy(target), copy.deepcopy(patch)
    assert merge_patch(target, patch) == expected
    assert target == before_target and patch == before_patch


def test_kubectl_scale_patch_changes_only_replicas() -> None:
    live = {"spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}}}
    out = merge_patch(live, {"spec": {"replicas": 4}})
    assert out == {"spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}}}}


def test_result_shares_nothing_with_inputs() -> None:
    live = {"spec": {"template": {"labels": {"a": "b"}}, "list": [{"x": 1}]}}
    patch = {"spec": {"new": {"deep": [1, {"y": 2}]}}}
    out = merge_patch(live, patch)
    out["spec"]["template"]["labels"]["a"] = "changed"
    out["spec"]["list"][0]["x"] = 99
    out["spec"]["new"]["deep"][1]["y"] = 99
    assert live == {"spec": {"template": {"labels": {"a": "b"}}, "list": [{"x": 1}]}}
    assert patch == {"spec": {"new": {"deep": [1, {"y": 2}]}}}


# A merge patch cannot express a null value inside an object (null deletes),
# so the target documents carry nulls only inside lists.
scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)
keys = st.text(alphabet="abcd", min_size=1, max_size=2)


def _json(non_null: bool) -> st.SearchStrategy[Any]:
    leaves = (st.booleans() | st.integers(-5, 5) | st.text(max_size=3)) if non_null else scalars
    return st.recursive(
        leaves,
        lambda inner: st.lists(scalars | inner, max_size=3)
        | st.dictionaries(keys, _non_null(inner), max_size=3),
        max_leaves=8,
    )


def _non_null(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return inner.filter(lambda v: v is not None)


documents = st.dictionaries(keys, _non_null(_json(non_null=True)), max_size=4)


def create_merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The smallest merge patch turning `old` into `new` (test helper)."""
    patch: dict[str, Any] = {}
    for k in old:
        if k not in new:
            patch[k] = None
    for k, v in new.items():
        if k not in old:
            patch[k] = v
        elif isinstance(old[k], dict) and isinstance(v, dict):
            sub = create_merge_patch(old[k], v)
            if sub:
                patch[k] = sub
        elif not json_equal(old[k], v):
            patch[k] = v
    return patch


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(documents, documents)
def test_merge_of_created_patch_yields_target(x: dict[str, Any], y: dict[str, Any]) -> None:
    patch = create_merge_patch(x, y)
    assert json_equal(merge_patch(x, patch), y)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_empty_patch_is_identity(x: dict[str, Any]) -> None:
    assert json_equal(merge_patch(x, {}), x)
