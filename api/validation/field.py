"""Field paths and validation causes, worded like k8s.io/apimachinery's field errors.

A cause is the dict kube-apiserver puts in `Status.details.causes`:
`{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers[0].name"}`
(the JSON key is `reason`, as in upstream's StatusCause). kubectl prints
`* <field>: <message>` for each, so the message carries no field name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

Cause = dict[str, str]

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
DUPLICATE = "FieldValueDuplicate"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
NOT_FOUND = "FieldValueNotFound"
TYPE_INVALID = "FieldValueTypeInvalid"


def child(path: str, *names: str) -> str:
    for name in names:
        path = f"{path}.{name}" if path else name
    return path


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def key(path: str, k: str) -> str:
    return f"{path}[{k}]"


def render(value: Any) -> str:
    """A bad value as upstream prints it: strings quoted, scalars bare, the rest as JSON."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def cause(reason: str, path: str, message: str) -> Cause:
    return {"reason": reason, "message": message, "field": path}


def _with(head: str, detail: str) -> str:
    return f"{head}: {detail}" if detail else head


def required(path: str, detail: str = "") -> Cause:
    return cause(REQUIRED, path, _with("Required value", detail))


def invalid(path: str, value: Any, detail: str = "") -> Cause:
    return cause(INVALID, path, _with(f"Invalid value: {render(value)}", detail))


def not_supported(path: str, value: Any, valid: Iterable[str]) -> Cause:
    quoted = ", ".join(json.dumps(v) for v in valid)
    return cause(NOT_SUPPORTED, path,
                 _with(f"Unsupported value: {render(value)}",
                       f"supported values: {quoted}" if quoted else ""))


def duplicate(path: str, value: Any) -> Cause:
    return cause(DUPLICATE, path, f"Duplicate value: {render(value)}")


def forbidden(path: str, detail: str) -> Cause:
    return cause(FORBIDDEN, path, _with("Forbidden", detail))


def too_long(path: str, max_bytes: int) -> Cause:
    unit = "byte" if max_bytes == 1 else "bytes"
    return cause(TOO_LONG, path, f"Too long: may not be more than {max_bytes} {unit}")


def not_found(path: str, value: Any, detail: str = "") -> Cause:
    return cause(NOT_FOUND, path, _with(f"Not found: {render(value)}", detail))


def type_invalid(path: str, detail: str) -> Cause:
    """A value the upstream JSON decoder refuses; `detail` is the decoder's own message."""
    return cause(TYPE_INVALID, path, detail)


def dedupe(causes: Iterable[Cause]) -> list[Cause]:
    """Drop repeats (schema and semantic checks may both see a missing field)."""
    seen: set[tuple[str, str]] = set()
    out: list[Cause] = []
    for c in causes:
        k = (c.get("field", ""), c.get("message", ""))
        if k not in seen:
            seen.add(k)
            out.append(c)
    return out


# Plain-dict access that tolerates nulls and wrong shapes: schema checks run
# first, but JSON null is valid almost everywhere and means "not set".
def d(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def lst(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def s(v: Any) -> str:
    return v if isinstance(v, str) else ""
