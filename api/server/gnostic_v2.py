"""A Swagger 2.0 document (plain dict) encoded as gnostic's `openapi.v2.Document` protobuf.

That is the form kubectl fetches `/openapi/v2` in. Field numbers are gnostic's
(openapiv2/OpenAPIv2.proto); only what our documents contain is encoded:
swagger, info, paths (operations, parameters, responses), definitions,
securityDefinitions (apiKey) and security. gnostic keeps every value it has
no message for (defaults, enums, examples, vendor extensions) in an `Any`
whose `yaml` field holds the value as YAML text; JSON text is YAML, so that is
what we write.
"""

from __future__ import annotations

import json
from typing import Any

from timonel.api.server import protowire as pw

Doc = dict[str, Any]

_OPERATIONS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}
# Non-body parameter kinds: (NonBodyParameter oneof field, layout of that sub-schema).
_QUERY_LIKE = {"required": 1, "in": 2, "description": 3, "name": 4, "type": 6, "format": 7,
               "uniqueItems": 20, "x-": 23}
_PATH_LIKE = {"required": 1, "in": 2, "description": 3, "name": 4, "type": 5, "format": 6,
              "uniqueItems": 19, "x-": 22}
_NON_BODY = {"header": (1, _PATH_LIKE), "formData": (2, _QUERY_LIKE), "query": (3, _QUERY_LIKE),
             "path": (4, _PATH_LIKE)}


def _any(value: Any) -> bytes:
    """gnostic `Any`: the value as YAML text (field 2)."""
    return pw.string(2, json.dumps(value, ensure_ascii=False))


def _named_any(name: str, value: Any) -> bytes:
    return pw.string(1, name) + pw.message(2, _any(value))


def _extensions(number: int, node: Doc) -> bytes:
    return b"".join(pw.message(number, _named_any(k, v))
                    for k, v in node.items() if k.startswith("x-"))


def _number(number: int, value: Any, *, integer: bool = False) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return b""
    return pw.int64(number, int(value)) if integer else pw.double(number, float(value))


def encode_schema(s: Doc) -> bytes:
    """gnostic `Schema`."""
    parts = [pw.string(1, s.get("$ref", "")), pw.string(2, s.get("format", "")),
             pw.string(3, s.get("title", "")), pw.string(4, s.get("description", ""))]
    if "default" in s:
        parts.append(pw.message(5, _any(s["default"])))
    parts += [_number(6, s.get("multipleOf")), _number(7, s.get("maximum")),
              pw.boolean(8, s.get("exclusiveMaximum") is True), _number(9, s.get("minimum")),
              pw.boolean(10, s.get("exclusiveMinimum") is True),
              _number(11, s.get("maxLength"), integer=True),
              _number(12, s.get("minLength"), integer=True), pw.string(13, s.get("pattern", "")),
              _number(14, s.get("maxItems"), integer=True),
              _number(15, s.get("minItems"), integer=True),
              pw.boolean(16, s.get("uniqueItems") is True),
              _number(17, s.get("maxProperties"), integer=True),
              _number(18, s.get("minProperties"), integer=True),
              pw.strings(19, list(s.get("required", [])))]
    parts += [pw.message(20, _any(v)) for v in s.get("enum", [])]
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        parts.append(pw.message(21, pw.message(1, encode_schema(extra))))
    elif isinstance(extra, bool):  # a oneof member is present even when false
        parts.append(pw.message(21, pw.tag(2, pw.VARINT) + pw.varint(int(extra))))
    typ = s.get("type")
    if typ is not None:
        parts.append(pw.message(22, pw.strings(1, typ if isinstance(typ, list) else [typ])))
    items = s.get("items")
    if items is not None:
        listed = items if isinstance(items, list) else [items]
        parts.append(pw.message(23, b"".join(pw.message(1, encode_schema(i)) for i in listed)))
    parts += [pw.message(24, encode_schema(x)) for x in s.get("allOf", [])]
    props = s.get("properties")
    if isinstance(props, dict):
        named = (pw.message(1, pw.string(1, k) + pw.message(2, encode_schema(v)))
                 for k, v in props.items())
        parts.append(pw.message(25, b"".join(named)))
    disc = s.get("discriminator")
    parts += [pw.string(26, disc if isinstance(disc, str) else ""),
              pw.boolean(27, s.get("readOnly") is True)]
    if "example" in s:
        parts.append(pw.message(30, _any(s["example"])))
    parts.append(_extensions(31, s))
    return b"".join(parts)


