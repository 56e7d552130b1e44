"""Schema validation against the upstream definitions, compiled once per kind.

`kubernetes_validate.validate()` re-reads its schema files on every call (about
10 ms a Pod), and a generic jsonschema walk costs about 0.35 ms a Pod; here
the strict `_definitions.json` is compiled into one closure per schema node
(schema_compiler.py) on a kind's first use, and a typical Pod validates in a
few hundredths of a millisecond. The compiled checks report the same errors,
in the same order, as jsonschema's Draft 2020-12 validator did.

What the schema finds is sorted the way kube-apiserver would report it:
- fields the schema does not know (`additionalProperties: false`) are
  *unknown fields*, reported as paths like `spec.containers[0].imagePullPolicyy`
  (400 `strict decoding error` under fieldValidation=Strict, warnings under Warn);
- wrong JSON types and unparsable quantities, timestamps, base64 or int32s are
  what upstream's JSON decoder refuses (400 `cannot be handled as a Pod: json:
  cannot unmarshal ...`); they come back as FieldValueTypeInvalid causes whose
  message is the decoder's wording;
- missing required fields are `Required value` causes (422).
JSON null means "not set" (Go decodes it to the zero value), so a null where a
type is expected is only an error when the field is required.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from timonel.api import schemas
from timonel.api.resources import ResourceType
from timonel.api.validation import field as f
from timonel.api.validation.schema_compiler import (
    ENUM,
    FORMAT,
    REQUIRED,
    TYPE,
    UNKNOWN,
    Check,
    Compiler,
    Finding,
)

log = logging.getLogger(__name__)

Path = tuple[str | int, ...]

QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_TIME_DEFS = ("io.k8s.apimachinery.pkg.apis.meta.v1.Time",
              "io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime")


@dataclass
class SchemaResult:
    causes: list[f.Cause] = field(default_factory=list)
    # (path of the object holding the field, field name), in document order.
    unknown: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def unknown_paths(self) -> list[str]:
        return [path_string((*p, k)) for p, k in self.unknown]


def path_string(path: Sequence[str | int]) -> str:
    out = ""
    for seg in path:
        out = f"{out}[{seg}]" if isinstance(seg, int) else f.child(out, seg)
    return out


# -- the compiled checks ----------------------------------------------------------------


@functools.cache
def _definitions() -> dict[str, Any]:
    """The strict definitions, with Quantity and IntOrString as format checks.

    Upstream's `oneOf` for these two rejects null (it matches both branches);
    a type list plus a format says what the decoder accepts.
    """
    doc = schemas.strict_definitions_document()
    defs = dict(doc["$defs"])
    defs[QUANTITY] = {"type": ["string", "number", "null"], "format": "k8s-quantity"}
    defs[INT_OR_STRING] = {"type": ["string", "integer", "null"], "format": "k8s-int-or-string"}
    return {**doc, "$defs": defs}


@functools.cache
def _compiler() -> Compiler:
    return Compiler(_definitions()["$defs"])


@functools.cache
def validator(group: str, version: str, kind: str) -> Check | None:
    """The compiled check of a kind, or None if upstream has no schema for it.

    `check(obj, (), findings)` appends what is wrong with `obj` to `findings`.
    """
    name = schemas.definition_name(group, version, kind)
    if name is None:
        return None
    log.debug("msg=compiling_schema gvk=%s/%s/%s definition=%s", group, version, kind, name)
    return _compiler().definition(name)


# -- walking the definitions along an instance path ----------------------------------


@dataclass
class _Spot:
    struct: str  # definition that declares the last named field ("" at the root)
    parent: dict[str, Any]  # resolved schema of the object holding the field
    schema: dict[str, Any]  # schema of the field itself (unresolved)
    # Struct field names along the path: what Go's decoder shows (no indexes, no map keys).
    fields: list[str]
    # The path as field errors print it: `spec.containers[0].resources.limits[cpu]`.
    pretty: str


def _resolve(schema: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    ref = schema.get("$ref")
    if not ref:
        return None, schema
    name = ref.rsplit("/", 1)[-1]
    return name, _definitions()["$defs"].get(name, {})


def _spot(root: str, path: Sequence[str | int]) -> _Spot:
    defs = _definitions()["$defs"]
    schema: dict[str, Any] = {"$ref": f"#/$defs/{root}"}
    struct, owner, parent = "", root, defs.get(root, {})
    fields: list[str] = []
    pretty = ""
    for seg in path:
        name, resolved = _resolve(schema)
        if name:
            owner = name
        parent = resolved
        if isinstance(seg, int):
            schema = resolved.get("items") or {}
            pretty = f.index(pretty, seg)
        elif seg in (resolved.get("properties") or {}):
            struct = owner
            fields.append(seg)
            schema = resolved["properties"][seg]
            pretty = f.child(pretty, seg)
        elif isinstance(resolved.get("additionalProperties"), dict):
            schema = resolved["additionalProperties"]
            pretty = f.key(pretty, seg)
        else:
            schema = {}
            pretty = f.child(pretty, seg)
    return _Spot(struct, parent, schema, fields, pretty)


def _go_type(schema: dict[str, Any]) -> str:
    """The Go type upstream decodes a field into, as its decoder names it."""
    name, resolved = _resolve(schema)
    if name == QUANTITY:
        return "resource.Quantity"
    if name == INT_OR_STRING:
        return "intstr.IntOrString"
    if name in _TIME_DEFS:
        return f"v1.{name.rsplit('.', 1)[-1]}"
    if name:
        parts = name.split(".")
        if "properties" in resolved or resolved.get("type") in ("object", ["object", "null"]):
            return f"{parts[-2]}.{parts[-1]}"
    types = resolved.get("type") or []
    types = [types] if isinstance(types, str) else [t for t in types if t != "null"]
    t = types[0] if types else "object"
    if t == "array":
        return "[]" + _go_type(resolved.get("items") or {})
    if t == "object":
        extra = resolved.get("additionalProperties")
        if isinstance(extra, dict):
            return "map[string]" + _go_type(extra)
        return "map[string]interface {}"
    if t == "integer":
        return {"int32": "int32", "int64": "int64"}.get(resolved.get("format", ""), "int")
    return {"number": "float64", "boolean": "bool"}.get(t, t)


def _json_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def _go_field(root: str, spot: _Spot) -> str:
    dotted = ".".join(spot.fields)
    struct = spot.struct.rsplit(".", 1)[-1] if spot.struct else root.rsplit(".", 1)[-1]
    return f"{struct}.{dotted}" if dotted else struct


def _unmarshal(root: str, path: Sequence[str | int], value: Any, literal: bool = False) -> str:
    spot = _spot(root, path)
    go_type = _go_type(spot.schema)
    # Go names the number when it cannot fit the integer type.
    literal = literal or (isinstance(value, float) and go_type.startswith("int"))
    what = f"number {value!r}" if literal else _json_kind(value)
    if not path:
        return f"json: cannot unmarshal {what} into Go value of type {go_type}"
    return (f"json: cannot unmarshal {what} into Go struct field "
            f"{_go_field(root, spot)} of type {go_type}")


# -- turning findings into causes -------------------------------------------------------


def _decode_detail(root: str, kind: str, path: Path, value: Any, info: Any) -> str:
    if kind == FORMAT:
        fmt, cause = info
        if fmt == "k8s-quantity":
            return str(cause) if cause else "quantities must be strings or numbers"
        if fmt == "byte":
            bad = next((i for i, c in enumerate(value) if c not in
                        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n"),
                       len(value))
            return f"illegal base64 data at input byte {bad}"
        if fmt == "date-time":
            return (f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": '
                    f'cannot parse "{value}" as "2006"')
        return _unmarshal(root, path, value, literal=True)
    if kind == ENUM and path in (("apiVersion",), ("kind",)):
        want = info[0] if info else ""
        return f'{path[0]} "{value}" does not match the expected {path[0]} "{want}"'
    return _unmarshal(root, path, value)


def _required_in(root: str, path: Sequence[str | int]) -> bool:
    if not path or not isinstance(path[-1], str):
        return False
    spot = _spot(root, path)
    return path[-1] in (spot.parent.get("required") or [])


def check(obj: Any, rtype: ResourceType) -> SchemaResult:
    """Everything the schema finds in one object, sorted as upstream would report it."""
    run = validator(rtype.group, rtype.version, rtype.kind)
    if run is None:
        return SchemaResult()
    findings: list[Finding] = []
    run(obj, (), findings)
    if not findings:
        return SchemaResult()
    root = schemas.definition_name(rtype.group, rtype.version, rtype.kind) or ""
    return _report(root, obj, findings)


def _report(root: str, obj: Any, findings: list[Finding]) -> SchemaResult:
    result = SchemaResult()
    decoded: set[Path] = set()  # one decoder complaint per field is enough
    for kind, path, value, info in findings:
        if kind == UNKNOWN:
            result.unknown.extend((path, k) for k in value if k not in info)
        elif kind == REQUIRED:
            # One finding per missing field, each naming all of them: as each
            # jsonschema `required` error did.
            where = path_string(path)
            result.causes.extend(f.required(f.child(where, k)) for k in info if k not in value)
        elif kind == TYPE and value is None:
            if _required_in(root, path):
                result.causes.append(f.required(path_string(path)))
        elif path not in decoded:
            decoded.add(path)
            result.causes.append(f.type_invalid(_spot(root, path).pretty,
                                                _decode_detail(root, kind, path, value, info)))
    if len(result.unknown) > 1:
        order = _document_order(obj)
        result.unknown.sort(key=lambda pk: order.get((*pk[0], pk[1]), 0))
    return result


def _document_order(obj: Any) -> dict[Path, int]:
    """Position of every path in the document, to report unknown fields in reading order."""
    order: dict[Path, int] = {}
    stack: list[tuple[Path, Any]] = [((), obj)]
    while stack:
        path, node = stack.pop()
        order[path] = len(order)
        if isinstance(node, dict):
            stack.extend(((*path, k), v) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend(((*path, i), v) for i, v in reversed(list(enumerate(node))))
    return order


def schema_errors(obj: dict[str, Any], rtype: ResourceType) -> tuple[list[f.Cause], list[str]]:
    """(causes for type/format/required violations, unknown-field paths)."""
    result = check(obj, rtype)
    return result.causes, result.unknown_paths


def prune_unknown(obj: Any, unknown: Sequence[tuple[Path, str]]) -> None:
    """Drop unknown fields in place, as upstream's decoder does under Warn/Ignore."""
    for path, k in unknown:
        node = obj
        for seg in path:
            try:
                node = node[seg]
            except (KeyError, IndexError, TypeError):
                node = None
                break
        if isinstance(node, dict):
            node.pop(k, None)
