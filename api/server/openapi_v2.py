"""`GET /openapi/v2`: the Swagger 2.0 document, as JSON or as gnostic protobuf.

kubectl reads it in one place that matters: client-side validation when the
server-side route is closed to it. `create`/`apply --validate=strict` (the
default) first look for the object's kind in the OpenAPI v3 documents
(openapi.py) to hand validation to the server; a `kind: List` is no resource,
so for a List kubectl validates each item itself against `/openapi/v2`, which
it fetches as protobuf (gnostic's `openapi.v2.Document`, gnostic_v2.py) and
parses with kube-openapi's `proto` package:
- every definition is parsed up front and one bad definition fails the whole
  document: a `$ref` must name `#/definitions/...` that exists and carry no
  `type` or `properties` beside it, a schema has at most one `type`, an array
  has exactly one `items` schema;
- items find their definition through `x-kubernetes-group-version-kind`, a
  vendor extension, which gnostic carries as a YAML string (JSON is YAML);
- it reads no `paths` for validation; kubectl falls back to the v2 paths
  (x-kubernetes-group-version-kind on PATCH operations, their `consumes` and
  `fieldValidation` parameter) only when the v3 documents fail it, and older
  kubectls read them first. The paths are those of the v3 documents, converted.
The definitions are the same upstream ones as everywhere else (schemas.py),
converted from kubernetes-validate's JSON Schema: nullable type lists become
the single type, `#/$defs/` refs become `#/definitions/`, Quantity and
IntOrString become strings as upstream publishes them.

Both forms are built on first request, off the event loop (not at start-up:
~0.3 s for the protobuf, 1.6 MB, on one idle core), then kept encoded with
their ETags; a later request costs ~1.5 ms on loopback, a 304 ~0.3 ms.
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
from timonel.api.server import gnostic_v2, openapi

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
            out[k] = openapi.convert_properties(v, convert_schema, top)
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


_V3_REF_PREFIX = "#/components/schemas/"


def _v2_schema_ref(schema: Doc) -> Doc:
    ref = schema.get("$ref", "")
    return {"$ref": _REF_PREFIX + ref.removeprefix(_V3_REF_PREFIX)} if ref else dict(schema)


def _v2_parameter(p: Doc) -> Doc:
    """A v3 parameter: its schema's type (and uniqueItems) move up beside its name."""
    out = {k: v for k, v in p.items() if k != "schema"}
    out.update(p.get("schema", {}))
    return out


def _first_schema(content: dict[str, Any]) -> Doc | None:
    for media in content.values():
        if isinstance(media, dict) and "schema" in media:
            return _v2_schema_ref(media["schema"])
    return None


def convert_operation(op: Doc) -> Doc:
    """A v3 operation (openapi.py) in v2 form: consumes/produces lists, a body parameter."""
    out: Doc = {k: op[k] for k in ("tags", "description", "operationId") if k in op}
    body = op.get("requestBody")
    params = [_v2_parameter(p) for p in op.get("parameters", [])]
    if body:
        out["consumes"] = list(body.get("content", {}))
        params.insert(0, {"name": "body", "in": "body", "required": body.get("required", False),
                          "schema": _first_schema(body.get("content", {})) or {}})
    produces: list[str] = []
    responses: Doc = {}
    for code, r in op.get("responses", {}).items():
        content = r.get("content", {})
        produces += [t for t in content if t not in produces]
        responses[code] = {"description": r.get("description", "")}
        schema = _first_schema(content)
        if schema is not None:
            responses[code]["schema"] = schema
    if produces:
        out["produces"] = produces
    out["schemes"] = ["https"]
    if params:
        out["parameters"] = params
    out["responses"] = responses
    out.update({k: v for k, v in op.items() if k.startswith("x-")})
    return out


def paths() -> Doc:
    """Every operation of the v3 documents (openapi.py), converted: one source for both."""
    found: Doc = {}
    for index_path in openapi.index_paths():
        doc = openapi.openapi_v3_document_at(index_path)
        for path, item in (doc or {}).get("paths", {}).items():
            found[path] = {verb: (convert_operation(v) if verb != "parameters"
                                  else [_v2_parameter(p) for p in v])
                           for verb, v in item.items()}
    return dict(sorted(found.items()))


def openapi_v2_document() -> Doc:
    """The whole Swagger 2.0 document (built anew; the handler serves a cached encoding)."""
    defs = schemas.definitions()
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": f"v{schemas.KUBE_VERSION}"},
        "paths": paths(),
        "definitions": {name: definition(name) for name in sorted(defs)},
        "securityDefinitions": {"BearerToken": {"type": "apiKey", "description": "Bearer Token "
                                                "authentication", "name": "authorization",
                                                "in": "header"}},
        "security": [{"BearerToken": []}],
    }


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
                body = gnostic_v2.encode_document(doc)
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
