"""Object metadata, labels, annotations and label selectors, checked as upstream does."""

from __future__ import annotations

from typing import Any

from timonel.api.errors import ApiError, bad_request
from timonel.api.resources import ResourceType
from timonel.api.validation import field as f
from timonel.api.validation import names

Obj = dict[str, Any]

TOTAL_ANNOTATION_SIZE = 256 * 1024
_STANDARD_FINALIZERS = ("kubernetes", "orphan", "foregroundDeletion")
_BANNED_OWNERS = (("v1", "Event"),)


def labels_errors(labels: Any, path: str) -> list[f.Cause]:
    out: list[f.Cause] = []
    for k, v in f.d(labels).items():
        out.extend(f.invalid(path, k, m) for m in names.is_qualified_name(k))
        out.extend(f.invalid(path, v, m) for m in names.is_label_value(f.s(v)))
    return out


def annotations_errors(annotations: Any, path: str) -> list[f.Cause]:
    out: list[f.Cause] = []
    total = 0
    for k, v in f.d(annotations).items():
        # Annotation keys are qualified names except that case does not matter.
        out.extend(f.invalid(path, k, m) for m in names.is_qualified_name(k.lower()))
        total += len(k.encode()) + len(f.s(v).encode())
    if total > TOTAL_ANNOTATION_SIZE:
        out.append(f.too_long(path, TOTAL_ANNOTATION_SIZE))
    return out


def _owner_errors(refs: Any, path: str) -> list[f.Cause]:
    out: list[f.Cause] = []
    controller = ""
    for ref in f.lst(refs):
        ref = f.d(ref)
        api_version = f.s(ref.get("apiVersion"))
        if not api_version.rpartition("/")[2]:
            out.append(f.invalid(f.child(path, "apiVersion"), api_version,
                                 "version must not be empty"))
        for fld in ("kind", "name", "uid"):
            if not f.s(ref.get(fld)):
                out.append(f.invalid(f.child(path, fld), f.s(ref.get(fld)), "must not be empty"))
        group, _, version = api_version.rpartition("/")
        if (api_version, f.s(ref.get("kind"))) in _BANNED_OWNERS:
            out.append(f.invalid(path, ref, f"{group}/{version}, Kind={ref.get('kind')} "
                                            "is disallowed from being an owner"))
        if ref.get("controller") is True:
            this = f"{ref.get('kind')}/{ref.get('name')}"
            if controller:
                out.append(f.invalid(path, refs, "Only one reference can have Controller set to "
                                                 f'true. Found "true" in references for '
                                                 f"{controller} and {this}"))
            else:
                controller = this
    return out


def _finalizer_errors(finalizers: Any, path: str) -> list[f.Cause]:
    out: list[f.Cause] = []
    for i, fin in enumerate(f.lst(finalizers)):
        fin = f.s(fin)
        msgs = names.is_qualified_name(fin)
        out.extend(f.invalid(path, fin, m) for m in msgs)
        if not msgs and "/" not in fin and fin not in _STANDARD_FINALIZERS:
            out.append(f.invalid(f.index(path, i), fin, "name is neither a standard finalizer "
                                                        "name nor is it fully qualified"))
    fins = set(f.lst(finalizers))
    if "orphan" in fins and "foregroundDeletion" in fins:
        out.append(f.invalid(path, finalizers, "finalizer orphan and foregroundDeletion cannot "
                                               "be both set"))
    return out


