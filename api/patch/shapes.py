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

from dataclasses import dataclass, field
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
    # Answers of child()/item(), filled on first use: every write walks the
    # same few definitions. Only declared fields are keyed by name, so label
    # keys and other user data never grow it.
    _memo: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    # Field sets walk into an object key by key and into a list item by item
    # (server-side apply); otherwise the value is one leaf.
    granular_object: bool = field(init=False, compare=False, repr=False)
    granular_list: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "granular_object",
                           self.kind in (STRUCT, MAP, UNTYPED) and not self.atomic)
        object.__setattr__(self, "granular_list",
                           self.kind == LIST and self.list_type != "atomic")

    def child(self, name: str) -> tuple[Shape, bool]:
        """The shape of field/key `name`, and whether it is an entry (a map key or an
        undeclared field, which field sets track by its own path) rather than a declared
        struct field."""
        hit = self._memo.get(name)
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        s = self.schema
        if self.kind == STRUCT and s is not None:
            prop = s["properties"].get(name)
            if prop is not None:
                hit = self._memo[name] = (shape_of(prop), False)
                return hit
        extra = self._memo.get(_EXTRA)
        if extra is None:
            extra = self._memo[_EXTRA] = (self._extra(), True)
        return extra  # type: ignore[no-any-return]

    def _extra(self) -> Shape:
        s = self.schema
        if s is None:
            return UNTYPED_SHAPE
        extra = s.get("additionalProperties")
        if isinstance(extra, dict):
            return shape_of(extra)
        return UNTYPED_SHAPE

    def field(self, name: str) -> Shape:
        """The shape of field/key `name` of this object (UNTYPED_SHAPE if unknown)."""
        return self.child(name)[0]

    def is_declared(self, name: str) -> bool:
        """True for a struct's own field; False for a map key or an unknown field."""
        return self.kind == STRUCT and self.schema is not None and name in self.schema["properties"]

    def item(self) -> Shape:
        hit = self._memo.get(_ITEM)
        if hit is None:
            s = self.schema
            if s is None or not isinstance(s.get("items"), dict):
                hit = UNTYPED_SHAPE
            else:
                hit = shape_of(s["items"])
            self._memo[_ITEM] = hit
        return hit  # type: ignore[no-any-return]

    def sorted_keys(self) -> tuple[str, ...]:
        """The list-map keys in the order path elements spell them."""
        hit = self._memo.get(_KEYS)
        if hit is None:
            hit = self._memo[_KEYS] = tuple(sorted(self.keys))
        return hit  # type: ignore[no-any-return]

    @property
    def strategy_merge(self) -> bool:
        return "merge" in self.strategies

    @property
    def strategy_replace(self) -> bool:
        return "replace" in self.strategies


# Memo keys that can never be a field name.
_EXTRA, _ITEM, _KEYS = object(), object(), object()

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
