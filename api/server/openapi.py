"""The OpenAPI v3 documents kubectl reads: `/openapi/v3` and one document per group-version.

kubectl uses them for three things, and each shapes the documents:
- `create`/`apply` look for a PATCH operation carrying the kind's
  `x-kubernetes-group-version-kind` and an inline `fieldValidation` query
  parameter; finding it, they send `fieldValidation=Strict` and let the server
  validate (otherwise kubectl falls back to `/openapi/v2` as protobuf). Every
  patch operation of a kind (the object, /status, /scale) must carry it:
  kubectl stops at the first one it meets.
- client-side `apply` computes its strategic merge patch from
  `components.schemas` when the patch operation accepts
  `application/strategic-merge-patch+json`, reading
  `x-kubernetes-patch-merge-key`/`-strategy` on properties and following
  `#/components/schemas/...` refs, and `allOf: [{$ref}]` where a ref carries its
  own description (OpenAPI 3.0 ignores siblings of `$ref`).
- `explain` finds the kind's schema by `x-kubernetes-group-version-kind` and
  prints `description`s and single-string `type`s.
The schemas are the upstream definitions shipped by kubernetes-validate,
converted from JSON Schema (nullable type lists, `#/$defs/`) to OpenAPI 3.0.
Each document is built once per process and kept serialized.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from timonel.api import schemas
from timonel.api.resources import RESOURCES, ResourceType, group_versions

log = logging.getLogger(__name__)

Doc = dict[str, Any]

_REF_PREFIX = "#/components/schemas/"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
STATUS = _META + "Status"
DELETE_OPTIONS = _META + "DeleteOptions"
PATCH = _META + "Patch"
SCALE = "io.k8s.api.autoscaling.v1.Scale"
_JSON_YAML = ("application/json", "application/yaml")
_LIST_TYPES = ("application/json", "application/json;stream=watch", "application/yaml")
PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json",
               "application/merge-patch+json", "application/strategic-merge-patch+json")

# kubernetes-validate renders these two as a nullable oneOf without a description.
_SPECIAL = {
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number: a decimal with an "
                       "optional SI suffix (m, k, M, G, T, P, E), binary suffix (Ki, Mi, Gi, Ti, "
                       "Pi, Ei) or decimal exponent, e.g. \"100m\", \"1.5Gi\", \"1e3\". It is "
                       "serialized as a string, and also accepted as a JSON number.",
        "oneOf": [{"type": "string"}, {"type": "number"}],
    },
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string. A port may be "
                       "given by number or by name, a rolling-update bound as a number or a "
                       "percentage.",
        "format": "int-or-string",
        "oneOf": [{"type": "integer"}, {"type": "string"}],
    },
}


# -- JSON Schema (kubernetes-validate) to OpenAPI 3.0 ------------------------------------


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def convert_properties(props: dict[str, Any], convert: Callable[[Any], Any], top: bool) -> dict[str, Any]:
    """`properties` converted one by one; at a definition's top, apiVersion and
    kind are not pinned to one value (upstream's documents do not pin them)."""
    out = {name: convert(s) for name, s in props.items()}
    if top:
        for name in ("apiVersion", "kind"):
            if isinstance(out.get(name), dict):
                out[name].pop("enum", None)
    return out


def convert_schema(node: Any, *, top: bool = False) -> Any:
    """One definition in OpenAPI 3.0 form."""
    if isinstance(node, list):
        return [convert_schema(x) for x in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str):
        target = {"$ref": _REF_PREFIX + _ref_name(ref)}
        rest = {k: convert_schema(v) for k, v in node.items() if k != "$ref"}
        return {"allOf": [target], **rest} if rest else target
    out: dict[str, Any] = {}
    for k, v in node.items():
        if k in ("$schema", "$id") or (k == "additionalProperties" and v is False):
            continue
        if k == "type" and isinstance(v, list):
            kept = [t for t in v if t != "null"]
            if len(kept) == 1:
                out[k] = kept[0]
            elif kept:
                out["oneOf"] = [{"type": t} for t in kept]
        elif k == "oneOf" and isinstance(v, list):
            kept_alts = [convert_schema(x) for x in v if x != {"type": "null"}]
            out[k] = kept_alts
        elif k == "properties" and isinstance(v, dict):
            out[k] = convert_properties(v, convert_schema, top)
        else:
            out[k] = convert_schema(v)
    return out


@functools.cache
def component(name: str) -> dict[str, Any]:
    """The OpenAPI 3.0 form of one upstream definition."""
    if name in _SPECIAL:
        return dict(_SPECIAL[name])
    converted: dict[str, Any] = convert_schema(schemas.definition(name), top=True)
    return converted


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
            found.add(ref[len(_REF_PREFIX):])
        for v in node.values():
            _refs(v, found)
    elif isinstance(node, list):
        for v in node:
            _refs(v, found)


def _closure(roots: set[str]) -> dict[str, Any]:
    """Every component the roots reference, transitively, in a stable order."""
    todo, done = sorted(roots), {}
    while todo:
        name = todo.pop()
        if name in done or (name not in schemas.definitions() and name not in _SPECIAL):
            continue
        done[name] = component(name)
        more: set[str] = set()
        _refs(done[name], more)
        todo.extend(sorted(more - set(done)))
    return {k: done[k] for k in sorted(done)}


# -- operations ----------------------------------------------------------------------------


def _schema_ref(name: str) -> dict[str, str]:
    return {"$ref": _REF_PREFIX + name}


def _content(name: str, types: tuple[str, ...] = _JSON_YAML) -> dict[str, Any]:
    return {t: {"schema": _schema_ref(name)} for t in types}


def _response(name: str, description: str = "OK",
              types: tuple[str, ...] = _JSON_YAML) -> dict[str, Any]:
    return {"description": description, "content": _content(name, types)}


def _param(name: str, where: str, description: str, typ: str = "string",
           required: bool = False) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "in": where, "description": description,
                         "schema": {"type": typ, "uniqueItems": True}}
    if required:
        p["required"] = True
    return p


