"""Request bodies in, responses out: JSON/YAML decoding, content negotiation."""

from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web

from timonel.api import jsonutil
from timonel.api.errors import ApiError
from timonel.api.streams import read_at_most

MAX_BODY = 3 * 1024 * 1024  # upstream's limit for a request body

JSON = "application/json"
TABLE_ACCEPT_VERSIONS = ("v1", "v1beta1")


async def read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, f"the request body is larger than {MAX_BODY} bytes",
                       "RequestEntityTooLarge")
    body = await read_at_most(request.content, MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise ApiError(413, f"the request body is larger than {MAX_BODY} bytes",
                       "RequestEntityTooLarge")
    return body


def content_type(request: web.Request) -> str:
    """The request's media type, "" when the client sent none (aiohttp would
    say application/octet-stream; the Python client sends none for JSON)."""
    return request.headers.get("Content-Type", "").split(";")[0].strip().lower()


def parse_object(body: bytes, content_type: str) -> dict[str, Any]:
    """A JSON (or YAML) object from a request body; 400 with the position if malformed.

    The Python client sends no Content-Type at all: treat it as JSON.
    """
    ctype = content_type.split(";")[0].strip().lower()
    if not body.strip():
        raise ApiError(400, "the request body is empty: send the object as JSON", "BadRequest")
    if ctype in ("application/yaml", "application/x-yaml", "text/yaml", "application/apply-patch+yaml"):
        try:
            obj = yaml.load(body, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as e:
            raise ApiError(400, f"the request body is not valid YAML: {e}", "BadRequest") from None
    elif ctype in ("", JSON, "*/*", "application/merge-patch+json", "application/json-patch+json",
                   "application/strategic-merge-patch+json", "text/plain"):
        obj = parse_json(body)
    elif ctype == "application/vnd.kubernetes.protobuf":
        raise ApiError(415, "protobuf bodies are not supported: send application/json",
                       "UnsupportedMediaType")
    else:
        raise ApiError(415, f'the content type "{ctype}" is not supported: send application/json',
                       "UnsupportedMediaType")
    if not isinstance(obj, dict):
        raise ApiError(400, "the request body must be a JSON object", "BadRequest")
    return obj


def parse_json(body: bytes) -> Any:
    try:
        return jsonutil.loads(body)
    except UnicodeDecodeError as e:
        raise ApiError(400, f"the request body is not UTF-8: {e}", "BadRequest") from None
    except json.JSONDecodeError as e:
        raise ApiError(400, f"the request body is not valid JSON: {e.msg} at line {e.lineno} "
                       f"column {e.colno} (char {e.pos})", "BadRequest") from None
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply", "BadRequest") from None


def dumps(obj: Any) -> bytes:
    return jsonutil.dumps(obj)


def json_response(obj: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    resp = web.Response(body=dumps(obj), status=status, content_type=JSON)
    for w in warnings or []:
        resp.headers.add("Warning", f'299 - "{_header_safe(w)}"')
    return resp


def _header_safe(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def table_version(accept: str) -> str | None:
    """`v1`/`v1beta1` if the client prefers a meta.k8s.io Table, else None.

    kubectl sends `application/json;as=Table;v=v1;g=meta.k8s.io,application/json`.
    """
    for part in accept.split(","):
        params = {}
        for p in part.split(";")[1:]:
            k, _, v = p.strip().partition("=")
            params[k] = v
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io" and \
                params.get("v") in TABLE_ACCEPT_VERSIONS:
            return params["v"]
        if params.get("as") is None:
            # A plain media type came first: the client prefers objects.
            return None
    return None


def query_bool(request: web.Request, name: str) -> bool:
    # The Python client (v33) sends True/False.
    return request.query.get(name, "").lower() in ("true", "1")


def query_int(request: web.Request, name: str, default: int = 0) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw!r}", "BadRequest") from None
