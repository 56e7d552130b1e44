"""Strategic merge patch, `application/strategic-merge-patch+json`.

What kubectl sends on client-side `apply`, `edit`, `patch` (the default type)
and `rollout restart`. The upstream OpenAPI definitions say, per field, how to
merge (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`):

- objects merge key by key, `null` deletes a key;
- lists with strategy `merge` and a merge key merge their items by that key
  (`containers` by `name`), lists of scalars with strategy `merge` are unions
  (`finalizers`), every other list is replaced;
- an object with strategy `replace` is replaced.

Directives, as upstream (apimachinery strategicpatch) understands them:
- `$patch: replace` (object: replace it; list item: replace the whole list),
  `$patch: delete` (object: empty it; list item: delete the item with that
  merge key), `$patch: merge` (the default; upstream rejects it in lists, we
  accept it);
- `$retainKeys: [..]`: drop the object's keys not listed (Deployment
  `strategy`, volume sources);
- `$deleteFromPrimitiveList/<field>: [..]`: remove these scalars from a list;
- `$setElementOrder/<field>: [..]`: the final order of a merged list, which
  client-side apply sends with every changed list. Items the server has but
  the order list lacks keep their place relative to the others.

Patch format errors are 400 BadRequest, lists of lists and patch keys outside
`$retainKeys` are 422 Invalid, as upstream. Messages say where in the object.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Any

from timonel.api.errors import ApiError
from timonel.api.jsonutil import deep_copy
from timonel.api.patch.jsonvalue import go_json, json_equal, scalar_key, type_name
from timonel.api.patch.shapes import Shape, root_shape

log = logging.getLogger(__name__)

DIRECTIVE = "$patch"
RETAIN_KEYS = "$retainKeys"
DELETE_PREFIX = "$deleteFromPrimitiveList/"
ORDER_PREFIX = "$setElementOrder/"

_MISSING: Any = object()


def strategic_merge_patch(original: dict[str, Any], patch: dict[str, Any],
                          definition: str | None) -> dict[str, Any]:
    """Apply a strategic merge patch to an object of OpenAPI definition `definition`.

    `definition` is e.g. "io.k8s.api.core.v1.Pod"; an unknown or missing one
    means no field has a strategy (objects merge, lists are replaced), which is
    merge-patch semantics plus the directives. The inputs are not modified; the
    result shares nothing with them.
    """
    if not isinstance(patch, dict):
        raise ApiError(400, f"a strategic merge patch must be a JSON object, not {type_name(patch)}",
                       "BadRequest")
    result = deep_copy(original) if isinstance(original, dict) else {}
    return _merge_map(result, patch, root_shape(definition), "")


def _where(path: str) -> str:
    return f" at {path}" if path else " at the top level"


def _bad(message: str, path: str) -> ApiError:
    return ApiError(400, f"{message}{_where(path)}", "BadRequest")


def _unprocessable(message: str, path: str) -> ApiError:
    field = path or "patch"
    return ApiError(422, f"{message}{_where(path)}", "Invalid",
                    causes=[{"type": "FieldValueInvalid", "field": field, "message": message}])


def _merge_map(orig: dict[str, Any], patch: dict[str, Any], shape: Shape,
               path: str) -> dict[str, Any]:
    """Merge `patch` into `orig`, which the caller owns and which may be changed."""
    directive = patch.get(DIRECTIVE, _MISSING)
    if directive is not _MISSING:
        if directive == "replace":
            orig = {}
        elif directive == "delete":
            return {}
        elif directive != "merge":
            raise _bad(f"unknown patch type: {directive!r} in map (use replace, delete or merge)",
                       path)
    retain = patch.get(RETAIN_KEYS, _MISSING)
    if retain is not _MISSING:
        _retain_keys(orig, patch, retain, path)

    ordered: set[str] = set()
    for key, value in patch.items():
        if key.startswith(ORDER_PREFIX):
            name = _set_element_order(orig, patch, key, value, shape, path)
            if name is not None:
                ordered.add(name)

    for key, value in patch.items():
        if key.startswith("$"):
            if key.startswith(DELETE_PREFIX):
                _delete_from_primitive_list(orig, key, value, path)
            elif key not in (DIRECTIVE, RETAIN_KEYS) and not key.startswith(ORDER_PREFIX):
                raise _bad(f"unknown strategic merge patch directive {key!r} (known: $patch, "
                           f"$retainKeys, $deleteFromPrimitiveList/<field>, "
                           f"$setElementOrder/<field>)", path)
            continue
        if key in ordered:
            continue
        sub = f"{path}.{key}" if path else key
        if value is None:
            orig.pop(key, None)
            continue
        child = shape.field(key)
        current = orig.get(key)
        if isinstance(value, dict):
            if isinstance(current, dict) and not child.strategy_replace:
                orig[key] = _merge_map(current, value, child, sub)
            else:
                orig[key] = _merge_map({}, value, child, sub)
        elif isinstance(value, list):
            if isinstance(current, list):
                orig[key] = _merge_list_field(current, value, child, sub)
            else:
                orig[key] = _fresh_list(value, child, sub)
        else:
            orig[key] = value
    return orig


def _merge_list_field(current: list[Any], patch: list[Any], shape: Shape, path: str) -> list[Any]:
    if shape.strategy_merge:
        return _merge_list(current, patch, shape, path)
    return _fresh_list(patch, shape, path)


def _fresh_list(patch: list[Any], shape: Shape, path: str) -> list[Any]:
    """A patch list that replaces whatever was there (or lands where nothing was)."""
    if shape.strategy_merge:
        return _merge_list([], patch, shape, path)
    item = shape.item()
    out: list[Any] = []
    for i, value in enumerate(patch):
        if isinstance(value, dict):
            if value.get(DIRECTIVE) in ("replace", "delete"):
                continue  # meaningless in a list that is replaced anyway
            out.append(_merge_map({}, value, item, f"{path}[{i}]"))
        elif isinstance(value, list):
            out.append(deep_copy(value))
        else:
            out.append(value)
    return out


def _key_id(value: Any) -> Hashable:
    if isinstance(value, dict | list):
        return ("json", go_json(value))
    return scalar_key(value)


def _element_kind(items: list[Any], more: list[Any], path: str) -> str:
    kind = ""
    for source in (items, more):
        for value in source:
            k = "map" if isinstance(value, dict) else "list" if isinstance(value, list) else "scalar"
            if k == "list":
                raise _unprocessable("lists of lists are not supported", path)
            if not kind:
                kind = k
            elif kind != k:
                raise _bad("list element types are not identical: objects and scalars are mixed",
                           path)
    return kind


def _merge_list(orig: list[Any], patch: list[Any], shape: Shape, path: str,
                ) -> list[Any]:
    """Merge a patch list into `orig` (owned by the caller) for strategy `merge`."""
    if not orig and not patch:
        return orig
    kind = _element_kind(orig, patch, path)
    if kind == "scalar":
        merged: list[Any] = []
        seen: set[Hashable] = set()
        for value in orig + patch:
            k: Hashable = scalar_key(value)
            if k not in seen:
                seen.add(k)
                merged.append(value)
        return _normalize(merged, patch, orig, scalar_key)

    mk = shape.merge_key
    if not mk:
        raise _bad("cannot merge lists of objects without a merge key", path)
    server = orig
    items: list[dict[str, Any]] = []
    replace = False
    for value in patch:
        directive = value.get(DIRECTIVE, _MISSING)
        if directive is _MISSING or directive == "merge":
            items.append(value)
        elif directive == "delete":
            if mk not in value:
                raise _bad(f"map: {go_json(value)} does not contain declared merge key: {mk}",
                           path)
            gone = value[mk]
            server = [x for x in server if not (mk in x and json_equal(x[mk], gone))]
        elif directive == "replace":
            replace = True
        else:
            raise _bad(f"unknown patch type: {directive!r} in list item {go_json(value)} "
                       f"(use replace, delete or merge)", path)

    item_shape = shape.item()
    if replace:
        return [_merge_map({}, v, item_shape, f"{path}[{i}]") for i, v in enumerate(items)]

    def key_of(x: dict[str, Any]) -> Hashable:
        return _key_id(x.get(mk))

    merged = list(server)
    index: dict[Hashable, int] = {}
    for i, x in enumerate(merged):
        if mk in x:
            index.setdefault(key_of(x), i)
    for value in items:
        if mk not in value:
            raise _bad(f"map: {go_json(value)} does not contain declared merge key: {mk}", path)
        k = key_of(value)
        sub = f"{path}[{mk}={go_json(value[mk])}]"
        pos = index.get(k)
        if pos is not None:
            merged[pos] = _merge_map(merged[pos], value, item_shape, sub)
        else:
            index[k] = len(merged)
            merged.append(_merge_map({}, value, item_shape, sub))
    return _normalize(merged, items, server, key_of)


def _normalize(merged: list[Any], patch_order: list[Any], server_order: list[Any],
               key: Callable[[Any], Hashable]) -> list[Any]:
    """Order a merged list as upstream does.

    Items named in the patch follow the patch's order; the server's other
    items keep their order and are slotted in before the first patch item the
    server had after them.
    """
    patch_pos: dict[Hashable, int] = {}
    for i, x in enumerate(patch_order):
        patch_pos.setdefault(key(x), i)
    server_pos: dict[Hashable, int] = {}
    for i, x in enumerate(server_order):
        server_pos.setdefault(key(x), i)
    keyed = [(key(x), x) for x in merged]
    in_patch = [kx for kx in keyed if kx[0] in patch_pos]
    server_only = [kx for kx in keyed if kx[0] not in patch_pos]
    in_patch.sort(key=lambda kx: patch_pos[kx[0]])
    end = len(server_pos)
    server_only.sort(key=lambda kx: server_pos.get(kx[0], end))

    out: list[Any] = []
    i = j = 0
    while i < len(server_only) and j < len(in_patch):
        left = server_pos.get(server_only[i][0])
        right = server_pos.get(in_patch[j][0])
        if left is not None and right is not None and left < right:
            out.append(server_only[i][1])
            i += 1
        else:
            out.append(in_patch[j][1])
            j += 1
    out.extend(x for _, x in server_only[i:])
    out.extend(x for _, x in in_patch[j:])
    return out


def _order_key(mk: str, path: str) -> Callable[[Any], Hashable]:
    def key(x: Any) -> Hashable:
        if mk and isinstance(x, dict):
            if mk not in x:
                raise _bad(f"map: {go_json(x)} does not contain declared merge key: {mk}", path)
            return _key_id(x[mk])
        return _key_id(x)
    return key


def _set_element_order(orig: dict[str, Any], patch: dict[str, Any], key: str, order: Any,
                       shape: Shape, path: str) -> str | None:
    """Merge the list named by `$setElementOrder/<name>` and order it; returns the name."""
    name = key[len(ORDER_PREFIX):]
    sub = f"{path}.{name}" if path else name
    if not name or not isinstance(order, list):
        raise _bad(f"invalid patch format of setElementOrder list: {key!r} needs a field name "
                   f"and a list value", path)
    current = orig.get(name, _MISSING)
    wanted = patch.get(name, _MISSING)
    if wanted is None:
        return None  # the list itself is deleted; the order is moot
    if current is None:
        current = _MISSING
    if current is not _MISSING and not isinstance(current, list):
        raise _bad(f"{key!r} orders a field that is a {type_name(current)}, not a list", path)
    if wanted is not _MISSING and not isinstance(wanted, list):
        raise _bad(f"{key!r} orders a field whose patch value is a {type_name(wanted)}, not a "
                   f"list", path)
    child = shape.field(name)
    key_of = _order_key(child.merge_key, sub)
    order_keys = [key_of(x) for x in order]
    if wanted is not _MISSING:
        _check_order(wanted, order_keys, key_of, key, sub)
    if current is _MISSING and wanted is _MISSING:
        return name
    if wanted is _MISSING:
        merged = current
    elif current is _MISSING:
        merged = _fresh_list(wanted, child, sub)
    else:
        merged = _merge_list_field(current, wanted, child, sub)
    orig[name] = _normalize(merged, order, current if current is not _MISSING else [], key_of)
    return name


def _check_order(items: list[Any], order_keys: list[Hashable], key_of: Callable[[Any], Hashable],
                 directive: str, path: str) -> None:
    """The patch list must name its items in the order of the order list (upstream rule)."""
    pos = 0
    for value in items:
        if isinstance(value, dict) and DIRECTIVE in value:
            continue
        k = key_of(value)
        while pos < len(order_keys) and order_keys[pos] != k:
            pos += 1
        if pos == len(order_keys):
            raise _bad(f"invalid patch format of setElementOrder list: item {go_json(value)} is "
                       f"missing from {directive} or out of its order", path)
        pos += 1


def _retain_keys(orig: dict[str, Any], patch: dict[str, Any], retain: Any, path: str) -> None:
    if retain is None:
        retain = []
    if not isinstance(retain, list):
        raise _bad("invalid patch format of retainKeys: $retainKeys must be a list of field "
                   "names", path)
    keep = {k for k in retain if isinstance(k, str)}
    for k, v in patch.items():
        if v is None or k.startswith("$"):
            continue
        if k not in keep:
            raise _unprocessable(f"patch content doesn't match retainKeys list: {k!r} is set but "
                                 f"not retained", path)
    for k in [k for k in orig if k not in keep]:
        del orig[k]


def _delete_from_primitive_list(orig: dict[str, Any], key: str, value: Any, path: str) -> None:
    name = key[len(DELETE_PREFIX):]
    if not name or not isinstance(value, list):
        raise _bad(f"invalid patch format of primitive list: {key!r} needs a field name and a "
                   f"list of values", path)
    if any(isinstance(v, dict | list) for v in value):
        raise _bad(f"invalid patch format of primitive list: {key!r} may list only scalars",
                   path)
    current = orig.get(name)
    if not isinstance(current, list):
        return
    drop = {scalar_key(v) for v in value}
    orig[name] = [x for x in current
                  if isinstance(x, dict | list) or scalar_key(x) not in drop]
