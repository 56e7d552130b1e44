"""Field selectors as `k8s.io/apimachinery/pkg/fields` parses them, with the
field label conversions and selectable field sets of kube-apiserver per kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from timonel.api.errors import bad_request
from timonel.api.resources import ResourceType
from timonel.api.selectors.messages import go_quote


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    value: str
    negated: bool = False  # "!=" rather than "=" or "=="


@dataclass(frozen=True)
class FieldSelector:
    """AND of field requirements for one kind; fields are already converted to
    the names the kind's selectable field set uses (e.g. `spec.host` becomes
    `spec.nodeName`, `regarding.name` becomes `involvedObject.name`)."""

    requirements: tuple[FieldRequirement, ...]
    group: str
    kind: str


def _split_terms(text: str) -> list[str]:
    terms: list[str] = []
    start = 0
    in_slash = False
    for i, c in enumerate(text):
        if in_slash:
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    # The first operator wins; "!=" and "==" are tried before "=" at each position.
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def _unescape(value: str) -> str:
    if not any(c in value for c in "\\,="):
        return value
    out: list[str] = []
    in_slash = False
    for c in value:
        if in_slash:
            if c not in "\\,=":
                raise bad_request(f"invalid field selector: invalid escape sequence: \\{c}")
            out.append(c)
            in_slash = False
        elif c == "\\":
            in_slash = True
        elif c in ",=":
            # Go prints the rune with %v: its number.
            raise bad_request(f"invalid field selector: unescaped character in value: {ord(c)}")
        else:
            out.append(c)
    if in_slash:
        raise bad_request("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def escape_field_value(value: str) -> str:
    """Upstream `fields.EscapeValue`, for clients building selectors."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


_META_FIELDS = ("metadata.name", "metadata.namespace")


def _not_known(label: str) -> str:
    return (f'{go_quote(label)} is not a known field selector: '
            'only "metadata.name", "metadata.namespace"')


def _not_supported(label: str) -> str:
    return f"field label not supported: {label}"


# (group, kind) -> (field label -> selectable field, message for an unknown label).
# Kinds not listed accept only metadata.name and metadata.namespace (upstream's
# DefaultMetaV1FieldSelectorConversion).
_POD_FIELDS = ("metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
               "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork",
               "status.phase", "status.podIP", "status.podIPs", "status.nominatedNodeName")
_EVENT_FIELDS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                 "involvedObject.uid", "involvedObject.apiVersion",
                 "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                 "reportingComponent", "source", "type", "metadata.namespace", "metadata.name")
_CONVERSIONS: dict[tuple[str, str], tuple[dict[str, str], Callable[[str], str]]] = {
    ("", "Pod"): ({**{f: f for f in _POD_FIELDS}, "spec.host": "spec.nodeName"}, _not_supported),
    ("", "Node"): ({"metadata.name": "metadata.name", "spec.unschedulable": "spec.unschedulable"},
                   _not_supported),
    ("", "Event"): ({f: f for f in _EVENT_FIELDS}, _not_supported),
    ("events.k8s.io", "Event"): ({
        "reason": "reason", "reportingController": "reportingComponent", "source": "source",
        "type": "type", "metadata.namespace": "metadata.namespace",
        "metadata.name": "metadata.name",
        **{f"regarding.{f}": f"involvedObject.{f}" for f in (
            "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")},
    }, _not_supported),
    ("", "Namespace"): ({"status.phase": "status.phase", "metadata.name": "metadata.name"},
                        _not_supported),
    ("", "Secret"): ({"type": "type", **{f: f for f in _META_FIELDS}}, _not_supported),
    ("", "Service"): ({"spec.clusterIP": "spec.clusterIP", "spec.type": "spec.type",
                       **{f: f for f in _META_FIELDS}}, _not_supported),
    ("batch", "Job"): ({"status.successful": "status.successful", **{f: f for f in _META_FIELDS}},
                       lambda label: f"field label {go_quote(label)} not supported for batchv1.Job"),
    # Upstream selects on status.replicas but forgot to register the conversion
    # for apps/v1 (kubernetes#135136); we accept what its documentation promises.
    ("apps", "ReplicaSet"): ({"status.replicas": "status.replicas",
                              **{f: f for f in _META_FIELDS}}, _not_known),
}
_DEFAULT_CONVERSION: tuple[dict[str, str], Callable[[str], str]] = (
    {f: f for f in _META_FIELDS}, _not_known)


