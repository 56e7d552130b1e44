"""What the upstream OpenAPI definitions say about the shape of each field.

Strategic merge patch and server-side apply both walk a schema alongside the
data. This module turns an OpenAPI property schema into a `Shape` once (the
definitions are loaded once and never change, so shapes are cached by the
identity of the schema node) and answers "what is the shape of field X / of
the items of this list".

Field-level extensions (`x-kubernetes-patch-strategy` next to a `$ref`) win
over the ones on the referenced definition (`x-kubernetes-map-type: atomic`
on LabelSelector), as upstream reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from timonel.api import schemas

STRUCT = "struct"    # an object with declared properties
MAP = "map"          # an object whose values all share one schema (labels, limits)
LIST = "list"
SCALAR = "scalar"
UNTYPED = "untyped"  # no schema: custom resources, RawExtension, unknown fields


@dataclass(frozen=True, slots=True)
class Shape:
    kind: str
    schema: dict[str, Any] | None
    # Lists: "atomic", "set" or "map" (server-side apply); keys of list maps.
    list_type: str = "atomic"
    keys: tuple[str, ...] = ()
    # Strategic merge patch metadata.
    strategies: frozenset[str] = frozenset()
    merge_key: str = ""
    # x-kubernetes-map-type: atomic (the whole object is one value for SSA).
    atomic: bool = False

    def field(self, name: str) -> Shape:
        """The shape of field/key `name` of this object (UNTYPED_SHAPE if unknown)."""
        s = self.schema
        if s is None:
            return UNTYPED_SHAPE
        if self.kind == STRUCT:
            prop = s["properties"].get(name)
            if prop is not None:
                return shape_of(prop)
        extra = s.get("additionalProperties")
        if isinstance(extra, dict):
            return shape_of(extra)
        return UNTYPED_SHAPE

    def is_declared(self, name: str) -> bool:
        """True for a struct's own field; False for a map key or an unknown field."""
        return self.kind == STRUCT and self.schema is not None and name in self.schema["properties"]

    def item(self) -> Shape:
        s = self.schema
        if s is None or not isinstance(s.get("items"), dict):
            return UNTYPED_SHAPE
        return shape_of(s["items"])

    @property
    def strategy_merge(self) -> bool:
        return "merge" in self.strategies

    @property
    def strategy_replace(self) -> bool:
        return "replace" in self.strategies


UNTYPED_SHAPE = Shape(UNTYPED, None)

_cache: dict[int, tuple[dict[str, Any], Shape]] = {}
_roots: dict[str, Shape] = {}


def root_shape(definition: str | None) -> Shape:
    """The shape of a whole object of OpenAPI definition `definition` (untyped if unknown)."""
    if not definition:
        return UNTYPED_SHAPE
    shape = _roots.get(definition)
    if shape is None:
        if definition not in schemas.definitions():
            return UNTYPED_SHAPE
        shape = shape_of({"$ref": f"#/$defs/{definition}"})
        _roots[definition] = shape
    return shape


def shape_of(field_schema: dict[str, Any]) -> Shape:
    hit = _cache.get(id(field_schema))
    if hit is not None and hit[0] is field_schema:
        return hit[1]
    shape = _build(field_schema)
    # Keep the schema alive next to its id so the id is never reused.
    _cache[id(field_schema)] = (field_schema, shape)
    return shape


def _ext(outer: dict[str, Any], inner: dict[str, Any], name: str) -> Any:
    value = outer.get(name)
    return value if value is not None else inner.get(name)


def _types(s: dict[str, Any]) -> set[str]:
    t = s.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {x for x in t if isinstance(x, str)}
    return set()


def _build(outer: dict[str, Any]) -> Shape:
    target = schemas.resolve_ref(outer) if "$ref" in outer else outer
    strategy_text = _ext(outer, target, "x-kubernetes-patch-strategy") or ""
    strategies = frozenset(p.strip() for p in str(strategy_text).split(",") if p.strip())
    merge_key = str(_ext(outer, target, "x-kubernetes-patch-merge-key") or "")
    atomic = _ext(outer, target, "x-kubernetes-map-type") == "atomic"
    types = _types(target)

    if isinstance(target.get("properties"), dict):
        return Shape(STRUCT, target, strategies=strategies, merge_key=merge_key, atomic=atomic)
    if isinstance(target.get("additionalProperties"), dict):
        return Shape(MAP, target, strategies=strategies, merge_key=merge_key, atomic=atomic)
    if "items" in target or "array" in types:
        list_type = _ext(outer, target, "x-kubernetes-list-type")
        keys = tuple(_ext(outer, target, "x-kubernetes-list-map-keys") or ())
        if not list_type:
            # Upstream's legacy rule for lists without a list type.
            list_type = ("map" if merge_key else "set") if "merge" in strategies else "atomic"
        if list_type == "map" and not keys:
            keys = (merge_key,) if merge_key else ()
            if not keys:
                list_type = "atomic"
        return Shape(LIST, target, list_type=str(list_type), keys=keys, strategies=strategies,
                     merge_key=merge_key)
    if "object" in types:
        # An object without declared fields (RawExtension, JSON, FieldsV1).
        return Shape(UNTYPED, None, atomic=atomic)
    if types or "oneOf" in target or "anyOf" in target or "format" in target:
        return Shape(SCALAR, target)
    return UNTYPED_SHAPE