_DRY_RUN = _param("dryRun", "query", "When present, indicates that modifications should not be "
                  "persisted. The only valid value is All: all dry run stages are processed.")
_FIELD_MANAGER = _param("fieldManager", "query", "A name associated with the actor or entity "
                        "that is making these changes; at most 128 printable characters.")
FIELD_VALIDATION = _param(
    "fieldValidation", "query",
    "How the server treats fields it does not know in the request object (POST/PUT/PATCH). "
    "Ignore: unknown fields are dropped silently. Warn: they are dropped and each is reported "
    "in a Warning response header. Strict: the request fails with BadRequest listing every "
    "unknown field.")
_FORCE = _param("force", "query", "Force is going to \"force\" Apply requests: it re-acquires "
                "conflicting fields owned by other managers. Only for apply patches.", "boolean")
_PRETTY = _param("pretty", "query", "If 'true', then the output is pretty printed.")
_DELETE_PARAMS = [
    _DRY_RUN,
    _param("gracePeriodSeconds", "query", "The duration in seconds before the object should be "
           "deleted; zero means delete immediately.", "integer"),
    _param("propagationPolicy", "query", "Whether and how garbage collection will be performed: "
           "'Orphan', 'Background' or 'Foreground'."),
]
_LIST_PARAMS = [
    _param("allowWatchBookmarks", "query", "Requests watch events with type BOOKMARK.", "boolean"),
    _param("continue", "query", "The continue token of a previous, limited list call."),
    _param("fieldSelector", "query", "A selector to restrict the list of returned objects by "
           "their fields. Defaults to everything."),
    _param("labelSelector", "query", "A selector to restrict the list of returned objects by "
           "their labels. Defaults to everything."),
    _param("limit", "query", "Maximum number of responses to return for a list call.", "integer"),
    _param("resourceVersion", "query", "Constrains which resource versions the request may be "
           "served from."),
    _param("resourceVersionMatch", "query", "How resourceVersion is applied to list calls."),
    _param("sendInitialEvents", "query", "With watch=true, begin the stream with synthetic "
           "events for the current state, then a bookmark.", "boolean"),
    _param("timeoutSeconds", "query", "Timeout for the list/watch call.", "integer"),
    _param("watch", "query", "Watch for changes and stream them as add, update and remove "
           "notifications.", "boolean"),
]


