"""Sets of field paths in the upstream `FieldsV1` format (structured-merge-diff).

A path is a tuple of path elements, each a string exactly as FieldsV1 spells it:
`f:<field or map key>`, `k:{"name":"x"}` (a list-map item by its keys, keys
sorted, compact Go JSON), `v:"x"` (a set item by value), `i:3` (by index).
A field set is a Python `set` of paths. Which paths an object "has" follows
upstream's ToFieldSet: every scalar and every atomic value is a leaf path, a
list item's own path is in the set next to the paths below it (FieldsV1 `.`),
and so is a map key (labels, annotations, untyped objects); a struct field that
holds an object is represented only by what is below it.
"""

from __future__ import annotations

import functools
import json
import logging
import marshal
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from timonel.api.errors import ApiError
from timonel.api.patch.jsonvalue import go_json, json_equal, type_name
from timonel.api.patch.shapes import LIST, MAP, STRUCT, UNTYPED, Shape

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


def item_pe(shape: Shape, item: Any, index: int, path: Path, strict: bool) -> str:
    """The path element of item `index` of a list of shape `shape`.

    strict (an applied configuration): malformed items are 422 errors, as
    upstream. Otherwise (stored objects) they fall back to their index so that
    bookkeeping never fails a write.
    """
    if shape.list_type == "map":
        if isinstance(item, dict):
            names = shape.sorted_keys()
            if len(names) == 1:  # most list maps: containers, env, volumes, conditions
                value = item.get(names[0])
                if value is not None:
                    try:
                        return _one_key_pe(names[0], _cache_tag(value), value)
                    except TypeError:
                        pass  # an unhashable key value: below
            key: list[tuple[str, str, Any]] = []
            for name in names:
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
    """What tells apart, in the caches below, values that are `==` and hash alike
    but are written differently: `true`/`1`/`1.0` by their type, and `-0.0`/`0.0`
    by the sign (otherwise the spelling would be that of whichever the process
    met first)."""
    t = type(value)
    if t is float and value == 0.0 and math.copysign(1.0, value) < 0:
        return "-float"
    return t.__name__


# The _cache_tag of each value is part of the cache keys.
@functools.lru_cache(maxsize=65536)
def _key_pe(key: tuple[tuple[str, str, Any], ...]) -> str:
    return "k:" + go_json({name: value for name, _, value in key})


@functools.lru_cache(maxsize=65536)
def _one_key_pe(name: str, _type: str, value: Any) -> str:
    return "k:" + go_json({name: value})


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
        item_shape = shape.item()
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
        child = shape.child
        for k, v in value.items():
            p = (*path, "f:" + k)
            if v is not None and not isinstance(v, dict | list):
                out.add(p)  # a scalar is a leaf whatever its schema says
                continue
            s, entry = child(k)
            _to_set(v, s, p, out, strict)
            if entry:
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
    return value is None or (isinstance(value, dict | list) and not value)


def same(a: Any, b: Any) -> bool:
    """json_equal(a, b) for values already known to be `==` (only `true` vs `1` differs).

    Equal marshal bytes mean equal types all the way down, found in C; a
    mismatch (key order, 1 vs 1.0, a shared float) falls back to the exact walk.
    """
    ta = type(a)
    if ta is not type(b):
        return json_equal(a, b)
    if ta is dict or ta is list:
        try:
            if marshal.dumps(a, 0) == marshal.dumps(b, 0):
                return True
        except ValueError:
            pass
        return json_equal(a, b)
    return True


def _compare(lhs: Any, rhs: Any, shape: Shape, path: Path, cmp: Comparison, item: bool) -> None:
    # Most of an object is unchanged on a write: `==` and marshal run in C.
    if lhs is rhs or (lhs == rhs and same(lhs, rhs)):
        return
    _differ(lhs, rhs, shape, path, cmp, item)