def parse_field_selector(text: str, rtype: ResourceType) -> FieldSelector:
    """Parse `fieldSelector` query text for one resource type.

    Supports `=`, `==`, `!=`, commas for AND and upstream's escapes (`\\,`
    `\\=` `\\\\`). Raises ApiError 400 with upstream's message for bad syntax or
    a field the kind cannot select on.
    """
    parts = sorted(_split_terms(text)) if text else []
    parsed: list[tuple[str, str, str]] = []
    for part in parts:
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        lhs, op, rhs = split
        parsed.append((lhs, op, _unescape(rhs)))
    fields, message = _CONVERSIONS.get((rtype.group, rtype.kind), _DEFAULT_CONVERSION)
    reqs: list[FieldRequirement] = []
    for lhs, op, value in parsed:
        field = fields.get(lhs)
        if field is None:
            raise bad_request(message(lhs))
        reqs.append(FieldRequirement(field, value, negated=(op == "!=")))
    return FieldSelector(tuple(reqs), rtype.group, rtype.kind)


def _s(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _d(obj: Any, key: str) -> dict[str, Any]:
    """obj[key] if it is an object, else {}: matching must not fail on odd stored shapes."""
    v = obj.get(key) if isinstance(obj, dict) else None
    return v if isinstance(v, dict) else {}


def _bool_text(v: Any) -> str:
    return "true" if v is True else "false"


def _int_text(v: Any) -> str:
    return str(v) if isinstance(v, int) and not isinstance(v, bool) else "0"


def _pod_fields(obj: dict[str, Any]) -> dict[str, str]:
    spec, status = _d(obj, "spec"), _d(obj, "status")
    pod_ip = _s(status.get("podIP"))
    if not pod_ip:
        ips = status.get("podIPs")
        first = ips[0] if isinstance(ips, list) and ips else None
        pod_ip = _s(first.get("ip")) if isinstance(first, dict) else ""
    return {
        "spec.nodeName": _s(spec.get("nodeName")),
        "spec.restartPolicy": _s(spec.get("restartPolicy")),
        "spec.schedulerName": _s(spec.get("schedulerName")),
        "spec.serviceAccountName": _s(spec.get("serviceAccountName")),
        "spec.hostNetwork": _bool_text(spec.get("hostNetwork")),
        "status.phase": _s(status.get("phase")),
        "status.podIP": pod_ip,
        "status.nominatedNodeName": _s(status.get("nominatedNodeName")),
    }


def _event_fields(obj: dict[str, Any], new_api: bool) -> dict[str, str]:
    ref = _d(obj, "regarding" if new_api else "involvedObject")
    controller = _s(obj.get("reportingController" if new_api else "reportingComponent"))
    source = _d(obj, "deprecatedSource" if new_api else "source").get("component")
    fields = {f"involvedObject.{k}": _s(ref.get(k)) for k in (
        "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")}
    fields.update({
        "reason": _s(obj.get("reason")),
        "reportingComponent": controller,
        "source": _s(source) or controller,
        "type": _s(obj.get("type")),
    })
    return fields


def selectable_fields(group: str, kind: str, obj: dict[str, Any]) -> dict[str, str]:
    """The field set a kind exposes to field selectors (upstream `GetAttrs`)."""
    md = _d(obj, "metadata")
    fields = {"metadata.name": _s(md.get("name")), "metadata.namespace": _s(md.get("namespace"))}
    spec, status = _d(obj, "spec"), _d(obj, "status")
    if (group, kind) == ("", "Pod"):
        fields.update(_pod_fields(obj))
    elif kind == "Event" and group in ("", "events.k8s.io"):
        fields.update(_event_fields(obj, new_api=bool(group)))
    elif (group, kind) == ("", "Node"):
        fields["spec.unschedulable"] = _bool_text(spec.get("unschedulable"))
    elif (group, kind) == ("", "Namespace"):
        fields["status.phase"] = _s(status.get("phase"))
    elif (group, kind) == ("", "Secret"):
        fields["type"] = _s(obj.get("type"))
    elif (group, kind) == ("", "Service"):
        fields["spec.clusterIP"] = _s(spec.get("clusterIP"))
        fields["spec.type"] = _s(spec.get("type"))
    elif (group, kind) == ("batch", "Job"):
        fields["status.successful"] = _int_text(status.get("succeeded", 0))
    elif (group, kind) == ("apps", "ReplicaSet"):
        fields["status.replicas"] = _int_text(status.get("replicas", 0))
    return fields


def field_matches(selector: FieldSelector, obj: dict[str, Any]) -> bool:
    if not selector.requirements:
        return True
    fields = selectable_fields(selector.group, selector.kind, obj)
    # A label the conversion accepts but the field set lacks (status.podIPs)
    # reads as "", as upstream's fields.Set.Get does.
    return all((fields.get(r.field, "") == r.value) != r.negated for r in selector.requirements)


_INDEXED_FIELDS = ("metadata.name", "spec.nodeName")


def field_index_value(selector: FieldSelector) -> tuple[str, str] | None:
    """`(field, value)` if the selector pins one exact `metadata.name` (preferred)
    or `spec.nodeName`, so the caller can look up instead of scanning."""
    for wanted in _INDEXED_FIELDS:
        for r in selector.requirements:
            if r.field == wanted and not r.negated:
                return wanted, r.value
    return None
