"""Per-kind validation of the non-workload kinds: Service, ConfigMap, Secret, Node, RBAC, ..."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from typing import Any

from timonel.api.quantity import QuantityError, canonical_quantity, parse_quantity
from timonel.api.validation import field as f
from timonel.api.validation import meta, names, pods

Obj = dict[str, Any]

MAX_CONFIG_SIZE = 1024 * 1024  # ConfigMap and Secret payloads
SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
SESSION_AFFINITIES = ("ClientIP", "None")
TRAFFIC_POLICIES = ("Cluster", "Local")
RBAC_GROUP = "rbac.authorization.k8s.io"
_NONNEG = "must be greater than or equal to 0"
_IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
_CIDR_MSG = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
_SYSTEM_PRIORITY_CLASSES = {"system-node-critical": 2000001000,
                            "system-cluster-critical": 2000000000}
_HIGHEST_USER_PRIORITY = 1000000000


def _is_ip(v: str) -> bool:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return False
    return True


def _is_cidr(v: str) -> bool:
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        return False
    return "/" in v


def _service_port_errors(port: dict[str, Any], path: str, need_name: bool,
                         seen: set[str]) -> list[f.Cause]:
    out: list[f.Cause] = []
    name = f.s(port.get("name"))
    if need_name and not name:
        out.append(f.required(f.child(path, "name")))
    elif name:
        out += [f.invalid(f.child(path, "name"), name, m) for m in names.is_dns1123_label(name)]
        if name in seen:
            out.append(f.duplicate(f.child(path, "name"), name))
        seen.add(name)
    num = port.get("port")
    if isinstance(num, int):
        out += [f.invalid(f.child(path, "port"), num, m) for m in names.is_valid_port_num(num)]
    proto = port.get("protocol")
    if proto is not None and proto not in pods.PORT_PROTOCOLS:
        out.append(f.not_supported(f.child(path, "protocol"), proto, pods.PORT_PROTOCOLS))
    target = port.get("targetPort")
    if isinstance(target, int) and not isinstance(target, bool):
        out += [f.invalid(f.child(path, "targetPort"), target, m)
                for m in names.is_valid_port_num(target)]
    elif isinstance(target, str):
        out += [f.invalid(f.child(path, "targetPort"), target, m)
                for m in names.is_valid_port_name(target)]
    app = port.get("appProtocol")
    if isinstance(app, str):
        out += [f.invalid(f.child(path, "appProtocol"), app, m)
                for m in names.is_qualified_name(app)]
    return out


def service_errors(obj: Obj) -> list[f.Cause]:
    spec, path = f.d(obj.get("spec")), "spec"
    out: list[f.Cause] = []
    stype = spec.get("type", "ClusterIP")
    ports = [f.d(p) for p in f.lst(spec.get("ports"))]
    cluster_ips = [f.s(ip) for ip in f.lst(spec.get("clusterIPs"))] or \
        ([f.s(spec.get("clusterIP"))] if f.s(spec.get("clusterIP")) else [])
    headless = bool(cluster_ips) and cluster_ips[0] == "None"
    if not ports and not headless and stype != "ExternalName":
        out.append(f.required(f.child(path, "ports")))
    if stype not in SERVICE_TYPES:
        out.append(f.not_supported(f.child(path, "type"), stype, SERVICE_TYPES))
    if stype in ("LoadBalancer", "NodePort") and headless:
        out.append(f.invalid(f.index(f.child(path, "clusterIPs"), 0), "None",
                             f"may not be set to 'None' for {stype} services"))
    if stype == "ExternalName":
        if cluster_ips:
            out.append(f.forbidden(f.child(path, "clusterIPs"),
                                   "may not be set for ExternalName services"))
        cname = f.s(spec.get("externalName")).removesuffix(".")
        if not cname:
            out.append(f.required(f.child(path, "externalName")))
        else:
            out += [f.invalid(f.child(path, "externalName"), cname, m)
                    for m in names.is_dns1123_subdomain(cname)]
    for i, ip in enumerate(cluster_ips):
        if ip not in ("None", "") and not _is_ip(ip):
            out.append(f.invalid(f.index(f.child(path, "clusterIPs"), i), ip, _IP_MSG))
    seen: set[str] = set()
    keys: set[tuple[Any, Any]] = set()
    node_ports: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        pp = f.index(f.child(path, "ports"), i)
        out += _service_port_errors(port, pp, len(ports) > 1, seen)
        key = (port.get("protocol") or "TCP", port.get("port"))
        if key in keys:
            out.append(f.duplicate(pp, {"port": key[1], "protocol": key[0]}))
        keys.add(key)
        node_port = port.get("nodePort")
        if isinstance(node_port, int) and node_port != 0:
            if stype == "ClusterIP":
                out.append(f.forbidden(f.child(pp, "nodePort"),
                                       "may not be used when `type` is 'ClusterIP'"))
            if (key[0], node_port) in node_ports:
                out.append(f.duplicate(f.child(pp, "nodePort"), node_port))
            node_ports.add((key[0], node_port))
    if spec.get("selector") is not None:
        out += meta.labels_errors(spec["selector"], f.child(path, "selector"))
    affinity = spec.get("sessionAffinity")
    if affinity is not None and affinity not in SESSION_AFFINITIES:
        out.append(f.not_supported(f.child(path, "sessionAffinity"), affinity, SESSION_AFFINITIES))
    for fld in ("externalTrafficPolicy", "internalTrafficPolicy"):
        v = spec.get(fld)
        if v is not None and v not in TRAFFIC_POLICIES:
            out.append(f.not_supported(f.child(path, fld), v, TRAFFIC_POLICIES))
    if spec.get("externalTrafficPolicy") and stype not in ("NodePort", "LoadBalancer"):
        out.append(f.invalid(f.child(path, "externalTrafficPolicy"), spec["externalTrafficPolicy"],
                             "may only be set for externally-accessible services"))
    for i, ip in enumerate(f.lst(spec.get("externalIPs"))):
        if not _is_ip(f.s(ip)):
            out.append(f.invalid(f.index(f.child(path, "externalIPs"), i), ip, _IP_MSG))
    return out


def _decoded_size(value: Any) -> int:
    try:
        return len(base64.b64decode(f.s(value)))
    except (binascii.Error, ValueError):
        return len(f.s(value))


def configmap_errors(obj: Obj) -> list[f.Cause]:
    data, binary = f.d(obj.get("data")), f.d(obj.get("binaryData"))
    out: list[f.Cause] = []
    total = 0
    for k, v in data.items():
        out += [f.invalid(f.key("data", k), k, m) for m in names.is_config_map_key(k)]
        if k in binary:
            out.append(f.invalid(f.key("data", k), k, "duplicate of key present in binaryData"))
        total += len(f.s(v).encode())
    for k, v in binary.items():
        out += [f.invalid(f.key("binaryData", k), k, m) for m in names.is_config_map_key(k)]
        total += _decoded_size(v)
    if total > MAX_CONFIG_SIZE:
        out.append(f.too_long("", MAX_CONFIG_SIZE))
    return out


def secret_data(obj: Obj) -> dict[str, bytes]:
    """The secret's payload as upstream sees it: `data` with `stringData` merged over it."""
    out: dict[str, bytes] = {}
    for k, v in f.d(obj.get("data")).items():
        try:
            out[k] = base64.b64decode(f.s(v))
        except (binascii.Error, ValueError):
            out[k] = f.s(v).encode()
    for k, v in f.d(obj.get("stringData")).items():
        out[k] = f.s(v).encode()
    return out