def _differ(lhs: Any, rhs: Any, shape: Shape, path: Path, cmp: Comparison, item: bool) -> None:
    """_compare for values known to differ (as JSON); an added value never comes here."""
    if rhs is _MISSING:
        all_paths(lhs, shape, path, cmp.removed, item)
        return
    both_empty = _empty(lhs) and _empty(rhs)
    kind = shape.kind
    if kind == LIST:
        if (shape.list_type != "atomic" and not both_empty
                and (lhs is None or isinstance(lhs, list))
                and (rhs is None or isinstance(rhs, list))):
            _compare_list(lhs, rhs, shape, path, cmp)
            return
    elif (not shape.atomic and not both_empty
          and (kind in (STRUCT, MAP)
               or (kind == UNTYPED and (isinstance(rhs, dict) or isinstance(lhs, dict))))
          and (lhs is None or isinstance(lhs, dict)) and (rhs is None or isinstance(rhs, dict))):
        left = lhs if lhs is not None else {}
        right = rhs if rhs is not None else {}
        child = shape.child
        for k, lv in left.items():
            rv = right.get(k, _MISSING)
            if lv is rv:
                continue
            if lv == rv:
                t = type(lv)
                if (t is type(rv) and t is not dict and t is not list) or same(lv, rv):
                    continue
            elif (rv is not _MISSING and not isinstance(lv, dict | list)
                  and not isinstance(rv, dict | list)):
                cmp.modified.add((*path, "f:" + k))  # two different scalars: a leaf
                continue
            s, entry = child(k)
            _differ(lv, rv, s, (*path, "f:" + k), cmp, entry)
        for k, rv in right.items():
            if k not in left:
                s, entry = child(k)
                all_paths(rv, s, (*path, "f:" + k), cmp.added, entry)
        return
    # A leaf: a scalar, an atomic value, or empty on both sides.
    if not json_equal(lhs, rhs):
        cmp.modified.add(path)


def all_paths(value: Any, shape: Shape, path: Path, out: FieldSet, report: bool) -> None:
    """The paths of `value` appearing or disappearing as a whole (compare against nothing)."""
    if isinstance(value, list):
        if value and shape.granular_list:
            item_shape = shape.item()
            order, items = index_items(value, shape, path)
            for pe in order:
                all_paths(items[pe], item_shape, (*path, pe), out, True)
            if not report:
                return
    elif isinstance(value, dict) and value and shape.granular_object:
        child = shape.child
        for k, v in value.items():
            p = (*path, "f:" + k)
            if v and isinstance(v, dict | list):
                s, entry = child(k)
                all_paths(v, s, p, out, entry)
            else:
                out.add(p)
        if not report and shape.kind == STRUCT:
            return
    out.add(path)


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
    item_shape = shape.item()
    l_order, l_items = index_items(lhs, shape, path)
    r_order, r_items = index_items(rhs, shape, path)
    for pe in l_order:
        lv = l_items[pe]
        rv = r_items.get(pe, _MISSING)
        if lv is not rv:
            _compare(lv, rv, item_shape, (*path, pe), cmp, True)
    for pe in r_order:
        if pe not in l_items:
            all_paths(r_items[pe], item_shape, (*path, pe), cmp.added, True)


# FieldsV1 encoding ----------------------------------------------------------

_RANK = {"f": 0, "k": 1, "v": 2, "i": 3}


def pe_sort_key(pe: str) -> tuple[int, str]:
    """Where a path element sorts among its siblings in FieldsV1."""
    return (_RANK.get(pe[:1], 4), pe[2:])


def encode(fields: Iterable[Path]) -> dict[str, Any]:
    """A field set as a FieldsV1 object."""
    trie: dict[str, Any] = {}
    for path in fields:
        node = trie
        for pe in path:
            child = node.get(pe)
            if child is None:
                child = node[pe] = {}
            node = child
        node["."] = True
    return _emit(trie)


def _emit(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "." in node:
        if len(node) == 1:
            return out
        out["."] = {}
        keys = [k for k in node if k != "."]
    else:
        keys = list(node)
        if not keys:
            return out
    keys.sort()
    # Plain string order is the FieldsV1 order unless element kinds mix.
    if keys[0][:1] != keys[-1][:1]:
        keys.sort(key=pe_sort_key)
    for k in keys:
        child = node[k]
        out[k] = {} if len(child) == 1 and "." in child else _emit(child)
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
    return sorted(paths, key=lambda p: [pe_sort_key(pe) for pe in p])


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
        if _remove(node[name], rest, shape.field(name), here):
            del node[name]
            return not node
        return False
    if isinstance(node, list):
        for i, item in enumerate(node):
            if item_pe(shape, item, i, done, False) == pe:
                if not rest:
                    del node[i]
                else:
                    _remove(item, rest, shape.item(), here)
                return False
    return False

