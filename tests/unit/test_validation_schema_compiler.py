"""The schema compiler: every definition compiles, fast; odd values take the exact path."""

from __future__ import annotations

import re
import time
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.unit import test_validation_schema_reference as ref
from tests.unit.test_validation_schema import typical_pod
from timonel.api import schemas
from timonel.api.resources import ResourceType, by_kind
from timonel.api.validation import schema as sc
from timonel.api.validation.schema_compiler import (
    ENUM,
    FORMAT,
    FORMATS,
    REQUIRED,
    TYPE,
    UNKNOWN,
    Compiler,
    Finding,
    SchemaCompileError,
)

POD = by_kind("", "Pod")
CRD = ResourceType("apiextensions.k8s.io", "v1", "CustomResourceDefinition",
                   "customresourcedefinitions", namespaced=False)


def test_every_upstream_definition_compiles() -> None:
    # A kubernetes-validate upgrade that brings a keyword the compiler does not
    # know fails here, not on the first create of some kind in production.
    compiler = Compiler(sc._definitions()["$defs"])
    for name in sc._definitions()["$defs"]:
        compiler.definition(name)


def test_first_compile_of_pod_is_fast() -> None:
    root = schemas.definition_name("", "v1", "Pod") or ""
    times = []
    for _ in range(3):
        compiler = Compiler(sc._definitions()["$defs"])
        t0 = time.perf_counter()
        compiler.definition(root)
        times.append(time.perf_counter() - t0)
    print(f"first compile of Pod: {min(times) * 1000:.1f} ms")
    assert min(times) < 0.1  # about 13 ms here


@pytest.mark.parametrize(("schema", "words"), [
    ({"type": "string", "pattern": "^a+$"}, "pattern"),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "oneOf"),
    ({"$ref": "#/$defs/Y", "type": "string"}, "$ref with sibling"),
    ({"type": ["string", "null"], "enum": [1, 2]}, "non-string"),
    ({"type": "strnig"}, "unknown type"),
])
def test_keywords_the_compiler_does_not_know_are_refused(schema: dict[str, Any],
                                                         words: str) -> None:
    compiler = Compiler({"X": {"type": "object", "properties": {"a": schema}}, "Y": {}})
    with pytest.raises(SchemaCompileError, match=re.escape(words)):
        compiler.definition("X")
    # Nothing half-compiled stays behind.
    with pytest.raises(SchemaCompileError):
        compiler.definition("X")


def test_causes_come_in_schema_order_not_document_order() -> None:
    pod = typical_pod()
    # Container declares `image` before `name`, ObjectMeta `labels` before `name`.
    pod["spec"]["containers"][0] = {"name": 1, "image": 2}
    pod["metadata"] = {"name": 3, "labels": {"b": 4, "a": 5}}
    result = sc.check(pod, POD)
    fields = [c["field"] for c in result.causes]
    # Map entries come in jsonschema's (set) order, the rest in schema order.
    assert sorted(fields[:2]) == ["metadata.labels[a]", "metadata.labels[b]"]
    assert fields[2:] == ["metadata.name", "spec.containers[0].image", "spec.containers[0].name"]
    assert result == ref.check(pod, POD)


def test_map_entries_are_reported_in_jsonschemas_order() -> None:
    pod = typical_pod()
    pod["metadata"]["labels"] = {f"k{i}": i for i in range(12)}
    assert sc.check(pod, POD) == ref.check(pod, POD)


def test_recursive_definitions_check_at_any_depth() -> None:
    props: dict[str, Any] = {"type": "object", "typo": True, "maxLength": "ten"}
    for _ in range(6):
        props = {"type": "object", "properties": {"x": props}}
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "a.b"},
           "spec": {"group": "b", "scope": "Cluster", "names": {"plural": "a", "kind": "A"},
                    "versions": [{"name": "v1", "served": True, "storage": True,
                                  "schema": {"openAPIV3Schema": props}}]}}
    result = sc.check(crd, CRD)
    deep = "spec.versions[0].schema.openAPIV3Schema" + ".properties.x" * 6
    assert result.unknown_paths == [f"{deep}.typo"]
    # Causes name map keys as field errors do: `properties[x]`.
    assert [c["field"] for c in result.causes] == [deep.replace(".x", "[x]") + ".maxLength"]
    assert result == ref.check(crd, CRD)


class _Dict(dict):  # type: ignore[type-arg]
    pass


class _List(list):  # type: ignore[type-arg]
    pass


