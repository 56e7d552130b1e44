"""The FieldsV1 path-set functions as it was before the fast managedFields paths (test-only reference).

Kept verbatim apart from imports, the schema lookups (the old uncached
Shape.field/item/is_declared bodies) and the cache keys of path elements
(_cache_tag), so that test_patch_managed_fields_differential compares the fast
paths with the code they replaced.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from timonel.api.errors import ApiError
from timonel.api.patch.jsonvalue import go_json, json_equal, type_name
from timonel.api.patch.shapes import LIST, MAP, STRUCT, UNTYPED, UNTYPED_SHAPE, Shape, shape_of

log = logging.getLogger(__name__)

Path = tuple[str, ...]
FieldSet = set[Path]

_MISSING: Any = object()

# Upstream schemas default these list-map keys (ports without `protocol` are
# TCP); kubernetes-validate's copy of the definitions lacks the defaults.
KEY_DEFAULTS = {"protocol": "TCP"}

# Never part of anyone's managed fields (upstream stripmeta).
STRIPPED: frozenset[Path] = frozenset({
    ("f:apiVersion",), ("f:kind",), ("f:metadata",),
    *[("f:metadata", f"f:{name}") for name in (
        "name", "namespace", "creationTimestamp", "selfLink", "uid", "clusterName",
        "generation", "managedFields", "resourceVersion")],
})


def _field(shape: Shape, name: str) -> Shape:
    s = shape.schema
    if s is None:
        return UNTYPED_SHAPE
    if shape.kind == STRUCT:
        prop = s["properties"].get(name)
        if prop is not None:
            return shape_of(prop)
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        return shape_of(extra)
    return UNTYPED_SHAPE


def _is_declared(shape: Shape, name: str) -> bool:
    return shape.kind == STRUCT and shape.schema is not None and name in shape.schema["properties"]


def _item(shape: Shape) -> Shape:
    s = shape.schema
    if s is None or not isinstance(s.get("items"), dict):
        return UNTYPED_SHAPE
    return shape_of(s["items"])


def fpe(name: str) -> str:
    return "f:" + name


def item_pe(shape: Shape, item: Any, index: int, path: Path, strict: bool) -> str:
    """The path element of item `index` of a list of shape `shape`.

    strict (an applied configuration): malformed items are 422 errors, as
    upstream. Otherwise (stored objects) they fall back to their index so that
    bookkeeping never fails a write.
    """
    if shape.list_type == "map":
        if isinstance(item, dict):
            key: list[tuple[str, str, Any]] = []
            for name in sorted(shape.keys):
                value = item.get(name)
                if value is not None:
                    key.append((name, _cache_tag(value), value))
                elif name in KEY_DEFAULTS:
                    key.append((name, "str", KEY_DEFAULTS[name]))
                elif strict:
                    raise _bad_item(path, index, "associative list with keys has an element that "
                                    f"omits key field {name!r} (and doesn't have default value)")
                else:
                    return f"i:{index}"
            try:
                return _key_pe(tuple(key))
            except TypeError:  # an unhashable key value: rare, not worth caching
                return "k:" + go_json({name: value for name, _, value in key})
        if strict:
            raise _bad_item(path, index, "associative list with keys may not have "
                            f"{type_name(item)} elements")
        return f"i:{index}"
    if shape.list_type == "set":
        if item is None or isinstance(item, dict | list):
            if strict:
                raise _bad_item(path, index, "associative list without keys has an element "
                                f"that's a {type_name(item)}")
            return f"i:{index}"
        return _value_pe(_cache_tag(item), item)
    return f"i:{index}"


def _cache_tag(value: Any) -> str:
    # Not verbatim: the old cache keys held only the type name, so -0.0 and 0.0
    # (== and the same hash) shared an entry and got the spelling of whichever
    # this process met first (a test-order-dependent reference).
    t = type(value)
    if t is float and value == 0.0 and math.copysign(1.0, value) < 0:
        return "-float"
    return t.__name__


# Type names (and the sign of a zero) are part of the cache keys: `true` and `1` hash alike.
@functools.lru_cache(maxsize=65536)
def _key_pe(key: tuple[tuple[str, str, Any], ...]) -> str:
    return "k:" + go_json({name: value for name, _, value in key})


@functools.lru_cache(maxsize=65536)
def _value_pe(_type: str, value: Any) -> str:
    return "v:" + go_json(value)


def _bad_item(path: Path, index: int, message: str) -> ApiError:
    where = path_string(path) + f"[{index}]"
    return ApiError(422, f"{where}: {message}", "Invalid",
                    causes=[{"type": "FieldValueInvalid", "field": where, "message": message}])


def is_object_shape(shape: Shape, value: Any) -> bool:
    """Does `value` get walked key by key (not a leaf)?"""
    if shape.kind in (STRUCT, MAP):
        return True
    return shape.kind == UNTYPED and isinstance(value, dict)


def to_field_set(obj: Any, shape: Shape, *, strict: bool = False) -> FieldSet:
    """Every path set in `obj` (upstream ToFieldSet)."""
    out: FieldSet = set()
    _to_set(obj, shape, (), out, strict)
    out.discard(())
    return out


def _to_set(value: Any, shape: Shape, path: Path, out: FieldSet, strict: bool) -> None:
    if shape.kind == LIST:
        if shape.list_type == "atomic" or not isinstance(value, list):
            if value is not None or shape.list_type == "atomic":
                out.add(path)
            return
        item_shape = _item(shape)
        for i, item in enumerate(value):
            p = (*path, item_pe(shape, item, i, path, strict))
            if strict and p in out:
                raise _bad_item(path, i, f"duplicate entries for key {path_string(p[-1:])}")
            _to_set(item, item_shape, p, out, strict)
            out.add(p)
        return
    if is_object_shape(shape, value):
        if shape.atomic or not isinstance(value, dict):
            if value is not None or shape.atomic:
                out.add(path)
            return
        for k, v in value.items():
            p = (*path, fpe(k))
            _to_set(v, _field(shape, k), p, out, strict)
            if not _is_declared(shape, k):
                out.add(p)
        return
    out.add(path)


@dataclass
class Comparison:
    added: FieldSet = field(default_factory=set)
    modified: FieldSet = field(default_factory=set)
    removed: FieldSet = field(default_factory=set)


def compare(old: Any, new: Any, shape: Shape) -> Comparison:
    """What changed from `old` to `new`, path by path (upstream Compare).

    Leaves are added, modified or removed. An object or list item that
    appears or disappears as a whole is also reported by its own path; for
    struct fields that holds only for map-typed values (labels), since Go's
    typed objects always carry their non-pointer structs on both sides.
    """
    cmp = Comparison()
    _compare(old, new, shape, (), cmp, False)
    for s in (cmp.added, cmp.modified, cmp.removed):
        s.discard(())
    return cmp


def _empty(value: Any) -> bool:
    return value is _MISSING or value is None or (isinstance(value, dict | list) and not value)


def _list_like(value: Any) -> bool:
    return value is _MISSING or value is None or isinstance(value, list)


def _dict_like(value: Any) -> bool:
    return value is _MISSING or value is None or isinstance(value, dict)


def _compare(lhs: Any, rhs: Any, shape: Shape, path: Path, cmp: Comparison, item: bool) -> None:
    # Most of an object is unchanged on a write; `==` runs in C.
    if lhs is rhs or (lhs == rhs and json_equal(lhs, rhs)):
        return
    both_empty = _empty(lhs) and _empty(rhs)
    if shape.kind == LIST:
        if (shape.list_type != "atomic" and not both_empty
                and _list_like(lhs) and _list_like(rhs)):
            _compare_list(lhs, rhs, shape, path, cmp)
            _post(lhs, rhs, path, cmp, item)
            return
    elif (is_object_shape(shape, rhs if isinstance(rhs, dict) else lhs) and not shape.atomic
          and not both_empty and _dict_like(lhs) and _dict_like(rhs)):
        left = lhs if isinstance(lhs, dict) else {}
        right = rhs if isinstance(rhs, dict) else {}
        entries = shape.kind != STRUCT
        for k, lv in left.items():
            _compare(lv, right.get(k, _MISSING), _field(shape, k), (*path, fpe(k)), cmp,
                     entries or not _is_declared(shape, k))
        for k, rv in right.items():
            if k not in left:
                _compare(_MISSING, rv, _field(shape, k), (*path, fpe(k)), cmp,
                         entries or not _is_declared(shape, k))
        _post(lhs, rhs, path, cmp, item or entries)
        return
    # A leaf: a scalar, an atomic value, or empty on both sides.
    if lhs is _MISSING:
        cmp.added.add(path)
    elif rhs is _MISSING:
        cmp.removed.add(path)
    elif not json_equal(lhs, rhs):
        cmp.modified.add(path)


def _post(lhs: Any, rhs: Any, path: Path, cmp: Comparison, report: bool) -> None:
    if not report:
        return
    if lhs is _MISSING:
        cmp.added.add(path)
    elif rhs is _MISSING:
        cmp.removed.add(path)


def index_items(items: Any, shape: Shape, path: Path, strict: bool = False,
                ) -> tuple[list[str], dict[str, Any]]:
    """The path elements of a list's items in order, and the first item for each."""
    order: list[str] = []
    by_pe: dict[str, Any] = {}
    if isinstance(items, list):
        for i, item in enumerate(items):
            pe = item_pe(shape, item, i, path, strict)
            if pe not in by_pe:
                by_pe[pe] = item
                order.append(pe)
    return order, by_pe


