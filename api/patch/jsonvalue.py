"""Small helpers over JSON values (dicts, lists, str, int, float, bool, None).

Comparing runs on every PATCH request, so it must be cheap; copying
(api.jsonutil.deep_copy) is shared with the rest of the server.
"""

from __future__ import annotations

import json
from typing import Any


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: unlike `==`, `true` is not `1`."""
    if a is b:
        return True
    ta, tb = type(a), type(b)
    if ta is dict:
        if tb is not dict or len(a) != len(b):
            return False
        return all(k in b and json_equal(v, b[k]) for k, v in a.items())
    if ta is list:
        if tb is not list or len(a) != len(b):
            return False
        return all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if ta is bool or tb is bool:
        return ta is tb and a == b
    if tb is dict or tb is list:
        return False
    return bool(a == b)


def scalar_key(value: Any) -> tuple[bool, Any]:
    """A hashable identity for a scalar in which `true` and `1` differ."""
    return (type(value) is bool, value)


def go_json(value: Any) -> str:
    """Compact JSON as Go's encoding/json writes it (FieldsV1 keys must match byte for byte)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=False)
    # Go escapes these HTML-significant characters; in compact JSON they can
    # only occur inside strings, so a plain replace is exact.
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def type_name(value: Any) -> str:
    """The JSON type of a value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
