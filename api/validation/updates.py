"""What an update may not change (upstream's Validate*Update rules and wording)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timonel.api.jsonutil import deep_copy
from timonel.api.resources import ResourceType
from timonel.api.validation import field as f
from timonel.api.validation.kinds import secret_data

Obj = dict[str, Any]

IMMUTABLE = "field is immutable"
_POD_UPDATABLE = ("`spec.containers[*].image`,`spec.initContainers[*].image`,"
                  "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing "
                  "tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if "
                  "it was previously negative)")
_STS_UPDATABLE = ("updates to statefulset spec for fields other than 'replicas', 'ordinals', "
                  "'template', 'updateStrategy', 'revisionHistoryLimit', "
                  "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")
_IMMUTABLE_WHEN_SET = "field is immutable when `immutable` is set"
_SCHEDULING_DIRECTIVES = ("nodeSelector", "affinity", "tolerations", "schedulingGates")


def normalized(v: Any) -> Any:
    """Equality as Go sees decoded structs: null, {}, [] and "" are all "not set"."""
    if isinstance(v, dict):
        out = {k: normalized(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x not in (None, {}, [], "")}
    if isinstance(v, list):
        return [normalized(x) for x in v]
    return v


def _same(a: Any, b: Any) -> bool:
    return normalized(a) == normalized(b)


def _immutable(new: Any, old: Any, path: str) -> list[f.Cause]:
    return [] if _same(new, old) else [f.invalid(path, new, IMMUTABLE)]


def meta_update_errors(new: Obj, old: Obj) -> list[f.Cause]:
    nm, om = f.d(new.get("metadata")), f.d(old.get("metadata"))
    out: list[f.Cause] = []
    for fld in ("name", "namespace"):
        out += _immutable(f.s(nm.get(fld)), f.s(om.get(fld)), f.child("metadata", fld))
    # Upstream keeps the stored uid and creationTimestamp when a client leaves them out.
    for fld in ("uid", "creationTimestamp"):
        if nm.get(fld) and om.get(fld):
            out += _immutable(nm[fld], om[fld], f.child("metadata", fld))
    gen_new, gen_old = nm.get("generation"), om.get("generation")
    if isinstance(gen_new, int) and isinstance(gen_old, int) and gen_new < gen_old:
        out.append(f.invalid("metadata.generation", gen_new, "must not be decremented"))
    if om.get("deletionTimestamp"):
        added = sorted(set(f.lst(nm.get("finalizers"))) - set(f.lst(om.get("finalizers"))))
        if added:
            out.append(f.forbidden("metadata.finalizers", "no new finalizers can be added if the "
                                   f"object is being deleted, found new finalizers {added}"))
    return out


def _diff(new: Any, old: Any, path: str, out: list[str]) -> None:
    """Paths where two normalized documents differ, for a readable Forbidden message."""
    if isinstance(new, dict) and isinstance(old, dict):
        for k in sorted(set(new) | set(old)):
            _diff(new.get(k), old.get(k), f.child(path, k), out)
    elif isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        for i, (a, b) in enumerate(zip(new, old, strict=True)):
            _diff(a, b, f.index(path, i), out)
    elif new != old:
        out.append(f"{path}: {f.render(old)} -> {f.render(new)}")


def _pod_update_errors(new: Obj, old: Obj) -> list[f.Cause]:
    ns, os_ = normalized(f.d(new.get("spec"))), normalized(f.d(old.get("spec")))
    out: list[f.Cause] = []
    for fld in ("containers", "initContainers"):
        nc, oc = f.lst(ns.get(fld)), f.lst(os_.get(fld))
        path = f.child("spec", fld)
        if len(nc) != len(oc):
            return [*out, f.forbidden(path, "pod updates may not add or remove containers")]
        for i, c in enumerate(nc):
            image = f.s(f.d(c).get("image"))
            if not image:
                out.append(f.required(f.child(f.index(path, i), "image")))
            elif image != image.strip():
                out.append(f.invalid(f.child(f.index(path, i), "image"), image,
                                     "must not have leading or trailing whitespace"))
    new_ads, old_ads = ns.get("activeDeadlineSeconds"), os_.get("activeDeadlineSeconds")
    if new_ads is not None:
        if not isinstance(new_ads, int) or not 0 <= new_ads <= 2**31 - 1:
            return [*out, f.invalid("spec.activeDeadlineSeconds", new_ads,
                                    "must be between 0 and 2147483647, inclusive")]
        if old_ads is not None and old_ads < new_ads:
            return [*out, f.invalid("spec.activeDeadlineSeconds", new_ads,
                                    "must be less than or equal to previous value")]
    elif old_ads is not None:
        out.append(f.invalid("spec.activeDeadlineSeconds", None,
                             "must not update from a positive integer to nil value"))
    new_tol = [f.d(t) for t in f.lst(ns.get("tolerations"))]
    for t in f.lst(os_.get("tolerations")):
        t = {k: v for k, v in f.d(t).items() if k != "tolerationSeconds"}
        if not any({k: v for k, v in n.items() if k != "tolerationSeconds"} == t for n in new_tol):
            out.append(f.forbidden("spec.tolerations", "existing toleration can not be modified "
                                                       "except its tolerationSeconds"))
            break
    old_gates = {f.s(f.d(g).get("name")) for g in f.lst(os_.get("schedulingGates"))}
    for i, g in enumerate(f.lst(ns.get("schedulingGates"))):
        name = f.s(f.d(g).get("name"))
        if name not in old_gates:
            out.append(f.forbidden(f.child(f.index("spec.schedulingGates", i), "name"),
                                   f"only deletion is allowed, but found new scheduling gate "
                                   f"'{name}'"))
    # Blank out what may change, then anything left that differs is forbidden.
    munged = deep_copy(ns)
    for fld in ("containers", "initContainers"):
        for c, oc in zip(f.lst(munged.get(fld)), f.lst(os_.get(fld)), strict=False):
            if isinstance(c, dict) and isinstance(oc, dict):
                c.pop("image", None)
                if "image" in oc:
                    c["image"] = oc["image"]
    for fld in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
        munged.pop(fld, None)
        if fld in os_:
            munged[fld] = os_[fld]
    old_grace, new_grace = os_.get("terminationGracePeriodSeconds"), munged.get(
        "terminationGracePeriodSeconds")
    if isinstance(old_grace, int) and old_grace < 0 and new_grace == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    if munged != os_:
        changes: list[str] = []
        _diff(munged, os_, "spec", changes)
        out.append(f.forbidden("spec", f"pod updates may not change fields other than "
                                       f"{_POD_UPDATABLE}\n" + "\n".join(changes)))
    return out


def _selector_immutable(new: Obj, old: Obj) -> list[f.Cause]:
    return _immutable(f.d(new.get("spec")).get("selector"), f.d(old.get("spec")).get("selector"),
                      "spec.selector")


def _statefulset_update_errors(new: Obj, old: Obj) -> list[f.Cause]:
    mutable = ("replicas", "ordinals", "template", "updateStrategy", "revisionHistoryLimit",
               "persistentVolumeClaimRetentionPolicy", "minReadySeconds")
    ns = {k: v for k, v in f.d(new.get("spec")).items() if k not in mutable}
    os_ = {k: v for k, v in f.d(old.get("spec")).items() if k not in mutable}
    return [] if _same(ns, os_) else [f.forbidden("spec", _STS_UPDATABLE)]


def _job_update_errors(new: Obj, old: Obj) -> list[f.Cause]:
    ns, os_ = f.d(new.get("spec")), f.d(old.get("spec"))
    out = _selector_immutable(new, old)
    out += _immutable(ns.get("completionMode"), os_.get("completionMode"), "spec.completionMode")
    nt, ot = normalized(f.d(ns.get("template"))), normalized(f.d(os_.get("template")))
    if os_.get("suspend") is True and ns.get("suspend") is True:
        # A suspended Job that never started may be re-pointed at other nodes.
        for t in (nt, ot):
            t.pop("metadata", None)
            for fld in _SCHEDULING_DIRECTIVES:
                f.d(t.get("spec")).pop(fld, None)
    if nt != ot:
        out.append(f.invalid("spec.template", f.d(ns.get("template")), IMMUTABLE))
    return out


def _service_update_errors(new: Obj, old: Obj) -> list[f.Cause]:
    ns, os_ = f.d(new.get("spec")), f.d(old.get("spec"))
    if "ExternalName" in (ns.get("type"), os_.get("type")):
        return []

    def ips(spec: dict[str, Any]) -> list[str]:
        listed = [f.s(ip) for ip in f.lst(spec.get("clusterIPs")) if ip]
        return listed or ([f.s(spec["clusterIP"])] if f.s(spec.get("clusterIP")) else [])

    new_ips, old_ips = ips(ns), ips(os_)
    # Leaving clusterIP out keeps the allocated one (the server copies it over).
    if old_ips and new_ips and new_ips[0] != old_ips[0]:
        return [f.invalid("spec.clusterIPs[0]", new_ips, "may not change once set")]
    return []


def _immutable_payload(new: Obj, old: Obj, fields: tuple[str, ...]) -> list[f.Cause]:
    if old.get("immutable") is not True:
        return []
    out: list[f.Cause] = []
    if new.get("immutable") is not True:
        out.append(f.forbidden("immutable", _IMMUTABLE_WHEN_SET))
    for fld in fields:
        if not _same(new.get(fld), old.get(fld)):
            out.append(f.forbidden(fld, _IMMUTABLE_WHEN_SET))
    return out


def _configmap_update_errors(new: Obj, old: Obj) -> list[f.Cause]:
    return _immutable_payload(new, old, ("data", "binaryData"))


def _secret_update_errors(new: Obj, old: Obj) -> list[f.Cause]:
    out = _immutable(f.s(new.get("type")) or "Opaque", f.s(old.get("type")) or "Opaque", "type")
    if old.get("immutable") is True:
        if new.get("immutable") is not True:
            out.append(f.forbidden("immutable", _IMMUTABLE_WHEN_SET))
        if secret_data(new) != secret_data(old):
            out.append(f.forbidden("data", _IMMUTABLE_WHEN_SET))
    return out


def _node_update_errors(new: Obj, old: Obj) -> list[f.Cause]:
    ns, os_ = f.d(new.get("spec")), f.d(old.get("spec"))

    def cidrs(spec: dict[str, Any]) -> list[str]:
        listed = [f.s(c) for c in f.lst(spec.get("podCIDRs")) if c]
        return listed or ([f.s(spec["podCIDR"])] if f.s(spec.get("podCIDR")) else [])

    out: list[f.Cause] = []
    if cidrs(os_) and cidrs(ns) != cidrs(os_):
        out.append(f.forbidden("spec.podCIDRs",
                               'node updates may not change podCIDR except from "" to valid'))
    if f.s(os_.get("providerID")) and ns.get("providerID") != os_.get("providerID"):
        out.append(f.forbidden("spec.providerID",
                               'node updates may not change providerID except from "" to valid'))
    return out


def _binding_update_errors(new: Obj, old: Obj) -> list[f.Cause]:
    if _same(new.get("roleRef"), old.get("roleRef")):
        return []
    return [f.invalid("roleRef", new.get("roleRef"), "cannot change roleRef")]


def _priority_class_update_errors(new: Obj, old: Obj) -> list[f.Cause]:
    out: list[f.Cause] = []
    if new.get("value") != old.get("value"):
        out.append(f.forbidden("value", "may not be changed in an update."))
    return out + _immutable(new.get("preemptionPolicy"), old.get("preemptionPolicy"),
                            "preemptionPolicy")


_UPDATE_RULES: dict[tuple[str, str], Callable[[Obj, Obj], list[f.Cause]]] = {
    ("", "Pod"): _pod_update_errors,
    ("", "Service"): _service_update_errors,
    ("", "ConfigMap"): _configmap_update_errors,
    ("", "Secret"): _secret_update_errors,
    ("", "Node"): _node_update_errors,
    ("apps", "Deployment"): _selector_immutable,
    ("apps", "ReplicaSet"): _selector_immutable,
    ("apps", "DaemonSet"): _selector_immutable,
    ("apps", "StatefulSet"): _statefulset_update_errors,
    ("apps", "ControllerRevision"): lambda n, o: _immutable(n.get("data"), o.get("data"), "data"),
    ("batch", "Job"): _job_update_errors,
    ("discovery.k8s.io", "EndpointSlice"):
        lambda n, o: _immutable(n.get("addressType"), o.get("addressType"), "addressType"),
    ("rbac.authorization.k8s.io", "RoleBinding"): _binding_update_errors,
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): _binding_update_errors,
    ("scheduling.k8s.io", "PriorityClass"): _priority_class_update_errors,
}


def validate_update(new: Obj, old: Obj, rtype: ResourceType) -> list[f.Cause]:
    """Causes for changes an update may not make; empty when the update is allowed."""
    out = meta_update_errors(new, old)
    rule = _UPDATE_RULES.get((rtype.group, rtype.kind))
    if rule is not None:
        out += rule(new, old)
    return out