def secret_errors(obj: Obj) -> list[f.Cause]:
    data = secret_data(obj)
    out: list[f.Cause] = []
    for k in data:
        out += [f.invalid(f.key("data", k), k, m) for m in names.is_config_map_key(k)]
    if sum(len(v) for v in data.values()) > MAX_CONFIG_SIZE:
        out.append(f.too_long("data", MAX_CONFIG_SIZE))
    stype = f.s(obj.get("type"))
    annotations = f.d(f.d(obj.get("metadata")).get("annotations"))
    need: tuple[str, ...] = ()
    if stype == "kubernetes.io/service-account-token":
        key = "kubernetes.io/service-account.name"
        if not f.s(annotations.get(key)):
            out.append(f.required(f.key("metadata.annotations", key)))
    elif stype in ("kubernetes.io/dockercfg", "kubernetes.io/dockerconfigjson"):
        key = ".dockercfg" if stype == "kubernetes.io/dockercfg" else ".dockerconfigjson"
        if key not in data:
            need = (key,)
        else:
            try:
                if not isinstance(json.loads(data[key]), dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                out.append(f.invalid(f.key("data", key), "<secret contents redacted>", str(e)))
    elif stype == "kubernetes.io/basic-auth":
        if "username" not in data and "password" not in data:
            need = ("username", "password")
    elif stype == "kubernetes.io/ssh-auth":
        if not data.get("ssh-privatekey"):
            need = ("ssh-privatekey",)
    elif stype == "kubernetes.io/tls":
        need = tuple(k for k in ("tls.crt", "tls.key") if k not in data)
    out += [f.required(f.key("data", k)) for k in need]
    return out


def _quantities_errors(values: Any, path: str) -> list[f.Cause]:
    out: list[f.Cause] = []
    for k, q in f.d(values).items():
        try:
            if parse_quantity(q) < 0:
                out.append(f.invalid(f.child(path, k), canonical_quantity(q), _NONNEG))
        except QuantityError as e:
            out.append(f.invalid(f.child(path, k), q, str(e)))
    return out


def taints_errors(taints: Any, path: str) -> list[f.Cause]:
    out: list[f.Cause] = []
    seen: set[tuple[str, str]] = set()
    for i, t in enumerate(f.lst(taints)):
        t, p = f.d(t), f.index(path, i)
        k, v, effect = f.s(t.get("key")), f.s(t.get("value")), f.s(t.get("effect"))
        out += [f.invalid(f.child(p, "key"), k, m) for m in names.is_qualified_name(k)]
        msgs = names.is_label_value(v)
        if msgs:
            out.append(f.invalid(f.child(p, "value"), v, ";".join(msgs)))
        if not effect:
            out.append(f.required(f.child(p, "effect")))
        elif effect not in pods.TAINT_EFFECTS:
            out.append(f.not_supported(f.child(p, "effect"), effect, pods.TAINT_EFFECTS))
        if (k, effect) in seen:
            dup = f.duplicate(p, t)
            dup["message"] += ": taints must be unique by key and effect pair"
            out.append(dup)
        seen.add((k, effect))
    return out


def node_errors(obj: Obj) -> list[f.Cause]:
    spec, status = f.d(obj.get("spec")), f.d(obj.get("status"))
    out = taints_errors(spec.get("taints"), "spec.taints")
    cidrs = [f.s(c) for c in f.lst(spec.get("podCIDRs"))]
    for i, c in enumerate(cidrs):
        if not _is_cidr(c):
            out.append(f.invalid(f.index("spec.podCIDRs", i), c, _CIDR_MSG))
    if spec.get("podCIDR") and not _is_cidr(f.s(spec["podCIDR"])):
        out.append(f.invalid("spec.podCIDR", spec["podCIDR"], _CIDR_MSG))
    out += _quantities_errors(status.get("capacity"), "status.capacity")
    out += _quantities_errors(status.get("allocatable"), "status.allocatable")
    return out


def _rule_errors(rules: Any, path: str, namespaced: bool) -> list[f.Cause]:
    out: list[f.Cause] = []
    for i, rule in enumerate(f.lst(rules)):
        rule, p = f.d(rule), f.index(path, i)
        if not f.lst(rule.get("verbs")):
            out.append(f.required(f.child(p, "verbs"), "verbs must contain at least one value"))
        urls = f.lst(rule.get("nonResourceURLs"))
        if urls:
            if namespaced:
                out.append(f.invalid(f.child(p, "nonResourceURLs"), urls,
                                     "namespaced rules cannot apply to non-resource URLs"))
            if any(f.lst(rule.get(k)) for k in ("apiGroups", "resources", "resourceNames")):
                out.append(f.invalid(f.child(p, "nonResourceURLs"), urls, "rules cannot apply to "
                                     "both regular resources and non-resource URLs"))
            continue
        if not f.lst(rule.get("apiGroups")):
            out.append(f.required(f.child(p, "apiGroups"),
                                  "resource rules must supply at least one api group"))
        if not f.lst(rule.get("resources")):
            out.append(f.required(f.child(p, "resources"),
                                  "resource rules must supply at least one resource"))
    return out


def role_errors(obj: Obj) -> list[f.Cause]:
    return _rule_errors(obj.get("rules"), "rules", namespaced=True)


def cluster_role_errors(obj: Obj) -> list[f.Cause]:
    if obj.get("aggregationRule") is not None:
        return []  # the aggregation controller fills the rules in
    return _rule_errors(obj.get("rules"), "rules", namespaced=False)


def _binding_errors(obj: Obj, role_kinds: tuple[str, ...], namespaced: bool) -> list[f.Cause]:
    ref, out = f.d(obj.get("roleRef")), []
    if ref.get("apiGroup") != RBAC_GROUP:
        out.append(f.not_supported("roleRef.apiGroup", f.s(ref.get("apiGroup")), (RBAC_GROUP,)))
    if ref.get("kind") not in role_kinds:
        out.append(f.not_supported("roleRef.kind", f.s(ref.get("kind")), role_kinds))
    name = f.s(ref.get("name"))
    if not name:
        out.append(f.required("roleRef.name"))
    else:
        out += [f.invalid("roleRef.name", name, m) for m in names.name_is_path_segment(name, False)]
    for i, sub in enumerate(f.lst(obj.get("subjects"))):
        sub, p = f.d(sub), f.index("subjects", i)
        kind, sname, group = f.s(sub.get("kind")), f.s(sub.get("name")), f.s(sub.get("apiGroup"))
        if not sname:
            out.append(f.required(f.child(p, "name")))
        if kind == "ServiceAccount":
            if sname:
                out += [f.invalid(f.child(p, "name"), sname, m)
                        for m in names.is_dns1123_subdomain(sname)]
            if group:
                out.append(f.not_supported(f.child(p, "apiGroup"), group, ("",)))
            if not namespaced and not f.s(sub.get("namespace")):
                out.append(f.required(f.child(p, "namespace")))
        elif kind in ("User", "Group"):
            if group != RBAC_GROUP:
                out.append(f.not_supported(f.child(p, "apiGroup"), group, (RBAC_GROUP,)))
        else:
            out.append(f.not_supported(f.child(p, "kind"), kind, ("ServiceAccount", "User",
                                                                  "Group")))
    return out


def role_binding_errors(obj: Obj) -> list[f.Cause]:
    return _binding_errors(obj, ("Role", "ClusterRole"), namespaced=True)


def cluster_role_binding_errors(obj: Obj) -> list[f.Cause]:
    return _binding_errors(obj, ("ClusterRole",), namespaced=False)


def lease_errors(obj: Obj) -> list[f.Cause]:
    spec, out = f.d(obj.get("spec")), []
    duration = spec.get("leaseDurationSeconds")
    if isinstance(duration, int) and duration <= 0:
        out.append(f.invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if isinstance(transitions, int) and transitions < 0:
        out.append(f.invalid("spec.leaseTransitions", transitions, _NONNEG))
    return out


def endpointslice_errors(obj: Obj) -> list[f.Cause]:
    kind = obj.get("addressType")
    valid = ("IPv4", "IPv6", "FQDN")
    return [] if kind is None or kind in valid else [f.not_supported("addressType", kind, valid)]


def priority_class_errors(obj: Obj) -> list[f.Cause]:
    name = f.s(f.d(obj.get("metadata")).get("name"))
    value = obj.get("value")
    out: list[f.Cause] = []
    if name.startswith("system-"):
        if name not in _SYSTEM_PRIORITY_CLASSES:
            out.append(f.forbidden("metadata.name",
                                   "priority class names with 'system-' prefix are reserved"))
    elif isinstance(value, int) and value > _HIGHEST_USER_PRIORITY:
        out.append(f.forbidden("value", "maximum allowed value of a user defined priority is "
                                        f"{_HIGHEST_USER_PRIORITY}"))
    policy = obj.get("preemptionPolicy")
    if policy is not None and policy not in ("PreemptLowerPriority", "Never"):
        out.append(f.not_supported("preemptionPolicy", policy, ("PreemptLowerPriority", "Never")))
    return out


def resource_quota_errors(obj: Obj) -> list[f.Cause]:
    return _quantities_errors(f.d(obj.get("spec")).get("hard"), "spec.hard")


def pvc_errors(obj: Obj) -> list[f.Cause]:
    spec, out = f.d(obj.get("spec")), []
    modes = f.lst(spec.get("accessModes"))
    valid = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
    if not modes:
        out.append(f.required("spec.accessModes", "at least 1 access mode is required"))
    for mode in modes:
        if mode not in valid:
            out.append(f.not_supported("spec.accessModes", mode, valid))
    requests = f.d(f.d(spec.get("resources")).get("requests"))
    if "storage" not in requests:
        out.append(f.required("spec.resources[storage]"))
    out += _quantities_errors(requests, "spec.resources.requests")
    return out


def network_policy_errors(obj: Obj) -> list[f.Cause]:
    spec, out = f.d(obj.get("spec")), []
    out += meta.selector_errors(spec.get("podSelector"), "spec.podSelector")
    for i, t in enumerate(f.lst(spec.get("policyTypes"))):
        if t not in ("Egress", "Ingress"):
            out.append(f.not_supported(f.index("spec.policyTypes", i), t, ("Egress", "Ingress")))
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(f.lst(spec.get(direction))):
            rp = f.index(f.child("spec", direction), i)
            for j, port in enumerate(f.lst(f.d(rule).get("ports"))):
                proto = f.d(port).get("protocol")
                if proto is not None and proto not in pods.PORT_PROTOCOLS:
                    out.append(f.not_supported(f.child(f.index(f.child(rp, "ports"), j),
                                                       "protocol"), proto, pods.PORT_PROTOCOLS))
            for j, peer in enumerate(f.lst(f.d(rule).get(peers))):
                block = f.d(peer).get("ipBlock")
                if block is not None and not _is_cidr(f.s(f.d(block).get("cidr"))):
                    out.append(f.invalid(f.child(f.index(f.child(rp, peers), j), "ipBlock", "cidr"),
                                         f.d(block).get("cidr"), _CIDR_MSG))
    return out