def _ident(rtype: ResourceType) -> str:
    """`CoreV1`, `AppsV1`, `RbacAuthorizationV1`: upstream's operationId infix."""
    group = rtype.group.removesuffix(".k8s.io") or "core"
    words = [w for part in group.split(".") for w in part.replace("-", ".").split(".")]
    return "".join(w[:1].upper() + w[1:] for w in words) + rtype.version.capitalize()


def _tag(rtype: ResourceType) -> str:
    ident = rtype.group.removesuffix(".k8s.io") or "core"
    parts = ident.split(".")
    return parts[0] + "".join(p.capitalize() for p in parts[1:]) + "_" + rtype.version


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "kind": kind, "version": version}


def _op(rtype: ResourceType, action: str, op_id: str, description: str,
        responses: dict[str, Any], gvk: dict[str, str], *,
        params: list[dict[str, Any]] | None = None, body: dict[str, Any] | None = None) -> Doc:
    op: Doc = {"tags": [_tag(rtype)], "description": description, "operationId": op_id}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    op["responses"] = {**responses, "401": {"description": "Unauthorized"}}
    op["x-kubernetes-action"] = action
    op["x-kubernetes-group-version-kind"] = gvk
    return op


def _item_path(rtype: ResourceType, def_name: str, gvk: dict[str, str],
               suffix: str, what: str) -> Doc:
    """get/put/patch (and delete for the object itself) on one named object or subresource.

    `what` prefixes the descriptions: "" for the object, "status of " for /status.
    """
    ns = "Namespaced" if rtype.namespaced else ""
    name_part = f"{ns}{rtype.kind}{suffix}"
    ident = _ident(rtype)
    item: Doc = {
        "get": _op(rtype, "get", f"read{ident}{name_part}", f"read {what}the specified "
                   f"{rtype.kind}", {"200": _response(def_name)}, gvk),
        "put": _op(rtype, "put", f"replace{ident}{name_part}",
                   f"replace {what}the specified {rtype.kind}",
                   {"200": _response(def_name), "201": _response(def_name, "Created")}, gvk,
                   params=[_DRY_RUN, _FIELD_MANAGER, FIELD_VALIDATION],
                   body={"content": {"*/*": {"schema": _schema_ref(def_name)}}, "required": True}),
        "patch": _op(rtype, "patch", f"patch{ident}{name_part}",
                     f"partially update {what}the specified {rtype.kind}",
                     {"200": _response(def_name), "201": _response(def_name, "Created")}, gvk,
                     params=[_DRY_RUN, _FIELD_MANAGER, FIELD_VALIDATION, _FORCE],
                     body={"content": {t: {"schema": _schema_ref(PATCH)} for t in PATCH_TYPES},
                           "required": True}),
    }
    if not suffix and "delete" in rtype.verbs:
        deleted = def_name if rtype.graceful_delete else STATUS
        item["delete"] = _op(rtype, "delete", f"delete{ident}{ns}{rtype.kind}",
                             f"delete a {rtype.kind}",
                             {"200": _response(deleted), "202": _response(deleted, "Accepted")},
                             gvk, params=_DELETE_PARAMS,
                             body={"content": {"*/*": {"schema": _schema_ref(DELETE_OPTIONS)}}})
    item["parameters"] = [
        _param("name", "path", f"name of the {rtype.kind}{suffix}", required=True),
        *([_param("namespace", "path", "object name and auth scope, such as for teams and "
                  "projects", required=True)] if rtype.namespaced else []),
        _PRETTY,
    ]
    return item


