"""Merging an applied configuration as it was before the fast managedFields paths
(test-only reference for test_patch_managed_fields_differential).
"""

from __future__ import annotations

from typing import Any

from reference_fieldsets import Path, _field, _item, fpe, index_items, is_object_shape

from timonel.api.jsonutil import deep_copy
from timonel.api.patch.shapes import LIST, Shape

_MISSING: Any = object()


def merge_applied(live: dict[str, Any], applied: dict[str, Any], shape: Shape) -> dict[str, Any]:
    """Merge `applied` into `live`, which the caller owns and which is changed in place."""
    out = _merge(live, applied, shape, ())
    return out if isinstance(out, dict) else {}


def _granular_list(shape: Shape) -> bool:
    return shape.kind == LIST and shape.list_type != "atomic"


def _merge(lhs: Any, rhs: Any, shape: Shape, path: Path) -> Any:
    """The merged value; `lhs` may be reused, `rhs` is never shared into the result."""
    if rhs is None:
        if isinstance(lhs, list) and _granular_list(shape):
            return lhs
        if isinstance(lhs, dict) and is_object_shape(shape, lhs) and not shape.atomic:
            return lhs
        return _MISSING
    if isinstance(rhs, list):
        if not _granular_list(shape):
            return deep_copy(rhs)
        return _merge_list(lhs if isinstance(lhs, list) else [], rhs, shape, path)
    if isinstance(rhs, dict):
        if shape.atomic or not is_object_shape(shape, rhs):
            return deep_copy(rhs)
        target = lhs if isinstance(lhs, dict) else {}
        for key, value in rhs.items():
            merged = _merge(target.get(key, _MISSING), value, _field(shape, key), (*path, fpe(key)))
            if merged is _MISSING:
                target.pop(key, None)
            else:
                target[key] = merged
        return target
    return rhs


def _merge_list(lhs: list[Any], rhs: list[Any], shape: Shape, path: Path) -> list[Any]:
    item_shape = _item(shape)
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
