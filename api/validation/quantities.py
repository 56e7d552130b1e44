"""Quantities written as JSON numbers become canonical strings, as upstream stores them.

`cpu: 1` in a manifest is a number in JSON; upstream's Quantity type reads it
and always writes a string (`"1"`, `"500m"`), and clients rely on that (the
official Python client refuses a number where its model says string). Which
fields are quantities comes from the schemas: for each kind, the paths that
lead to a Quantity are found once, so a write walks only those paths.
"""

from __future__ import annotations

import functools
from typing import Any

from timonel.api import schemas
from timonel.api.quantity import QuantityError, canonical_quantity

QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
# A path step: a property name, ITEMS (every element of a list) or VALUES
# (every value of a map).
ITEMS, VALUES = 0, 1
Step = str | int
# Deeper than any built-in kind's quantity; also what stops recursive schemas.
MAX_DEPTH = 16


def _ref_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else ""


@functools.cache
def quantity_paths(definition: str) -> tuple[tuple[Step, ...], ...]:
    """Every path from an object of `definition` down to a Quantity."""
    out: list[tuple[Step, ...]] = []

    def walk(schema: dict[str, Any], path: tuple[Step, ...], seen: frozenset[str]) -> None:
        if len(path) > MAX_DEPTH:
            return
        name = _ref_name(schema)
        if name == QUANTITY:
            out.append(path)
            return
        if name:
            if name in seen:
                return
            seen = seen | {name}
            schema = schemas.definition(name)
        for alt in schema.get("allOf") or []:
            if isinstance(alt, dict):
                walk(alt, path, seen)
        for prop, sub in (schema.get("properties") or {}).items():
            if isinstance(sub, dict):
                walk(sub, (*path, prop), seen)
        items = schema.get("items")
        if isinstance(items, dict):
            walk(items, (*path, ITEMS), seen)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, (*path, VALUES), seen)

    walk(schemas.definition(definition), (), frozenset({definition}))
    return tuple(out)


def normalize_quantities(obj: dict[str, Any], group: str, version: str, kind: str) -> None:
    """Rewrite, in place, every Quantity given as a number as its canonical string.

    Values that are not valid quantities are left for validation to refuse."""
    name = schemas.definition_name(group, version, kind)
    if name is None:
        return
    for path in quantity_paths(name):
        _apply(obj, path, 0)


def _apply(node: Any, path: tuple[Step, ...], i: int) -> None:
    step = path[i]
    last = i == len(path) - 1
    if step == ITEMS:
        if isinstance(node, list):
            for j, v in enumerate(node):
                if last:
                    node[j] = _canonical(v)
                else:
                    _apply(v, path, i + 1)
        return
    if not isinstance(node, dict):
        return
    keys = list(node) if step == VALUES else ([step] if step in node else [])
    for k in keys:
        if last:
            node[k] = _canonical(node[k])
        else:
            _apply(node[k], path, i + 1)


def _canonical(v: Any) -> Any:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return v
    try:
        return canonical_quantity(v)
    except QuantityError:
        return v
