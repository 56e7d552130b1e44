"""The object verbs over HTTP: get, list, create, update, patch, delete,
deletecollection. Subresources and watch have modules of their own."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from timonel.api import meta, schemas, selectors
from timonel.api.admission import AdmissionRequest
from timonel.api.errors import ApiError, bad_request
from timonel.api.jsonutil import deep_copy
from timonel.api.resources import ResourceType
from timonel.api.server import codec
from timonel.api.server.context import Server
from timonel.api.server.objects import Check, Obj
from timonel.api.server.routing import RequestInfo
from timonel.api.server.tables import to_table
from timonel.api.storage.watch_cache import Filter

DRY_RUN_VALUES = ("All",)


def dry_run(request: web.Request) -> bool:
    values = request.query.getall("dryRun", [])
    for v in values:
        if v not in DRY_RUN_VALUES:
            raise ApiError(400, f'unsupported dryRun value "{v}": the only supported value is "All"')
    return bool(values)


def field_validation(request: web.Request) -> str:
    v = request.query.get("fieldValidation", "Strict") or "Strict"
    if v not in ("Strict", "Warn", "Ignore"):
        raise ApiError(400, f'fieldValidation "{v}" is not supported: use Strict, Warn or Ignore')
    return v


def build_filter(request: web.Request, rtype: ResourceType) -> Filter:
    label_text = request.query.get("labelSelector", "")
    field_text = request.query.get("fieldSelector", "")
    lsel = selectors.parse_label_selector(label_text) if label_text else None
    fsel = selectors.parse_field_selector(field_text, rtype) if field_text else None
    if lsel is None and fsel is None:
        return _match_all
    if fsel is None:
        assert lsel is not None
        return lambda o: selectors.matches(lsel, meta.labels_of(o))
    if lsel is None:
        return lambda o: selectors.field_matches(fsel, o)
    return lambda o: selectors.matches(lsel, meta.labels_of(o)) and selectors.field_matches(fsel, o)


def _match_all(_: Obj) -> bool:
    return True


def check_for(server: Server, request: web.Request, info: RequestInfo, operation: str,
              warnings: list[str]) -> Check:
    """Admission (mutating, validation, validating) for one write."""
    areq = AdmissionRequest(
        operation=operation, rtype=info.rtype, namespace=info.namespace, name=info.name,
        subresource=info.subresource, user=request.get("user"), dry_run=dry_run(request),
        field_validation=field_validation(request), warnings=warnings,
    )

    async def check(obj: Obj, old: Obj | None) -> None:
        areq.name = meta.name_of(obj)
        # An apply that creates is a CREATE for admission.
        areq.operation = "CREATE" if old is None else operation
        await server.admission.admit(areq, obj, old, server.validate)

    return check


def object_response(request: web.Request, info: RequestInfo, obj: Obj, status: int = 200,
                    warnings: list[str] | None = None) -> web.Response:
    version = codec.table_version(request.headers.get("Accept", ""))
    if version is not None:
        table = to_table([obj], info.rtype, include_object=request.query.get("includeObject", "Metadata"),
                         api_version=f"meta.k8s.io/{version}")
        return codec.json_response(table, status, warnings)
    return codec.json_response(obj, status, warnings)


def prepare_body(obj: Obj, info: RequestInfo) -> Obj:
    """Check apiVersion/kind of a body against the URL; fill them in when
    missing (the Python client may omit them)."""
    rtype = info.rtype
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if api_version and api_version != rtype.api_version:
        raise bad_request(f"the API version in the data ({api_version}) does not match the "
                          f"expected API version ({rtype.api_version})")
    if kind and kind != rtype.kind:
        raise bad_request(f"the kind in the data ({kind}) does not match the expected kind "
                          f"({rtype.kind})")
    obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
    md = obj.get("metadata")
    if md is None:
        obj["metadata"] = md = {}
    if not isinstance(md, dict):
        raise bad_request("metadata must be a JSON object")
    body_ns = md.get("namespace")
    if rtype.namespaced and body_ns and info.namespace and body_ns != info.namespace:
        raise bad_request("the namespace of the provided object does not match the namespace "
                          "sent on the request")
    return obj


# -- verbs ----------------------------------------------------------------------


async def get(server: Server, request: web.Request, info: RequestInfo) -> web.Response:
    obj = await server.objects.get(info.rtype, info.namespace, info.name)
    return object_response(request, info, obj)


async def list_(server: Server, request: web.Request, info: RequestInfo) -> web.Response:
    match = build_filter(request, info.rtype)
    limit = codec.query_int(request, "limit")
    if limit < 0:
        raise bad_request("limit must not be negative")
    result = await server.objects.list(
        info.rtype, info.namespace, match, limit=limit,
        continue_token=request.query.get("continue", ""),
        resource_version=request.query.get("resourceVersion", ""),
        resource_version_match=request.query.get("resourceVersionMatch", ""),
    )
    list_meta: dict[str, Any] = {"resourceVersion": result.resource_version}
    if result.continue_token:
        list_meta["continue"] = result.continue_token
    version = codec.table_version(request.headers.get("Accept", ""))
    if version is not None:
        table = to_table(result.items, info.rtype,
                         include_object=request.query.get("includeObject", "Metadata"),
                         list_meta=list_meta, api_version=f"meta.k8s.io/{version}")
        return codec.json_response(table)
    for item in result.items:
        # Lists carry items without kind/apiVersion upstream; keeping them is
        # harmless and saves clients guessing.
        item.setdefault("apiVersion", info.rtype.api_version)
        item.setdefault("kind", info.rtype.kind)
    return codec.json_response({
        "kind": info.rtype.list_kind, "apiVersion": info.rtype.api_version,
        "metadata": list_meta, "items": result.items,
    })


async def create(server: Server, request: web.Request, info: RequestInfo) -> web.Response:
    if info.name:
        raise ApiError(405, "create must POST to the collection, not to an object",
                       "MethodNotAllowed")
    if info.rtype.namespaced and not info.namespace:
        raise bad_request("the namespace of the object must be given in the URL "
                          "(/namespaces/<ns>/...)")
    body = await codec.read_body(request)
    obj = prepare_body(codec.parse_object(body, codec.content_type(request)), info)
    warnings: list[str] = []
    check = check_for(server, request, info, "CREATE", warnings)
    manager = request.query.get("fieldManager", "")
    out = await server.objects.create(info.rtype, info.namespace, obj, check=with_fields(check, manager, info),
                                      dry_run=dry_run(request))
    return object_response(request, info, out, 201, warnings)


def with_fields(check: Check, manager: str, info: RequestInfo) -> Check:
    """Record managedFields for this write after admission (operation Update)."""
    from timonel.api.patch import record_update

    async def wrapped(obj: Obj, old: Obj | None) -> None:
        await check(obj, old)
        if manager or old is None:
            new = record_update(old, obj, manager or "unknown", info.rtype.api_version, meta.now(),
                                subresource=info.subresource)
            obj["metadata"] = new["metadata"]

    return wrapped


async def update(server: Server, request: web.Request, info: RequestInfo) -> web.Response:
    body = await codec.read_body(request)
    new = prepare_body(codec.parse_object(body, codec.content_type(request)), info)
    if meta.name_of(new) and meta.name_of(new) != info.name:
        raise bad_request(f"the name of the object ({meta.name_of(new)}) does not match the name "
                          f"on the URL ({info.name})")
    new["metadata"]["name"] = info.name
    warnings: list[str] = []
    check = with_fields(check_for(server, request, info, "UPDATE", warnings),
                         request.query.get("fieldManager", ""), info)
    sent = deep_copy(new)
    # A PUT without resourceVersion is an unconditional update, as upstream
    # allows for most kinds.
    out, _ = await server.objects.update(
        info.rtype, info.namespace, info.name, lambda _old: deep_copy(sent),
        subresource=info.subresource, check=check, dry_run=dry_run(request),
    )
    return object_response(request, info, out, 200, warnings)


PATCH_TYPES = (
    "application/merge-patch+json", "application/json-patch+json",
    "application/strategic-merge-patch+json", "application/apply-patch+yaml",
)


async def patch(server: Server, request: web.Request, info: RequestInfo) -> web.Response:
    from timonel.api.patch import apply_patch

    ctype = codec.content_type(request)
    if ctype not in PATCH_TYPES:
        raise ApiError(415, f'the body of the request was in an unknown format - accepted media '
                       f'types include: {", ".join(PATCH_TYPES)}', "UnsupportedMediaType")
    body = await codec.read_body(request)
    is_apply = ctype == "application/apply-patch+yaml"
    manager = request.query.get("fieldManager", "")
    if is_apply and not manager:
        raise ApiError(422, "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required "
                       "value: is required for apply patch", "Invalid")
    force = codec.query_bool(request, "force")
    rtype = info.rtype
    definition = schemas.definition_name(rtype.group, rtype.version, rtype.kind)
    warnings: list[str] = []
    check = check_for(server, request, info, "UPDATE", warnings)
    if not is_apply:
        check = with_fields(check, manager, info)
    now = meta.now()

    conditional = _names_resource_version(body, ctype)

    def mutate(live: Obj) -> Obj:
        live_rv = (live.get("metadata") or {}).get("resourceVersion")
        out = apply_patch(ctype, live, body, definition=definition, manager=manager or "unknown",
                          force=force, now=now)
        md = out.get("metadata") if isinstance(out, dict) else None
        if not conditional and isinstance(md, dict) and md.get("resourceVersion") == live_rv:
            # The version read here is no precondition: a concurrent write
            # makes the update retry on the new object, not fail with 409.
            md.pop("resourceVersion", None)
        return out

    def create_new() -> Obj:
        # Server-side apply creates what is missing (201).
        applied = apply_patch(ctype, None, body, definition=definition, manager=manager,
                              force=force, now=now)
        prepare_body(applied, info)
        if meta.name_of(applied) != info.name:
            raise bad_request(f"the name of the object ({meta.name_of(applied)}) does not match "
                              f"the name on the URL ({info.name})")
        return applied

    out, created = await server.objects.update(
        rtype, info.namespace, info.name, mutate, subresource=info.subresource, check=check,
        dry_run=dry_run(request), create_if_missing=create_new if is_apply and not info.subresource else None,
    )
    return object_response(request, info, out, 201 if created else 200, warnings)


def _names_resource_version(body: bytes, ctype: str) -> bool:
    """Whether a patch sets metadata.resourceVersion itself (a precondition)."""
    try:
        doc: Any = codec.parse_object(body, ctype) if not ctype.endswith("json-patch+json") \
            else json.loads(body)
    except (ApiError, ValueError):
        return True
    if isinstance(doc, list):
        return any(isinstance(op, dict) and op.get("path") == "/metadata/resourceVersion"
                   for op in doc)
    md = doc.get("metadata") if isinstance(doc, dict) else None
    return isinstance(md, dict) and "resourceVersion" in md


async def delete(server: Server, request: web.Request, info: RequestInfo) -> web.Response:
    options = await _delete_options(request)
    if info.rtype.kind == "Namespace" or server.admission.validating:
        areq = AdmissionRequest("DELETE", info.rtype, info.namespace, info.name,
                                user=request.get("user"), dry_run=dry_run(request))
        await server.admission.admit(areq, {}, None)
    obj, deleted = await server.objects.delete(info.rtype, info.namespace, info.name, options,
                                               dry_run=dry_run(request))
    obj.setdefault("apiVersion", info.rtype.api_version)
    obj.setdefault("kind", info.rtype.kind)
    return object_response(request, info, obj, 200 if deleted else 202)


async def delete_collection(server: Server, request: web.Request, info: RequestInfo) -> web.Response:
    options = await _delete_options(request)
    match = build_filter(request, info.rtype)
    result = await server.objects.list(info.rtype, info.namespace, match)
    deleted = []
    for obj in result.items:
        try:
            out, _ = await server.objects.delete(info.rtype, meta.namespace_of(obj),
                                                 meta.name_of(obj), options, dry_run=dry_run(request))
        except ApiError as e:
            if e.code == 404:
                continue
            raise
        out.setdefault("apiVersion", info.rtype.api_version)
        out.setdefault("kind", info.rtype.kind)
        deleted.append(out)
    return codec.json_response({
        "kind": info.rtype.list_kind, "apiVersion": info.rtype.api_version,
        "metadata": {"resourceVersion": result.resource_version}, "items": deleted,
    })


async def _delete_options(request: web.Request) -> dict[str, Any]:
    options: dict[str, Any] = {}
    body = await codec.read_body(request) if request.body_exists else b""
    if body.strip():
        options = codec.parse_object(body, codec.content_type(request))
    q = request.query
    if "gracePeriodSeconds" in q:
        options["gracePeriodSeconds"] = codec.query_int(request, "gracePeriodSeconds")
    if "propagationPolicy" in q:
        options["propagationPolicy"] = q["propagationPolicy"]
    if "orphanDependents" in q:
        options["orphanDependents"] = codec.query_bool(request, "orphanDependents")
    for k in ("gracePeriodSeconds",):
        if k in options and options[k] is not None and not isinstance(options[k], int):
            raise bad_request(f"{k} must be an integer")
    if "preconditions" in options and not isinstance(options["preconditions"], dict | type(None)):
        raise bad_request("preconditions must be an object")
    return options