def _compare_list(lhs: Any, rhs: Any, shape: Shape, path: Path, cmp: Comparison) -> None:
    item_shape = _item(shape)
    l_order, l_items = index_items(lhs, shape, path)
    r_order, r_items = index_items(rhs, shape, path)
    for pe in l_order:
        _compare(l_items[pe], r_items.get(pe, _MISSING), item_shape, (*path, pe), cmp, True)
    for pe in r_order:
        if pe not in l_items:
            _compare(_MISSING, r_items[pe], item_shape, (*path, pe), cmp, True)


# FieldsV1 encoding ----------------------------------------------------------

_RANK = {"f": 0, "k": 1, "v": 2, "i": 3}


def _pe_sort_key(pe: str) -> tuple[int, str]:
    return (_RANK.get(pe[:1], 4), pe[2:])


def encode(fields: Iterable[Path]) -> dict[str, Any]:
    """A field set as a FieldsV1 object."""
    trie: dict[str, Any] = {}
    for path in fields:
        node = trie
        for pe in path:
            node = node.setdefault(pe, {})
        node["."] = True
    return _emit(trie)


def _emit(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    children = [k for k in node if k != "."]
    if "." in node and children:
        out["."] = {}
    for k in sorted(children, key=_pe_sort_key):
        out[k] = _emit(node[k])
    return out


def decode(fields_v1: Any) -> FieldSet:
    """A FieldsV1 object as a field set; unknown element kinds are skipped as upstream does.

    Raises ValueError for something that is not FieldsV1 at all.
    """
    if not isinstance(fields_v1, dict):
        raise ValueError(f"fieldsV1 must be an object, not {type_name(fields_v1)}")
    out: FieldSet = set()
    _decode(fields_v1, (), out)
    return out


def _decode(node: dict[str, Any], path: Path, out: FieldSet) -> None:
    for key, child in node.items():
        if key == ".":
            if path:
                out.add(path)
            continue
        if not isinstance(child, dict):
            raise ValueError(f"fieldsV1 entry {key!r} must map to an object")
        pe = canonical_pe(key)
        if pe is None:
            continue
        p = (*path, pe)
        if child:
            _decode(child, p, out)
        else:
            out.add(p)


@functools.lru_cache(maxsize=65536)
def canonical_pe(text: str) -> str | None:
    """The one spelling of a path element (keys sorted, compact JSON); None if unknown."""
    kind, sep, rest = text.partition(":")
    if not sep:
        raise ValueError(f"path element {text!r} has no ':'")
    if kind == "f":
        return text
    if kind == "i":
        if not rest.isdigit():
            raise ValueError(f"path element {text!r}: index must be a number")
        return text
    if kind in ("k", "v"):
        try:
            value = json.loads(rest)
        except ValueError as e:
            raise ValueError(f"path element {text!r}: {e}") from None
        if kind == "k":
            if not isinstance(value, dict):
                raise ValueError(f"path element {text!r}: keys must be an object")
            value = {k: value[k] for k in sorted(value)}
        return f"{kind}:{go_json(value)}"
    return None


# Presentation and removal ---------------------------------------------------

def _value_string(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value) if not isinstance(value, dict | list) else go_json(value)


def path_string(path: Path) -> str:
    """A path as upstream prints it in conflicts: `.spec.containers[name="a"].image`."""
    parts = []
    for pe in path:
        kind, rest = pe[:1], pe[2:]
        if kind == "f":
            parts.append("." + rest)
        elif kind == "k":
            key = json.loads(rest)
            parts.append("[" + ",".join(f"{k}={_value_string(v)}" for k, v in key.items()) + "]")
        elif kind == "v":
            parts.append(f"[={_value_string(json.loads(rest))}]")
        else:
            parts.append(f"[{rest}]")
    return "".join(parts)


def sort_paths(paths: Iterable[Path]) -> list[Path]:
    return sorted(paths, key=lambda p: [_pe_sort_key(pe) for pe in p])


def remove_paths(obj: dict[str, Any], paths: Iterable[Path], shape: Shape) -> None:
    """Delete each path (a field, a list item, a set value) from `obj` in place.

    Objects left empty by a removal are removed too, up to (not including) the
    top level and list items.
    """
    doomed = set(paths)
    # Removing an item or object removes what is inside; the inner paths could
    # no longer find it (an item without its key fields has no key).
    for path in doomed:
        if not any(path[:i] in doomed for i in range(1, len(path))):
            _remove(obj, path, shape, ())


def _remove(node: Any, path: Path, shape: Shape, done: Path) -> bool:
    """Remove `path` below `node`; True if `node` became an empty object because of it."""
    pe = path[0]
    rest = path[1:]
    here = (*done, pe)
    if isinstance(node, dict) and pe.startswith("f:"):
        name = pe[2:]
        if name not in node:
            return False
        if not rest:
            del node[name]
            return not node
        if _remove(node[name], rest, _field(shape, name), here):
            del node[name]
            return not node
        return False
    if isinstance(node, list):
        for i, item in enumerate(node):
            if item_pe(shape, item, i, done, False) == pe:
                if not rest:
                    del node[i]
                else:
                    _remove(item, rest, _item(shape), here)
                return False
    return False