def _collection_path(rtype: ResourceType, def_name: str, gvk: dict[str, str]) -> Doc:
    ns = "Namespaced" if rtype.namespaced else ""
    ident, kind = _ident(rtype), rtype.kind
    list_name = def_name + "List"
    path: Doc = {
        "get": _op(rtype, "list", f"list{ident}{ns}{kind}", f"list or watch objects of kind {kind}",
                   {"200": _response(list_name, types=_LIST_TYPES)}, gvk, params=_LIST_PARAMS),
        "post": _op(rtype, "post", f"create{ident}{ns}{kind}", f"create a {kind}",
                    {"200": _response(def_name), "201": _response(def_name, "Created"),
                     "202": _response(def_name, "Accepted")}, gvk,
                    params=[_DRY_RUN, _FIELD_MANAGER, FIELD_VALIDATION],
                    body={"content": {"*/*": {"schema": _schema_ref(def_name)}}, "required": True}),
    }
    if "deletecollection" in rtype.verbs:
        path["delete"] = _op(rtype, "deletecollection", f"delete{ident}Collection{ns}{kind}",
                             f"delete collection of {kind}", {"200": _response(STATUS)}, gvk,
                             params=_DELETE_PARAMS + _LIST_PARAMS,
                             body={"content": {"*/*": {"schema": _schema_ref(DELETE_OPTIONS)}}})
    path["parameters"] = [
        *([_param("namespace", "path", "object name and auth scope, such as for teams and "
                  "projects", required=True)] if rtype.namespaced else []),
        _PRETTY,
    ]
    return path


def _resource_paths(rtype: ResourceType) -> dict[str, Doc]:
    def_name = schemas.definition_name(rtype.group, rtype.version, rtype.kind)
    if def_name is None:
        log.warning("msg=no_openapi_definition kind=%s group=%s", rtype.kind, rtype.group)
        return {}
    gvk = _gvk(rtype.group, rtype.version, rtype.kind)
    prefix = rtype.path_prefix()
    collection = (f"{prefix}/namespaces/{{namespace}}/{rtype.plural}" if rtype.namespaced
                  else f"{prefix}/{rtype.plural}")
    item = f"{collection}/{{name}}"
    paths = {collection: _collection_path(rtype, def_name, gvk),
             item: _item_path(rtype, def_name, gvk, "", "")}
    if rtype.namespaced:
        ident, kind = _ident(rtype), rtype.kind
        paths[f"{prefix}/{rtype.plural}"] = {
            "get": _op(rtype, "list", f"list{ident}{kind}ForAllNamespaces",
                       f"list or watch objects of kind {kind}",
                       {"200": _response(def_name + "List", types=_LIST_TYPES)}, gvk,
                       params=_LIST_PARAMS),
            "parameters": [_PRETTY],
        }
    if "status" in rtype.subresources:
        paths[f"{item}/status"] = _item_path(rtype, def_name, gvk, "Status", "status of ")
    if "scale" in rtype.subresources:
        paths[f"{item}/scale"] = _item_path(rtype, SCALE, _gvk("autoscaling", "v1", "Scale"),
                                            "Scale", "scale of ")
    return paths


# -- documents ------------------------------------------------------------------------------


def _document(paths: dict[str, Doc]) -> Doc:
    roots: set[str] = set()
    _refs(paths, roots)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": f"v{schemas.KUBE_VERSION}"},
        "paths": paths,
        "components": {
            "schemas": _closure(roots),
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token "
                                                "authentication", "name": "authorization",
                                                "in": "header"}},
        },
        "security": [{"BearerToken": []}],
    }


def _discovery_op(op_id: str, description: str, def_name: str, tag: str) -> Doc:
    return {"get": {"tags": [tag], "description": description, "operationId": op_id,
                    "responses": {"200": _response(def_name),
                                  "401": {"description": "Unauthorized"}}}}


