"""/openapi/v2: the protobuf writer and the gnostic document, decoded independently.

The decoder is protobuf's own runtime, given message descriptors written here
from gnostic's openapiv2/OpenAPIv2.proto field numbers (the subset we emit), so
a wrong field number, wire type or nesting shows up as a mismatch against the
JSON form of the same document.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

from timonel.api import schemas
from timonel.api.resources import RESOURCES
from timonel.api.server import openapi_v2
from timonel.api.server import protowire as pw

F = descriptor_pb2.FieldDescriptorProto
OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED
STR, I64, BOOL, DBL, MSG = F.TYPE_STRING, F.TYPE_INT64, F.TYPE_BOOL, F.TYPE_DOUBLE, F.TYPE_MESSAGE

# message -> [(field, number, type, label, message type)]
GNOSTIC: dict[str, list[tuple[str, int, int, int, str]]] = {
    "Document": [("swagger", 1, STR, OPT, ""), ("info", 2, MSG, OPT, "Info"),
                 ("paths", 8, MSG, OPT, "Paths"), ("definitions", 9, MSG, OPT, "Definitions"),
                 ("security", 12, MSG, REP, "SecurityRequirement"),
                 ("security_definitions", 13, MSG, OPT, "SecurityDefinitions"),
                 ("vendor_extension", 16, MSG, REP, "NamedAny")],
    "Info": [("title", 1, STR, OPT, ""), ("version", 2, STR, OPT, "")],
    "Paths": [("vendor_extension", 1, MSG, REP, "NamedAny"),
              ("path", 2, MSG, REP, "NamedPathItem")],
    "NamedPathItem": [("name", 1, STR, OPT, ""), ("value", 2, MSG, OPT, "PathItem")],
    "PathItem": [("_ref", 1, STR, OPT, ""), ("get", 2, MSG, OPT, "Operation"),
                 ("put", 3, MSG, OPT, "Operation"), ("post", 4, MSG, OPT, "Operation"),
                 ("delete", 5, MSG, OPT, "Operation"), ("options", 6, MSG, OPT, "Operation"),
                 ("head", 7, MSG, OPT, "Operation"), ("patch", 8, MSG, OPT, "Operation"),
                 ("parameters", 9, MSG, REP, "ParametersItem"),
                 ("vendor_extension", 10, MSG, REP, "NamedAny")],
    "Operation": [("tags", 1, STR, REP, ""), ("summary", 2, STR, OPT, ""),
                  ("description", 3, STR, OPT, ""), ("operation_id", 5, STR, OPT, ""),
                  ("produces", 6, STR, REP, ""), ("consumes", 7, STR, REP, ""),
                  ("parameters", 8, MSG, REP, "ParametersItem"),
                  ("responses", 9, MSG, OPT, "Responses"), ("schemes", 10, STR, REP, ""),
                  ("deprecated", 11, BOOL, OPT, ""),
                  ("vendor_extension", 13, MSG, REP, "NamedAny")],
    "ParametersItem": [("parameter", 1, MSG, OPT, "Parameter")],
    "Parameter": [("body_parameter", 1, MSG, OPT, "BodyParameter"),
                  ("non_body_parameter", 2, MSG, OPT, "NonBodyParameter")],
    "BodyParameter": [("description", 1, STR, OPT, ""), ("name", 2, STR, OPT, ""),
                      ("in", 3, STR, OPT, ""), ("required", 4, BOOL, OPT, ""),
                      ("schema", 5, MSG, OPT, "Schema")],
    "NonBodyParameter": [("header_parameter_sub_schema", 1, MSG, OPT, "PathParameterSubSchema"),
                         ("query_parameter_sub_schema", 3, MSG, OPT, "QueryParameterSubSchema"),
                         ("path_parameter_sub_schema", 4, MSG, OPT, "PathParameterSubSchema")],
    "QueryParameterSubSchema": [("required", 1, BOOL, OPT, ""), ("in", 2, STR, OPT, ""),
                                ("description", 3, STR, OPT, ""), ("name", 4, STR, OPT, ""),
                                ("type", 6, STR, OPT, ""), ("format", 7, STR, OPT, ""),
                                ("unique_items", 20, BOOL, OPT, "")],
    "PathParameterSubSchema": [("required", 1, BOOL, OPT, ""), ("in", 2, STR, OPT, ""),
                               ("description", 3, STR, OPT, ""), ("name", 4, STR, OPT, ""),
                               ("type", 5, STR, OPT, ""), ("format", 6, STR, OPT, ""),
                               ("unique_items", 19, BOOL, OPT, "")],
    "Responses": [("response_code", 1, MSG, REP, "NamedResponseValue")],
    "NamedResponseValue": [("name", 1, STR, OPT, ""), ("value", 2, MSG, OPT, "ResponseValue")],
    "ResponseValue": [("response", 1, MSG, OPT, "Response")],
    "Response": [("description", 1, STR, OPT, ""), ("schema", 2, MSG, OPT, "SchemaItem")],
    "SchemaItem": [("schema", 1, MSG, OPT, "Schema")],
    "SecurityRequirement": [("additional_properties", 1, MSG, REP, "NamedStringArray")],
    "NamedStringArray": [("name", 1, STR, OPT, ""), ("value", 2, MSG, OPT, "StringArray")],
    "StringArray": [("value", 1, STR, REP, "")],
    "SecurityDefinitions": [("additional_properties", 1, MSG, REP,
                             "NamedSecurityDefinitionsItem")],
    "NamedSecurityDefinitionsItem": [("name", 1, STR, OPT, ""),
                                     ("value", 2, MSG, OPT, "SecurityDefinitionsItem")],
    "SecurityDefinitionsItem": [("api_key_security", 2, MSG, OPT, "ApiKeySecurity")],
    "ApiKeySecurity": [("type", 1, STR, OPT, ""), ("name", 2, STR, OPT, ""),
                       ("in", 3, STR, OPT, ""), ("description", 4, STR, OPT, "")],
    "Definitions": [("additional_properties", 1, MSG, REP, "NamedSchema")],
    "Properties": [("additional_properties", 1, MSG, REP, "NamedSchema")],
    "NamedSchema": [("name", 1, STR, OPT, ""), ("value", 2, MSG, OPT, "Schema")],
    "NamedAny": [("name", 1, STR, OPT, ""), ("value", 2, MSG, OPT, "Any")],
    "Any": [("yaml", 2, STR, OPT, "")],
    "TypeItem": [("value", 1, STR, REP, "")],
    "ItemsItem": [("schema", 1, MSG, REP, "Schema")],
    "AdditionalPropertiesItem": [("schema", 1, MSG, OPT, "Schema"), ("boolean", 2, BOOL, OPT, "")],
    "Schema": [("_ref", 1, STR, OPT, ""), ("format", 2, STR, OPT, ""), ("title", 3, STR, OPT, ""),
               ("description", 4, STR, OPT, ""), ("default", 5, MSG, OPT, "Any"),
               ("multiple_of", 6, DBL, OPT, ""), ("maximum", 7, DBL, OPT, ""),
               ("exclusive_maximum", 8, BOOL, OPT, ""), ("minimum", 9, DBL, OPT, ""),
               ("exclusive_minimum", 10, BOOL, OPT, ""), ("max_length", 11, I64, OPT, ""),
               ("min_length", 12, I64, OPT, ""), ("pattern", 13, STR, OPT, ""),
               ("max_items", 14, I64, OPT, ""), ("min_items", 15, I64, OPT, ""),
               ("unique_items", 16, BOOL, OPT, ""), ("max_properties", 17, I64, OPT, ""),
               ("min_properties", 18, I64, OPT, ""), ("required", 19, STR, REP, ""),
               ("enum", 20, MSG, REP, "Any"),
               ("additional_properties", 21, MSG, OPT, "AdditionalPropertiesItem"),
               ("type", 22, MSG, OPT, "TypeItem"), ("items", 23, MSG, OPT, "ItemsItem"),
               ("all_of", 24, MSG, REP, "Schema"), ("properties", 25, MSG, OPT, "Properties"),
               ("discriminator", 26, STR, OPT, ""), ("read_only", 27, BOOL, OPT, ""),
               ("example", 30, MSG, OPT, "Any"), ("vendor_extension", 31, MSG, REP, "NamedAny")],
}
ONEOF = {"AdditionalPropertiesItem", "ParametersItem", "Parameter", "NonBodyParameter",
         "ResponseValue", "SchemaItem", "SecurityDefinitionsItem"}


def message_classes(package: str, spec: dict[str, list[tuple[str, int, int, int, str]]],
                    oneofs: set[str] = frozenset()) -> dict[str, type[Message]]:  # type: ignore[assignment]
    fdp = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package,
                                             syntax="proto3")
    for name, fields in spec.items():
        m = fdp.message_type.add(name=name)
        if name in oneofs:
            m.oneof_decl.add(name="oneof")
        for fname, number, typ, label, type_name in fields:
            f = m.field.add(name=fname, number=number, type=typ, label=label)
            if type_name:
                f.type_name = f".{package}.{type_name}"
            if name in oneofs:
                f.oneof_index = 0
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{n}"))
            for n in spec}


@pytest.fixture(scope="module")
def gnostic() -> dict[str, type[Message]]:
    return message_classes("openapi.v2", GNOSTIC, ONEOF)


# -- the writer against protobuf's own encoder ---------------------------------------------

SAMPLE = {
    "Inner": [("s", 1, STR, OPT, ""), ("n", 2, I64, OPT, "")],
    "Sample": [("s", 1, STR, OPT, ""), ("n", 2, I64, OPT, ""), ("b", 3, BOOL, OPT, ""),
               ("d", 4, DBL, OPT, ""), ("r", 5, STR, REP, ""), ("m", 6, MSG, OPT, "Inner"),
               ("ms", 7, MSG, REP, "Inner"), ("big", 300, STR, OPT, "")],
}


def test_varints_by_hand() -> None:
    assert pw.varint(0) == b"\x00"
    assert pw.varint(1) == b"\x01"
    assert pw.varint(150) == b"\x96\x01"
    assert pw.varint(300) == b"\xac\x02"
    assert pw.varint(-1) == b"\xff" * 9 + b"\x01"
    assert pw.tag(1, pw.LENGTH_DELIMITED) == b"\x0a"
    assert pw.tag(300, pw.VARINT) == b"\xe0\x12"


@pytest.mark.parametrize("s, n, b, d, r", [
    ("", 0, False, 0.0, []),
    ("héllo", 1, True, 1.5, ["a", "", "c"]),
    ("x" * 300, 2**40, True, -2.25e-300, ["y" * 200]),
    ("neg", -5, False, math.inf, []),
])
def test_writer_matches_protobuf_encoding(s: str, n: int, b: bool, d: float, r: list[str]) -> None:
    classes = message_classes("wiretest", SAMPLE)
    inner = pw.string(1, "in") + pw.int64(2, 7)
    ours = b"".join([pw.string(1, s), pw.int64(2, n), pw.boolean(3, b), pw.double(4, d),
                     pw.strings(5, r), pw.message(6, inner), pw.message(7, inner),
                     pw.message(7, b""), pw.string(300, s)])
    theirs = classes["Sample"](s=s, n=n, b=b, d=d, r=r, big=s)
    theirs.m.s, theirs.m.n = "in", 7
    theirs.ms.add(s="in", n=7)
    theirs.ms.add()
    assert ours == theirs.SerializeToString(deterministic=True)
    parsed = classes["Sample"].FromString(ours)
    assert (parsed.s, parsed.n, parsed.b, parsed.d, list(parsed.r)) == (s, n, b, d, r)


# -- the document --------------------------------------------------------------------------


def _yaml(any_msg: Any) -> Any:
    return yaml.safe_load(any_msg.yaml)


def schema_to_dict(m: Any) -> dict[str, Any]:
    """A decoded gnostic Schema back to its Swagger 2.0 JSON form."""
    out: dict[str, Any] = {}
    for fname, key in (("_ref", "$ref"), ("format", "format"), ("title", "title"),
                       ("description", "description"), ("pattern", "pattern"),
                       ("discriminator", "discriminator")):
        if getattr(m, fname):
            out[key] = getattr(m, fname)
    for fname, key in (("max_length", "maxLength"), ("min_length", "minLength"),
                       ("max_items", "maxItems"), ("min_items", "minItems"),
                       ("maximum", "maximum"), ("minimum", "minimum"),
                       ("unique_items", "uniqueItems"), ("read_only", "readOnly")):
        if getattr(m, fname):
            out[key] = getattr(m, fname)
    if m.HasField("default"):
        out["default"] = _yaml(m.default)
    if m.required:
        out["required"] = list(m.required)
    if m.enum:
        out["enum"] = [_yaml(a) for a in m.enum]
    if m.HasField("additional_properties"):
        ap = m.additional_properties
        which = ap.WhichOneof("oneof")
        assert which is not None, "an empty AdditionalPropertiesItem"
        out["additionalProperties"] = (schema_to_dict(ap.schema) if which == "schema"
                                       else ap.boolean)
    if m.HasField("type"):
        assert len(m.type.value) == 1
        out["type"] = m.type.value[0]
    if m.HasField("items"):
        assert len(m.items.schema) == 1, "kube-openapi wants exactly one items schema"
        out["items"] = schema_to_dict(m.items.schema[0])
    if m.all_of:
        out["allOf"] = [schema_to_dict(x) for x in m.all_of]
    if m.HasField("properties"):
        out["properties"] = {p.name: schema_to_dict(p.value)
                             for p in m.properties.additional_properties}
    for ext in m.vendor_extension:
        out[ext.name] = _yaml(ext.value)
    return out


def parameter_to_dict(item: Any) -> dict[str, Any]:
    p = item.parameter
    assert item.WhichOneof("oneof") == "parameter"
    if p.WhichOneof("oneof") == "body_parameter":
        b = p.body_parameter
        return {"name": b.name, "in": getattr(b, "in"), "required": b.required,
                "schema": schema_to_dict(b.schema)}
    nb = p.non_body_parameter
    sub = getattr(nb, nb.WhichOneof("oneof"))
    out: dict[str, Any] = {"name": sub.name, "in": getattr(sub, "in")}
    if sub.description:
        out["description"] = sub.description
    if sub.required:
        out["required"] = True
    out["type"] = sub.type
    if sub.unique_items:
        out["uniqueItems"] = True
    return out


def operation_to_dict(op: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"tags": list(op.tags), "description": op.description,
                           "operationId": op.operation_id}
    if op.consumes:
        out["consumes"] = list(op.consumes)
    if op.produces:
        out["produces"] = list(op.produces)
    out["schemes"] = list(op.schemes)
    if op.parameters:
        out["parameters"] = [parameter_to_dict(p) for p in op.parameters]
    out["responses"] = {}
    for named in op.responses.response_code:
        r = named.value.response
        out["responses"][named.name] = {"description": r.description}
        if r.HasField("schema"):
            out["responses"][named.name]["schema"] = schema_to_dict(r.schema.schema)
    for ext in op.vendor_extension:
        out[ext.name] = _yaml(ext.value)
    return out


def path_item_to_dict(item: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for verb in ("get", "put", "post", "delete", "patch"):
        if item.HasField(verb):
            out[verb] = operation_to_dict(getattr(item, verb))
    if item.parameters:
        out["parameters"] = [parameter_to_dict(p) for p in item.parameters]
    return out


@pytest.fixture(scope="module")
def decoded(gnostic: dict[str, type[Message]]) -> Any:
    body = openapi_v2.representation(openapi_v2.PROTOBUF).body
    return gnostic["Document"].FromString(body)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(openapi_v2.representation(openapi_v2.JSON).body)
    return doc


def test_protobuf_decodes_to_the_json_document(decoded: Any, document: dict[str, Any]) -> None:
    assert decoded.swagger == document["swagger"] == "2.0"
    assert (decoded.info.title, decoded.info.version) == ("Kubernetes", f"v{schemas.KUBE_VERSION}")
    assert decoded.HasField("paths") and not decoded.paths.vendor_extension
    names = [d.name for d in decoded.definitions.additional_properties]
    assert names == list(document["definitions"]) == sorted(schemas.definitions())
    for named in decoded.definitions.additional_properties:
        assert schema_to_dict(named.value) == document["definitions"][named.name], named.name


def test_protobuf_reencodes_to_the_same_bytes(decoded: Any) -> None:
    """protobuf's own encoder, given what it decoded, writes our bytes back: every field
    we wrote is one the descriptors know, in field order, defaults left out as proto3 does."""
    body = openapi_v2.representation(openapi_v2.PROTOBUF).body
    assert decoded.SerializeToString(deterministic=True) == body


def test_protobuf_paths_and_security_decode_to_the_json_document(
        decoded: Any, document: dict[str, Any]) -> None:
    paths = {p.name: path_item_to_dict(p.value) for p in decoded.paths.path}
    assert list(paths) == list(document["paths"])
    for name, item in paths.items():
        assert item == document["paths"][name], name
    [requirement] = decoded.security
    assert [(r.name, list(r.value.value)) for r in requirement.additional_properties] == [
        ("BearerToken", [])]
    [sec] = decoded.security_definitions.additional_properties
    key = sec.value.api_key_security
    assert (sec.name, key.type, key.name, getattr(key, "in")) == (
        "BearerToken", "apiKey", "authorization", "header")


def test_patch_operations_found_as_kubectl_v2_verifier_does(decoded: Any) -> None:
    """kubectl's v2 fallback: a PATCH operation whose x-kubernetes-group-version-kind
    (YAML, one map) names the kind, with a fieldValidation query parameter; and its
    `consumes` (apply's patch type)."""
    found: dict[tuple[str, str, str], Any] = {}
    for path in decoded.paths.path:
        op = path.value.patch
        for ext in op.vendor_extension:
            if ext.name == "x-kubernetes-group-version-kind":
                gvk = yaml.safe_load(ext.value.yaml)
                found.setdefault((gvk["group"], gvk["version"], gvk["kind"]), op)
    for rtype in RESOURCES:
        if schemas.definition_name(rtype.group, rtype.version, rtype.kind) is None:
            continue
        op = found.get((rtype.group, rtype.version, rtype.kind))
        assert op is not None, rtype.kind
        names = [p.parameter.non_body_parameter.query_parameter_sub_schema.name
                 for p in op.parameters]
        assert "fieldValidation" in names, rtype.kind
        assert "application/strategic-merge-patch+json" in op.consumes


def test_kinds_carry_their_group_version_kind(document: dict[str, Any]) -> None:
    defs = document["definitions"]
    assert defs["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}]
    cm = defs["io.k8s.api.core.v1.ConfigMap"]
    assert cm["type"] == "object"
    assert cm["properties"]["data"] == {
        "type": "object", "additionalProperties": {"type": "string"},
        "description": cm["properties"]["data"]["description"]}
    assert "enum" not in cm["properties"]["kind"]
    assert cm["properties"]["metadata"]["$ref"] == (
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
    containers = defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["items"] == {"$ref": "#/definitions/io.k8s.api.core.v1.Container"}
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["type"] == "string"
    assert defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == "int-or-string"
    assert defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"] == "string"


def _check_kube_openapi_rules(node: dict[str, Any], where: str, defs: dict[str, Any]) -> None:
    """What kube-openapi's proto.NewOpenAPIData refuses, failing the whole document."""
    if "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/definitions/") and ref[len("#/definitions/"):] in defs, where
        assert "type" not in node and "properties" not in node, where
        return
    typ = node.get("type")
    assert typ is None or isinstance(typ, str), where
    assert not ({"oneOf", "anyOf"} & set(node)), where
    if typ == "array":
        assert isinstance(node.get("items"), dict), f"{where}: an array needs one items schema"
        _check_kube_openapi_rules(node["items"], where + "[]", defs)
    elif typ not in (None, "object"):
        assert typ in ("string", "integer", "number", "boolean"), where
    for name, prop in node.get("properties", {}).items():
        _check_kube_openapi_rules(prop, f"{where}.{name}", defs)
    if isinstance(node.get("additionalProperties"), dict):
        _check_kube_openapi_rules(node["additionalProperties"], where + "{}", defs)


def test_every_definition_parses_as_kube_openapi_would(document: dict[str, Any]) -> None:
    defs = document["definitions"]
    for name, schema in defs.items():
        _check_kube_openapi_rules(schema, name, defs)


def test_built_once_then_served_from_cache() -> None:
    first = openapi_v2.representation(openapi_v2.PROTOBUF)
    t0 = time.perf_counter()
    again = openapi_v2.representation(openapi_v2.PROTOBUF)
    assert again is first and time.perf_counter() - t0 < 0.5
    assert first.etag.startswith('"') and len(first.etag) == 130


@pytest.mark.parametrize("accept, wanted", [
    ("", openapi_v2.JSON),
    ("*/*", openapi_v2.JSON),
    ("application/json", openapi_v2.JSON),
    ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf", openapi_v2.PROTOBUF),
    ("application/com.github.proto-openapi.spec.v2.v1.0+protobuf", openapi_v2.PROTOBUF),
    ("application/json;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
     openapi_v2.PROTOBUF),
    ("text/html, application/json;q=0.9", openapi_v2.JSON),
    ("application/json;q=0", None),
    ("text/html", None),
])
def test_negotiate(accept: str, wanted: str | None) -> None:
    assert openapi_v2.negotiate(accept) == wanted