def object_meta_errors(md: Any, rtype: ResourceType, path: str = "metadata") -> list[f.Cause]:
    """ValidateObjectMeta: name (or the name generated from generateName) and the rest."""
    md = f.d(md)
    check = names.name_check(rtype)
    out: list[f.Cause] = []
    generate = f.s(md.get("generateName"))
    if generate:
        out.extend(f.invalid(f.child(path, "generateName"), generate, m)
                   for m in check(generate, True))
    name = f.s(md.get("name"))
    if not name:
        out.append(f.required(f.child(path, "name"), "name or generateName is required"))
    else:
        out.extend(f.invalid(f.child(path, "name"), name, m) for m in check(name, False))
    ns = f.s(md.get("namespace"))
    if rtype.namespaced:
        if not ns:
            out.append(f.required(f.child(path, "namespace")))
        else:
            out.extend(f.invalid(f.child(path, "namespace"), ns, m)
                       for m in names.name_is_dns_label(ns, False))
    elif ns:
        out.append(f.forbidden(f.child(path, "namespace"), "not allowed on this type"))
    generation = md.get("generation")
    if isinstance(generation, int) and generation < 0:
        out.append(f.invalid(f.child(path, "generation"), generation,
                             "must be greater than or equal to 0"))
    out.extend(labels_errors(md.get("labels"), f.child(path, "labels")))
    out.extend(annotations_errors(md.get("annotations"), f.child(path, "annotations")))
    out.extend(_owner_errors(md.get("ownerReferences"), f.child(path, "ownerReferences")))
    out.extend(_finalizer_errors(md.get("finalizers"), f.child(path, "finalizers")))
    return out


def template_meta_errors(md: Any, path: str) -> list[f.Cause]:
    """Pod template metadata: only labels and annotations matter."""
    md = f.d(md)
    return (labels_errors(md.get("labels"), f.child(path, "labels"))
            + annotations_errors(md.get("annotations"), f.child(path, "annotations")))


def check_request_namespace(obj: Obj, rtype: ResourceType, request_namespace: str) -> None:
    """EnsureObjectNamespaceMatchesRequestNamespace: fill in, clear, or refuse with 400."""
    md = obj.setdefault("metadata", {})
    if not isinstance(md, dict):
        raise ApiError(400, "metadata must be an object")
    ns = f.s(md.get("namespace"))
    if not rtype.namespaced:
        md.pop("namespace", None)
    elif not ns:
        md["namespace"] = request_namespace
    elif ns != request_namespace:
        raise bad_request("the namespace of the provided object does not match the namespace "
                          "sent on the request")


# -- label selectors ---------------------------------------------------------------


def selector_errors(sel: Any, path: str) -> list[f.Cause]:
    sel = f.d(sel)
    out = labels_errors(sel.get("matchLabels"), f.child(path, "matchLabels"))
    for i, expr in enumerate(f.lst(sel.get("matchExpressions"))):
        p = f.index(f.child(path, "matchExpressions"), i)
        expr = f.d(expr)
        op, values = f.s(expr.get("operator")), f.lst(expr.get("values"))
        if op in ("In", "NotIn"):
            if not values:
                out.append(f.required(f.child(p, "values"),
                                      "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if values:
                out.append(f.forbidden(f.child(p, "values"), "may not be specified when "
                                                             "`operator` is 'Exists' or "
                                                             "'DoesNotExist'"))
        else:
            out.append(f.invalid(f.child(p, "operator"), op, "not a valid selector operator"))
        k = f.s(expr.get("key"))
        out.extend(f.invalid(f.child(p, "key"), k, m) for m in names.is_qualified_name(k))
    return out


def selector_is_empty(sel: Any) -> bool:
    sel = f.d(sel)
    return not f.d(sel.get("matchLabels")) and not f.lst(sel.get("matchExpressions"))


def selector_matches(sel: Any, labels: Any) -> bool:
    """metav1.LabelSelector semantics; an empty selector matches everything."""
    sel, labels = f.d(sel), f.d(labels)
    for k, v in f.d(sel.get("matchLabels")).items():
        if labels.get(k) != v:
            return False
    for expr in f.lst(sel.get("matchExpressions")):
        expr = f.d(expr)
        k, op, values = f.s(expr.get("key")), expr.get("operator"), f.lst(expr.get("values"))
        if op == "In" and labels.get(k) not in values:
            return False
        if op == "NotIn" and k in labels and labels[k] in values:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True