class _Str(str):
    __slots__ = ()


def _subclassed(v: Any) -> Any:
    if isinstance(v, dict):
        return _Dict({k: _subclassed(x) for k, x in v.items()})
    if isinstance(v, list):
        return _List(_subclassed(x) for x in v)
    if isinstance(v, str):
        return _Str(v)
    return v


@pytest.mark.parametrize("broken", [False, True])
def test_subclassed_values_are_checked_as_jsonschema_did(broken: bool) -> None:
    # The fast paths test exact classes; anything else takes the generic path,
    # which follows jsonschema's isinstance-based types.
    pod = typical_pod()
    if broken:
        pod["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "1.5.5"
        pod["spec"]["containers"][0]["ports"][0]["containerPort"] = 2**31
        pod["spec"]["containers"][0]["bogus"] = 1
        del pod["spec"]["containers"][0]["name"]
        pod["kind"] = "Pood"
    odd = _subclassed(pod)
    assert sc.check(odd, POD) == ref.check(odd, POD) == ref.check(pod, POD)
    assert bool(sc.check(odd, POD).causes) is broken


def test_a_cached_quantity_does_not_hide_a_bad_one() -> None:
    pod = typical_pod()
    limits = pod["spec"]["containers"][0]["resources"]["limits"]
    limits["cpu"] = "1.5"
    assert sc.check(pod, POD).causes == []
    limits["cpu"] = "1.5.5"
    assert [c["field"] for c in sc.check(pod, POD).causes] == [
        "spec.containers[0].resources.limits[cpu]"]


# -- random schemas: the findings are jsonschema's errors, in jsonschema's order ------------

_NAMES = st.sampled_from(["a", "b", "c", "d"])
_TYPES = st.sampled_from(["string", "integer", "number", "boolean", "object", "array", "null"])


@st.composite
def _schemas(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    """A node using the compiler's keywords, in a random order."""
    options: dict[str, st.SearchStrategy[Any]] = {
        "type": st.one_of(_TYPES, st.lists(_TYPES, min_size=1, max_size=3, unique=True)),
        "format": st.sampled_from([*FORMATS, "double"]),
        "enum": st.lists(st.sampled_from(["x", "y", "1", ""]), min_size=1, max_size=3),
        "required": st.lists(_NAMES, max_size=3, unique=True),
    }
    if depth < 3:
        child = _schemas(depth + 1)
        options["properties"] = st.dictionaries(_NAMES, child, max_size=3)
        options["additionalProperties"] = st.one_of(st.just(False), child)
        options["items"] = child
    chosen = draw(st.lists(st.sampled_from(sorted(options)), max_size=4, unique=True))
    return {k: draw(options[k]) for k in chosen}


_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([2**31, 2**63, 1.0, 1.5]),
              st.sampled_from(["x", "y", "1", "", "100m", "1.5.5", "aGk=", "a!", "2024-01-01T00:00:00Z"])),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(
        st.one_of(_NAMES, st.sampled_from(["e", "f"])), inner, max_size=4)),
    max_leaves=10)


def _format_checker() -> jsonschema.FormatChecker:
    checker = jsonschema.FormatChecker(formats=())
    for name, (func, raises, _) in FORMATS.items():
        checker.checks(name, raises=raises)(func)
    return checker


def _jsonschema_findings(schema: dict[str, Any], value: Any) -> list[tuple[Any, ...]]:
    kinds = {"type": TYPE, "format": FORMAT, "enum": ENUM, "required": REQUIRED,
             "additionalProperties": UNKNOWN}
    v = jsonschema.Draft202012Validator(schema, format_checker=_format_checker())
    return [(kinds[e.validator], tuple(e.absolute_path)) for e in v.iter_errors(value)]


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(schema=_schemas(), value=_VALUES)
# Keywords about the children before those about the value itself: findings
# must come in keyword order, not in the order the compiler checks them.
@example(schema={"items": {"type": "string"}, "enum": ["x"]}, value=[1, "a"])
@example(schema={"required": ["a"], "properties": {"b": {"type": "null"}}, "type": "array"},
         value={"b": 1, "c": 2})
def test_findings_follow_jsonschemas_errors_for_any_keyword_order(schema: dict[str, Any],
                                                                  value: Any) -> None:
    check = Compiler({"root": schema}).definition("root")
    findings: list[Finding] = []
    check(value, (), findings)
    assert [(k, p) for k, p, _, _ in findings] == _jsonschema_findings(schema, value)
