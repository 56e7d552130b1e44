"""Merging an applied configuration into the live object (server-side apply).

Upstream (structured-merge-diff) rules: objects merge key by key, list maps
merge their items by key (`x-kubernetes-list-map-keys`), sets are unions,
atomic lists and atomic objects and scalars are replaced by the applied value.
Items keep the live order, with the applied items in the applied order.

An explicit `null` in the configuration removes a scalar or atomic value and
leaves an object or a granular list as it is (upstream merges a null list or
map as empty).
"""

from __future__ import annotations

from typing import Any

from timonel.api.jsonutil import deep_copy
from timonel.api.patch.fieldsets import Path, index_items
from timonel.api.patch.shapes import Shape

_MISSING: Any = object()


def merge_applied(live: dict[str, Any], applied: dict[str, Any], shape: Shape) -> dict[str, Any]:
    """Merge `applied` into `live`, which the caller owns and which is changed in place."""
    out = _merge(live, applied, shape, ())
    return out if isinstance(out, dict) else {}


def _merge(lhs: Any, rhs: Any, shape: Shape, path: Path) -> Any:
    """The merged value; `lhs` may be reused, `rhs` is never shared into the result."""
    if rhs is None:
        if isinstance(lhs, list) and shape.granular_list:
            return lhs
        if isinstance(lhs, dict) and shape.granular_object:
            return lhs
        return _MISSING
    if isinstance(rhs, list):
        if not shape.granular_list:
            return deep_copy(rhs)
        return _merge_list(lhs if isinstance(lhs, list) else [], rhs, shape, path)
    if isinstance(rhs, dict):
        if not shape.granular_object:
            return deep_copy(rhs)
        target = lhs if isinstance(lhs, dict) else {}
        child = shape.child
        for key, value in rhs.items():
            if value is not None and not isinstance(value, dict | list):
                target[key] = value  # a scalar replaces whatever was there
                continue
            merged = _merge(target.get(key, _MISSING), value, child(key)[0], (*path, "f:" + key))
            if merged is _MISSING:
                target.pop(key, None)
            else:
                target[key] = merged
        return target
    return rhs


def _merge_list(lhs: list[Any], rhs: list[Any], shape: Shape, path: Path) -> list[Any]:
    item_shape = shape.item()
    l_order, l_items = index_items(lhs, shape, path)
    r_order, r_items = index_items(rhs, shape, path, strict=True)

    def merged(pe: str) -> Any:
        return _merge(l_items.get(pe, _MISSING), r_items[pe], item_shape, (*path, pe))

    shared = [pe for pe in r_order if pe in l_items]
    si = 0
    out: list[Any] = []
    li = ri = 0
    while li < len(l_order) or ri < len(r_order):
        if li < len(l_order) and ri < len(r_order):
            pe = l_order[li]
            if pe == r_order[ri]:
                out.append(merged(pe))
                li += 1
                ri += 1
                si += 1
                continue
            if pe in r_items and si < len(shared) and shared[si] != pe:
                li += 1  # a shared item, placed where the applied list has it
                continue
        if li < len(l_order) and l_order[li] not in r_items:
            out.append(l_items[l_order[li]])
            li += 1
            continue
        if ri < len(r_order):
            pe = r_order[ri]
            out.append(merged(pe))
            ri += 1
            if si < len(shared) and shared[si] == pe:
                si += 1
            continue
        li += 1  # a shared item already placed
    return [x for x in out if x is not _MISSING]
