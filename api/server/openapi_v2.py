"""`GET /openapi/v2`: the Swagger 2.0 document, as JSON or as gnostic protobuf.

kubectl reads it in one place that matters: client-side validation when the
server-side route is closed to it. `create`/`apply --validate=strict` (the
default) first look for the object's kind in the OpenAPI v3 documents
(openapi.py) to hand validation to the server; a `kind: List` is no resource,
so for a List kubectl validates each item itself against `/openapi/v2`, which
it fetches as protobuf (gnostic's `openapi.v2.Document`) and parses with kube-openapi's `proto` package:
- every definition is parsed up front and one bad definition fails the whole
  document: a `$ref` must name `#/definitions/...` that exists and carry no
  `type` or `properties` beside it, a schema has at most one `type`, an array
  has exactly one `items` schema;
- items find their definition through `x-kubernetes-group-version-kind`, a
  vendor extension, which gnostic carries as a YAML string (JSON is YAML);
- it reads no `paths` for validation, so the document carries none (apply's
  patch computation reads v3, and falls back to v2 paths only if v3 fails).
The definitions are the same upstream ones as everywhere else (schemas.py),
converted from kubernetes-validate's JSON Schema: nullable type lists become
the single type, `#/$defs/` refs become `#/definitions/`, Quantity and
IntOrString become strings as upstream publishes them.

Both forms are built on first request, off the event loop (not at start-up:
~0.1 s each on a laptop core, more on a loaded CI machine), then kept encoded
with their ETags; later requests cost a dictionary lookup.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from timonel.api import schemas
from timonel.api.errors import ApiError
from timonel.api.server import openapi
from timonel.api.server import protowire as pw

log = logging.getLogger(__name__)

Doc = dict[str, Any]

JSON = "application/json"
# kube-openapi answers the protobuf form with this type, whichever of the two
# spellings was asked for: client-go parses the response's Content-Type with
# Go's mime package, which refuses the "@" that kubectl puts in its Accept.
PROTOBUF = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
_PROTOBUF_ALIASES = (PROTOBUF, "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
_JSON_ALIASES = (JSON, "application/*", "*/*")

_REF_PREFIX = "#/definitions/"
# Upstream publishes these two as plain strings in v2; kube-openapi's validator
# accepts any scalar for a string, so an integer port or a numeric quantity passes.
_AS_STRING = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {},
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"format": "int-or-string"},
}


# -- JSON Schema (kubernetes-validate) to Swagger 2.0 ------------------------------------


def convert_schema(node: Any, *, top: bool = False) -> Any:
    """One schema in Swagger 2.0 form; recurses only where a schema may stand."""
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        # Upstream's v2 keeps a description (and x- extensions) beside a $ref;
        # kube-openapi accepts those, and nothing else there.
        out: dict[str, Any] = {"$ref": _REF_PREFIX + ref.rsplit("/", 1)[-1]}
        out.update({k: v for k, v in node.items()
                    if k == "description" or k.startswith("x-")})
        return out
    out = {}
    for k, v in node.items():
        if k in ("$schema", "$id", "oneOf", "anyOf") or (k == "additionalProperties"
                                                         and v is False):
            continue
        if k == "type" and isinstance(v, list):
            kept = [t for t in v if t != "null"]
            if len(kept) == 1:
                out[k] = kept[0]
        elif k == "properties" and isinstance(v, dict):
            props = {name: convert_schema(s) for name, s in v.items()}
            if top:
                # Upstream does not pin apiVersion/kind to one value in its documents.
                for name in ("apiVersion", "kind"):
                    if isinstance(props.get(name), dict):
                        props[name].pop("enum", None)
            out[k] = props
        elif k in ("items", "additionalProperties") and isinstance(v, dict):
            out[k] = convert_schema(v)
        elif k == "allOf" and isinstance(v, list):
            out[k] = [convert_schema(x) for x in v]
        else:
            out[k] = v
    return out


def definition(name: str) -> Doc:
    if name in _AS_STRING:
        base = openapi.component(name)
        return {"description": base.get("description", ""), **_AS_STRING[name],
                "type": "string"}
    converted: Doc = convert_schema(schemas.definition(name), top=True)
    return converted


def openapi_v2_document() -> Doc:
    """The whole Swagger 2.0 document (built anew; the handler serves a cached encoding)."""
    defs = schemas.definitions()
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": f"v{schemas.KUBE_VERSION}"},
        "paths": {},
        "definitions": {name: definition(name) for name in sorted(defs)},
    }


# -- gnostic protobuf (openapi.v2.Document) ------------------------------------------------
# Field numbers from gnostic's openapiv2/OpenAPIv2.proto.


def _any(value: Any) -> bytes:
    """gnostic `Any`: the value as YAML text (field 2); JSON is a YAML subset."""
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


def encode_document(doc: Doc) -> bytes:
    """gnostic `Document`: swagger, info, paths and definitions (what we publish)."""
    info = doc.get("info", {})
    info_body = pw.string(1, info.get("title", "")) + pw.string(2, info.get("version", ""))
    if doc.get("paths"):
        raise ValueError("encoding paths is not implemented: the document carries none")
    defs = b"".join(pw.message(1, pw.string(1, name) + pw.message(2, encode_schema(schema)))
                    for name, schema in doc.get("definitions", {}).items())
    return b"".join([pw.string(1, doc.get("swagger", "")), pw.message(2, info_body),
                     pw.message(8, b""), pw.message(9, defs), _extensions(16, doc)])


# -- serving -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Representation:
    body: bytes
    content_type: str
    etag: str  # quoted, as in the header


_built: dict[str, Representation] = {}
_build_lock = threading.Lock()


def _etag(body: bytes) -> str:
    # kube-openapi's form: the SHA-512 of the body in upper-case hex.
    return '"' + hashlib.sha512(body).hexdigest().upper() + '"'


def representation(content_type: str) -> Representation:
    """The encoded document for JSON or PROTOBUF, built once per process."""
    found = _built.get(content_type)
    if found is not None:
        return found
    with _build_lock:
        if content_type not in _built:
            t0 = time.perf_counter()
            doc = openapi_v2_document()
            if content_type == PROTOBUF:
                body = encode_document(doc)
            else:
                body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()
            _built[content_type] = Representation(body, content_type, _etag(body))
            log.info("msg=openapi_v2_built content_type=%s bytes=%d seconds=%.3f",
                     content_type, len(body), time.perf_counter() - t0)
        return _built[content_type]


def negotiate(accept: str) -> str | None:
    """JSON or PROTOBUF for an Accept header (highest q first, then order), None if neither."""
    if not accept.strip():
        return JSON
    ranges: list[tuple[float, int, str]] = []
    for i, item in enumerate(accept.split(",")):
        fields = [f.strip() for f in item.split(";")]
        q = 1.0
        for param in fields[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and fields[0]:
            ranges.append((-q, i, fields[0].lower()))
    for _, _, media in sorted(ranges):
        if media in _PROTOBUF_ALIASES:
            return PROTOBUF
        if media in _JSON_ALIASES:
            return JSON
    return None


def _matches(if_none_match: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


async def handler(request: web.Request) -> web.StreamResponse:
    accept = request.headers.get("Accept", "")
    wanted = negotiate(accept)
    if wanted is None:
        raise ApiError(406, f"/openapi/v2 is served as {JSON} or {PROTOBUF}, not {accept!r}: "
                       "ask for one of those in the Accept header")
    rep = _built.get(wanted)
    if rep is None:
        rep = await asyncio.to_thread(representation, wanted)
    headers = {"ETag": rep.etag, "Vary": "Accept"}
    if _matches(request.headers.get("If-None-Match", ""), rep.etag):
        return web.Response(status=304, headers=headers)
    return web.Response(body=rep.body, headers={**headers, "Content-Type": rep.content_type})