def encode_parameter(p: Doc) -> bytes:
    """gnostic `ParametersItem` holding a `Parameter` (body or non-body)."""
    if p.get("in") == "body":
        body = b"".join([pw.string(1, p.get("description", "")), pw.string(2, p["name"]),
                         pw.string(3, "body"), pw.boolean(4, p.get("required") is True),
                         pw.message(5, encode_schema(p.get("schema", {}))),
                         _extensions(6, p)])
        param = pw.message(1, body)
    else:
        where = p.get("in", "")
        if where not in _NON_BODY:
            raise ValueError(f"parameter {p.get('name')!r}: unknown location {where!r}")
        number, layout = _NON_BODY[where]
        sub = b"".join([pw.boolean(layout["required"], p.get("required") is True),
                        pw.string(layout["in"], where),
                        pw.string(layout["description"], p.get("description", "")),
                        pw.string(layout["name"], p.get("name", "")),
                        pw.string(layout["type"], p.get("type", "")),
                        pw.string(layout["format"], p.get("format", "")),
                        pw.boolean(layout["uniqueItems"], p.get("uniqueItems") is True),
                        _extensions(layout["x-"], p)])
        param = pw.message(2, pw.message(number, sub))
    return pw.message(1, param)


def _response(r: Doc) -> bytes:
    """gnostic `ResponseValue` holding a `Response`."""
    body = pw.string(1, r.get("description", ""))
    if "schema" in r:
        body += pw.message(2, pw.message(1, encode_schema(r["schema"])))
    return pw.message(1, body + _extensions(5, r))


def encode_operation(op: Doc) -> bytes:
    """gnostic `Operation`."""
    responses = b"".join(pw.message(1, pw.string(1, code) + pw.message(2, _response(r)))
                         for code, r in op.get("responses", {}).items())
    return b"".join([
        pw.strings(1, op.get("tags", [])), pw.string(2, op.get("summary", "")),
        pw.string(3, op.get("description", "")), pw.string(5, op.get("operationId", "")),
        pw.strings(6, op.get("produces", [])), pw.strings(7, op.get("consumes", [])),
        b"".join(pw.message(8, encode_parameter(p)) for p in op.get("parameters", [])),
        pw.message(9, responses), pw.strings(10, op.get("schemes", [])),
        pw.boolean(11, op.get("deprecated") is True), _extensions(13, op),
    ])


def encode_path_item(item: Doc) -> bytes:
    """gnostic `PathItem`."""
    parts = [pw.message(number, encode_operation(item[verb]))
             for verb, number in _OPERATIONS.items() if verb in item]
    parts += [pw.message(9, encode_parameter(p)) for p in item.get("parameters", [])]
    parts.append(_extensions(10, item))
    return b"".join(parts)


def _security_definition(d: Doc) -> bytes:
    """gnostic `SecurityDefinitionsItem`; we publish only apiKey (bearer tokens)."""
    if d.get("type") != "apiKey":
        raise ValueError(f"security definition of type {d.get('type')!r} is not encoded")
    body = b"".join([pw.string(1, "apiKey"), pw.string(2, d.get("name", "")),
                     pw.string(3, d.get("in", "")), pw.string(4, d.get("description", "")),
                     _extensions(5, d)])
    return pw.message(2, body)


def _security_requirement(req: dict[str, list[str]]) -> bytes:
    return b"".join(pw.message(1, pw.string(1, name) + pw.message(2, pw.strings(1, scopes)))
                    for name, scopes in req.items())


def encode_document(doc: Doc) -> bytes:
    """gnostic `Document`."""
    info = doc.get("info", {})
    info_body = pw.string(1, info.get("title", "")) + pw.string(2, info.get("version", ""))
    paths = b"".join(pw.message(2, pw.string(1, p) + pw.message(2, encode_path_item(item)))
                     for p, item in doc.get("paths", {}).items())
    defs = b"".join(pw.message(1, pw.string(1, name) + pw.message(2, encode_schema(schema)))
                    for name, schema in doc.get("definitions", {}).items())
    security_defs = b"".join(
        pw.message(1, pw.string(1, name) + pw.message(2, _security_definition(d)))
        for name, d in doc.get("securityDefinitions", {}).items())
    parts = [pw.string(1, doc.get("swagger", "")), pw.message(2, info_body),
             pw.message(8, paths), pw.message(9, defs)]
    parts += [pw.message(12, _security_requirement(r)) for r in doc.get("security", [])]
    if "securityDefinitions" in doc:
        parts.append(pw.message(13, security_defs))
    parts.append(_extensions(16, doc))
    return b"".join(parts)
