"""JSON patch (RFC 6902): the RFC's examples, upstream's error codes, and robustness."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timonel.api.errors import ApiError
from timonel.api.patch import json_patch

# RFC 6902 appendix A: (document, patch, result).
RFC_EXAMPLES = [
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}],
     {"baz": "qux", "foo": "bar"}),
    ({"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}],
     {"foo": ["bar", "qux", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "remove", "path": "/baz"}], {"foo": "bar"}),
    ({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}],
     {"foo": ["bar", "baz"]}),
    ({"baz": "qux", "foo": "bar"}, [{"op": "replace", "path": "/baz", "value": "boo"}],
     {"baz": "boo", "foo": "bar"}),
    ({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
     [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}],
     {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    ({"foo": ["all", "grass", "cows", "eat"]}, [{"op": "move", "from": "/foo/1", "path": "/foo/3"}],
     {"foo": ["all", "cows", "eat", "grass"]}),
    ({"baz": "qux", "foo": ["a", 2, "c"]},
     [{"op": "test", "path": "/baz", "value": "qux"}, {"op": "test", "path": "/foo/1", "value": 2}],
     {"baz": "qux", "foo": ["a", 2, "c"]}),
    ({"foo": "bar"}, [{"op": "add", "path": "/child", "value": {"grandchild": {}}}],
     {"foo": "bar", "child": {"grandchild": {}}}),
    ({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux", "xyz": 123}],
     {"foo": "bar", "baz": "qux"}),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": 10}], {"/": 9, "~1": 10}),
    ({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}],
     {"foo": ["bar", ["abc", "def"]]}),
    # Beyond the appendix: copy, the `~1` escape, the whole document.
    ({"a": {"b": [1]}}, [{"op": "copy", "from": "/a/b", "path": "/c"}],
     {"a": {"b": [1]}, "c": [1]}),
    ({}, [{"op": "add", "path": "/x~1y", "value": 1}], {"x/y": 1}),
    ({"a": 1}, [{"op": "replace", "path": "", "value": {"b": 2}}], {"b": 2}),
    ({"a": [1, 2]}, [{"op": "add", "path": "/a/2", "value": 3}], {"a": [1, 2, 3]}),
]


@pytest.mark.parametrize(("doc", "patch", "expected"), RFC_EXAMPLES)
def test_rfc_examples(doc: Any, patch: list[Any], expected: Any) -> None:
    before = copy.deepcopy(doc)
    assert json_patch(doc, patch) == expected
    assert doc == before


# (document, patch, words the message must contain)
FAILING = [
    ({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}], ["test /baz", "test failed"]),
    ({"foo": "bar"}, [{"op": "add", "path": "/baz/bat", "value": "qux"}], ["add /baz/bat", "/baz"]),
    ({"/": 9, "~1": 10}, [{"op": "test", "path": "/~01", "value": "10"}], ["test failed"]),
    ({"a": 1}, [{"op": "test", "path": "/a", "value": True}], ["test failed"]),
    ({"a": 1}, [{"op": "remove", "path": "/b"}], ["remove /b", "does not exist"]),
    ({"a": 1}, [{"op": "replace", "path": "/b", "value": 2}], ["replace /b", "does not exist"]),
    ({"a": [1]}, [{"op": "remove", "path": "/a/-"}], ["can only be used to add"]),
    ({"a": [1]}, [{"op": "add", "path": "/a/5", "value": 2}], ["out of range"]),
    ({"a": [1]}, [{"op": "add", "path": "/a/01", "value": 2}], ["not an array index"]),
    ({"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/c"}], ["its own child"]),
    ({"a": 1}, [{"op": "frob", "path": "/a"}], ["unknown operation", "frob"]),
    ({"a": 1}, [{"op": "add", "path": "/b"}], ['needs a "value"']),
    ({"a": 1}, [{"op": "add", "value": 1}], ['needs a "path"']),
    ({"a": 1}, [{"op": "add", "path": "b", "value": 1}], ["must start with"]),
    ({"a": 1}, [{"op": "add", "path": "/a~2", "value": 1}], ["bad escape"]),
    ({"a": 1}, [{"op": "copy", "from": "/nope", "path": "/b"}], ["/nope"]),
    ({"a": "s"}, [{"op": "add", "path": "/a/b", "value": 1}], ["is a string"]),
]


@pytest.mark.parametrize(("doc", "patch", "words"), FAILING)
def test_failing_operations_are_422_naming_operation_and_path(doc: Any, patch: list[Any],
                                                               words: list[str]) -> None:
    before = copy.deepcopy(doc)
    with pytest.raises(ApiError) as e:
        json_patch(doc, patch)
    assert e.value.code == 422 and e.value.reason == "Invalid"
    assert e.value.message.startswith("json patch operation 0 (")
    for word in words:
        assert word in e.value.message
    assert doc == before


def test_later_operation_failure_leaves_document_untouched() -> None:
    doc = {"a": 1}
    with pytest.raises(ApiError) as e:
        json_patch(doc, [{"op": "replace", "path": "/a", "value": 2},
                         {"op": "test", "path": "/a", "value": 3}])
    assert "operation 1 (test /a)" in e.value.message
    assert doc == {"a": 1}


@pytest.mark.parametrize("patch", [{"op": "add"}, "x", None, [1], [["add"]]])
def test_malformed_patch_document_is_400(patch: Any) -> None:
    with pytest.raises(ApiError) as e:
        json_patch({}, patch)
    assert e.value.code == 400 and e.value.reason == "BadRequest"


def test_too_many_operations_is_413() -> None:
    ops = [{"op": "test", "path": "", "value": {}}] * 10001
    with pytest.raises(ApiError) as e:
        json_patch({}, ops)
    assert e.value.code == 413
    assert "10000" in e.value.message and "10001" in e.value.message


def test_values_are_copied_into_the_result() -> None:
    value = {"deep": [1]}
    patch = [{"op": "add", "path": "/v", "value": value}, {"op": "copy", "from": "/v", "path": "/w"}]
    out = json_patch({}, patch)
    out["v"]["deep"].append(2)
    assert value == {"deep": [1]} and out["w"] == {"deep": [1]}


def test_kubectl_style_patch_on_a_deployment() -> None:
    dep = {"spec": {"replicas": 1, "template": {"spec": {"containers": [
        {"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}}}
    out = json_patch(dep, [
        {"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "b:2"},
        {"op": "add", "path": "/spec/template/metadata", "value": {"labels": {"x": "y"}}},
        {"op": "remove", "path": "/spec/replicas"},
    ])
    assert out["spec"]["template"]["spec"]["containers"][1]["image"] == "b:2"
    assert out["spec"]["template"]["metadata"] == {"labels": {"x": "y"}}
    assert "replicas" not in out["spec"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(alphabet="ab~/-0", max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(alphabet="ab~/-0", max_size=2), inner, max_size=3),
    max_leaves=6,
)
pointers = st.sampled_from(["", "/", "/a", "/a/0", "/a/-", "/a/b", "/b", "/b/1", "/~0", "/~1",
                            "/~", "/a/01", "a", "/0", "/-"]) | st.text(max_size=4)
operations = st.fixed_dictionaries(
    {},
    optional={
        "op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"])
        | json_values,
        "path": pointers | json_values,
        "from": pointers | json_values,
        "value": json_values,
    },
)


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.lists(operations, max_size=5) | json_values)
def test_random_operations_raise_only_api_errors(doc: Any, ops: Any) -> None:
    before = copy.deepcopy(doc)
    try:
        json_patch(doc, ops)
    except ApiError as e:
        assert e.code in (400, 413, 422)
    assert doc == before