def _build_group_version(group: str, version: str) -> Doc | None:
    rtypes = [r for r in RESOURCES if (r.group, r.version) == (group, version)]
    if not rtypes:
        return None
    first = rtypes[0]
    prefix = first.path_prefix()
    paths: dict[str, Doc] = {
        f"{prefix}/": _discovery_op(f"get{_ident(first)}APIResources",
                                    "get available resources", _META + "APIResourceList",
                                    _tag(first)),
    }
    for r in rtypes:
        paths.update(_resource_paths(r))
    return _document(dict(sorted(paths.items())))


def _build(path: str) -> Doc | None:
    path = path.strip("/")
    parts = path.split("/")
    if path == "api":
        return _document({"/api/": _discovery_op("getCoreAPIVersions", "get available API "
                                                 "versions", _META + "APIVersions", "core")})
    if path == "apis":
        return _document({"/apis/": _discovery_op("getAPIVersions", "get available API versions",
                                                  _META + "APIGroupList", "apis")})
    if path == "version":
        return _document({"/version/": _discovery_op("getCodeVersion", "get the version "
                                                     "information for this server",
                                                     "io.k8s.apimachinery.pkg.version.Info",
                                                     "version")})
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in _groups():
        group = parts[1]
        ident = "".join(w[:1].upper() + w[1:] for w in group.removesuffix(".k8s.io").split("."))
        return _document({f"/apis/{group}/": _discovery_op(f"get{ident}APIGroup",
                                                           "get information of a group",
                                                           _META + "APIGroup", group)})
    if len(parts) == 2 and parts[0] == "api":
        return _build_group_version("", parts[1])
    if len(parts) == 3 and parts[0] == "apis":
        return _build_group_version(parts[1], parts[2])
    return None


def _groups() -> list[str]:
    return sorted({g for g, _ in group_versions() if g})


def index_paths() -> list[str]:
    """Every path of the index, e.g. `api/v1`, `apis/apps/v1`, `apis/apps`, `version`."""
    out = ["api", "apis", "version"]
    out += [f"apis/{g}" for g in _groups()]
    out += [f"apis/{g}/{v}" if g else f"api/{v}" for g, v in group_versions()]
    return sorted(out)


@functools.cache
def _serialized(path: str) -> tuple[Doc, bytes, str] | None:
    doc = _build(path)
    if doc is None:
        return None
    body = json.dumps(doc, separators=(",", ":")).encode()
    log.debug("msg=openapi_document path=%s bytes=%d schemas=%d", path, len(body),
              len(doc["components"]["schemas"]))
    return doc, body, document_hash_bytes(body)


def document_hash_bytes(body: bytes) -> str:
    """Upstream's hash: SHA-512 of the serialized document, upper-case hex."""
    return hashlib.sha512(body).hexdigest().upper()


def document_hash(doc: Doc) -> str:
    """The hash of a document as served (its compact JSON serialization)."""
    return document_hash_bytes(json.dumps(doc, separators=(",", ":")).encode())


def openapi_v3_document_at(path: str) -> Doc | None:
    """The document for one index path (`api/v1`, `apis/apps/v1`, `apis`, ...), or None."""
    found = _serialized(path.strip("/"))
    return found[0] if found else None


def openapi_v3_bytes(path: str) -> tuple[bytes, str] | None:
    """(serialized JSON, hash) for one index path, computed once: what the server sends."""
    found = _serialized(path.strip("/"))
    return (found[1], found[2]) if found else None


def openapi_v3_document(group: str, version: str) -> Doc | None:
    """The document of one group-version (`""`, `"v1"` is core), or None if not served."""
    return openapi_v3_document_at(f"apis/{group}/{version}" if group else f"api/{version}")


@functools.cache
def openapi_v3_index() -> Doc:
    """`GET /openapi/v3`: every document's server-relative URL, pinned by its hash."""
    paths = {}
    for p in index_paths():
        found = _serialized(p)
        if found is not None:
            paths[p] = {"serverRelativeURL": f"/openapi/v3/{p}?hash={found[2]}"}
    return {"paths": paths}
