"""Pod spec validation (Pods and the pod templates of workloads), upstream's rules and wording."""

from __future__ import annotations

from typing import Any

from timonel.api.quantity import QuantityError, canonical_quantity, parse_quantity
from timonel.api.validation import field as f
from timonel.api.validation import meta, names

PORT_PROTOCOLS = ("SCTP", "TCP", "UDP")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
TERMINATION_MESSAGE_POLICIES = ("File", "FallbackToLogsOnError")
TOLERATION_OPERATORS = ("Equal", "Exists")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_STANDARD_CONTAINER_RESOURCES = ("cpu", "memory", "ephemeral-storage")
_MAX_ID = 0xFFFFFFFF
_VOLUME_NAME_FIELDS = {"configMap": "name", "secret": "secretName",
                       "persistentVolumeClaim": "claimName"}


def _port_num_or_name(port: Any, path: str) -> list[f.Cause]:
    if isinstance(port, int) and not isinstance(port, bool):
        return [f.invalid(path, port, m) for m in names.is_valid_port_num(port)]
    if isinstance(port, str):
        return [f.invalid(path, port, m) for m in names.is_valid_port_name(port)]
    return []


def _handler_errors(h: Any, path: str, kinds: tuple[str, ...]) -> list[f.Cause]:
    h = f.d(h)
    out: list[f.Cause] = []
    seen = 0
    for kind in kinds:
        if h.get(kind) is None:
            continue
        if seen:
            out.append(f.forbidden(f.child(path, kind), "may not specify more than 1 handler type"))
            continue
        seen += 1
        action, p = f.d(h[kind]), f.child(path, kind)
        if kind == "exec" and not f.lst(action.get("command")):
            out.append(f.required(f.child(p, "command")))
        elif kind in ("httpGet", "tcpSocket", "grpc"):
            out.extend(_port_num_or_name(action.get("port"), f.child(p, "port")))
    if not seen:
        out.append(f.required(path, "must specify a handler type"))
    return out


def _probe_errors(probe: Any, path: str, single_success: bool) -> list[f.Cause]:
    if probe is None:
        return []
    probe = f.d(probe)
    out = _handler_errors(probe, path, ("exec", "httpGet", "tcpSocket", "grpc"))
    for fld in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold",
                "failureThreshold"):
        v = probe.get(fld)
        if isinstance(v, int) and v < 0:
            out.append(f.invalid(f.child(path, fld), v, "must be greater than or equal to 0"))
    success = probe.get("successThreshold")
    if single_success and isinstance(success, int) and success != 1:
        out.append(f.invalid(f.child(path, "successThreshold"), success, "must be 1"))
    return out


def _lifecycle_errors(lc: Any, path: str) -> list[f.Cause]:
    lc = f.d(lc)
    out: list[f.Cause] = []
    for hook in ("postStart", "preStop"):
        if lc.get(hook) is not None:
            out.extend(_handler_errors(lc[hook], f.child(path, hook),
                                       ("exec", "httpGet", "tcpSocket", "sleep")))
    return out


def _ports_errors(ports: Any, path: str) -> list[f.Cause]:
    out: list[f.Cause] = []
    seen: set[str] = set()
    for i, port in enumerate(f.lst(ports)):
        port, p = f.d(port), f.index(path, i)
        name = f.s(port.get("name"))
        if name:
            msgs = names.is_valid_port_name(name)
            if msgs:
                out.extend(f.invalid(f.child(p, "name"), name, m) for m in msgs)
            elif name in seen:
                out.append(f.duplicate(f.child(p, "name"), name))
            seen.add(name)
        cp = port.get("containerPort")
        if isinstance(cp, int):
            if cp == 0:
                out.append(f.required(f.child(p, "containerPort")))
            else:
                out.extend(f.invalid(f.child(p, "containerPort"), cp, m)
                           for m in names.is_valid_port_num(cp))
        hp = port.get("hostPort")
        if isinstance(hp, int) and hp != 0:
            out.extend(f.invalid(f.child(p, "hostPort"), hp, m) for m in names.is_valid_port_num(hp))
        proto = port.get("protocol")
        if proto is not None and proto not in PORT_PROTOCOLS:
            out.append(f.not_supported(f.child(p, "protocol"), proto, PORT_PROTOCOLS))
    return out


def _overcommit_allowed(resource: str) -> bool:
    # Hugepages and extended resources are all-or-nothing: requests must equal limits.
    return not resource.startswith("hugepages-") and (
        "/" not in resource or "kubernetes.io/" in resource)


def _resource_name_errors(name: str, path: str) -> list[f.Cause]:
    msgs = names.is_qualified_name(name)
    if msgs:
        return [f.invalid(path, name, m) for m in msgs]
    if "/" not in name and name not in _STANDARD_CONTAINER_RESOURCES \
            and not name.startswith("hugepages-"):
        return [f.invalid(path, name, "must be a standard resource for containers")]
    return []


def resources_errors(res: Any, path: str) -> list[f.Cause]:
    """Names, non-negative quantities, requests <= limits (== for non-overcommittable)."""
    res = f.d(res)
    lim_path, req_path = f.child(path, "limits"), f.child(path, "requests")
    limits, requests = f.d(res.get("limits")), f.d(res.get("requests"))
    out: list[f.Cause] = []
    parsed: dict[tuple[str, str], Any] = {}
    for which, values, p in (("limits", limits, lim_path), ("requests", requests, req_path)):
        for name, q in values.items():
            kp = f.key(p, name)
            out.extend(_resource_name_errors(name, kp))
            try:
                amount = parse_quantity(q)
            except QuantityError as e:
                out.append(f.invalid(kp, q, str(e)))
                continue
            parsed[which, name] = amount
            if amount < 0:
                out.append(f.invalid(kp, canonical_quantity(q), "must be greater than or equal to 0"))
            elif not _overcommit_allowed(name) and "/" in name and amount != int(amount):
                out.append(f.invalid(kp, canonical_quantity(q), "must be an integer"))
    for name, q in requests.items():
        if ("requests", name) not in parsed:
            continue
        req = parsed["requests", name]
        if ("limits", name) in parsed:
            lim = parsed["limits", name]
            shown = canonical_quantity(limits[name])
            if req != lim and not _overcommit_allowed(name):
                out.append(f.invalid(req_path, canonical_quantity(q),
                                     f"must be equal to {name} limit of {shown}"))
            elif req > lim:
                out.append(f.invalid(req_path, canonical_quantity(q),
                                     f"must be less than or equal to {name} limit of {shown}"))
        elif name not in limits and not _overcommit_allowed(name):
            out.append(f.required(lim_path, "Limit must be set for non overcommitable resources"))
    return out


def _env_errors(env: Any, path: str) -> list[f.Cause]:
    out: list[f.Cause] = []
    for i, ev in enumerate(f.lst(env)):
        ev, p = f.d(ev), f.index(path, i)
        name = f.s(ev.get("name"))
        if not name:
            out.append(f.required(f.child(p, "name")))
        else:
            out.extend(f.invalid(f.child(p, "name"), name, m) for m in names.is_env_var_name(name))
        source = f.d(ev.get("valueFrom"))
        if ev.get("valueFrom") is not None:
            kinds = [k for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef",
                                 "fileKeyRef") if source.get(k) is not None]
            vp = f.child(p, "valueFrom")
            if not kinds:
                out.append(f.invalid(vp, "", "must specify one of: `fieldRef`, `resourceFieldRef`,"
                                             " `configMapKeyRef` or `secretKeyRef`"))
            elif f.s(ev.get("value")):
                out.append(f.invalid(vp, "", "may not be specified when `value` is not empty"))
            elif len(kinds) > 1:
                out.append(f.invalid(vp, "", "may not have more than one field specified at a time"))
    return out


def _mounts_errors(mounts: Any, volumes: set[str], path: str) -> list[f.Cause]:
    out: list[f.Cause] = []
    seen: set[str] = set()
    for i, m in enumerate(f.lst(mounts)):
        m, p = f.d(m), f.index(path, i)
        name, mount_path = f.s(m.get("name")), f.s(m.get("mountPath"))
        if not name:
            out.append(f.required(f.child(p, "name")))
        if name not in volumes:
            out.append(f.not_found(f.child(p, "name"), name))
        if not mount_path:
            out.append(f.required(f.child(p, "mountPath")))
        if mount_path in seen:
            out.append(f.invalid(f.child(p, "mountPath"), mount_path, "must be unique"))
        seen.add(mount_path)
    return out


def _container_common(c: dict[str, Any], volumes: set[str], path: str) -> list[f.Cause]:
    out: list[f.Cause] = []
    name = f.s(c.get("name"))
    if not name:
        out.append(f.required(f.child(path, "name")))
    else:
        out.extend(f.invalid(f.child(path, "name"), name, m) for m in names.is_dns1123_label(name))
    if not f.s(c.get("image")):
        out.append(f.required(f.child(path, "image")))
    tmp = c.get("terminationMessagePolicy")
    if tmp is not None and tmp not in TERMINATION_MESSAGE_POLICIES:
        out.append(f.not_supported(f.child(path, "terminationMessagePolicy"), tmp,
                                   TERMINATION_MESSAGE_POLICIES))
    pull = c.get("imagePullPolicy")
    if pull is not None and pull not in PULL_POLICIES:
        out.append(f.not_supported(f.child(path, "imagePullPolicy"), pull, PULL_POLICIES))
    out.extend(_ports_errors(c.get("ports"), f.child(path, "ports")))
    out.extend(_env_errors(c.get("env"), f.child(path, "env")))
    out.extend(_mounts_errors(c.get("volumeMounts"), volumes, f.child(path, "volumeMounts")))
    out.extend(resources_errors(c.get("resources"), f.child(path, "resources")))
    out.extend(_security_context_errors(c.get("securityContext"), f.child(path, "securityContext")))
    return out


def _security_context_errors(sc: Any, path: str) -> list[f.Cause]:
    sc = f.d(sc)
    out: list[f.Cause] = []
    for fld in ("runAsUser", "runAsGroup", "fsGroup"):
        v = sc.get(fld)
        if isinstance(v, int) and not 0 <= v <= _MAX_ID:
            out.append(f.invalid(f.child(path, fld), v, names.inclusive_range_error(0, _MAX_ID)))
    for i, g in enumerate(f.lst(sc.get("supplementalGroups"))):
        if isinstance(g, int) and not 0 <= g <= _MAX_ID:
            out.append(f.invalid(f.index(f.child(path, "supplementalGroups"), i), g,
                                 names.inclusive_range_error(0, _MAX_ID)))
    return out


def _volumes_errors(volumes: Any, path: str) -> tuple[set[str], list[f.Cause]]:
    out: list[f.Cause] = []
    good: set[str] = set()
    for i, vol in enumerate(f.lst(volumes)):
        vol, p = f.d(vol), f.index(path, i)
        errs: list[f.Cause] = []
        # No source at all is defaulted to emptyDir upstream before validation.
        sources = [k for k, v in vol.items() if k != "name" and v is not None]
        for extra in sources[1:]:
            errs.append(f.forbidden(f.child(p, extra), "may not specify more than 1 volume type"))
        for src in sources[:1]:
            need = _VOLUME_NAME_FIELDS.get(src)
            if need and not f.s(f.d(vol[src]).get(need)):
                errs.append(f.required(f.child(p, src, need)))
        name = f.s(vol.get("name"))
        if not name:
            errs.append(f.required(f.child(p, "name")))
        else:
            errs.extend(f.invalid(f.child(p, "name"), name, m) for m in names.is_dns1123_label(name))
        if name in good:
            errs.append(f.duplicate(f.child(p, "name"), name))
        if not errs:
            good.add(name)
        out.extend(errs)
    return good, out


def tolerations_errors(tolerations: Any, path: str) -> list[f.Cause]:
    out: list[f.Cause] = []
    for i, t in enumerate(f.lst(tolerations)):
        t, p = f.d(t), f.index(path, i)
        k, op = f.s(t.get("key")), f.s(t.get("operator"))
        effect, value = f.s(t.get("effect")), f.s(t.get("value"))
        if k:
            out.extend(f.invalid(f.child(p, "key"), k, m) for m in names.is_qualified_name(k))
        if not k and op != "Exists":
            out.append(f.invalid(f.child(p, "operator"), op, "operator must be Exists when `key`"
                                 ' is empty, which means "match all values and all keys"'))
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            out.append(f.invalid(f.child(p, "effect"), effect,
                                 "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        if op in ("Equal", ""):
            msgs = names.is_label_value(value)
            if msgs:
                out.append(f.invalid(f.child(p, "operator"), value, ";".join(msgs)))
        elif op == "Exists":
            if value:
                out.append(f.invalid(f.child(p, "operator"), t,
                                     "value must be empty when `operator` is 'Exists'"))
        else:
            out.append(f.not_supported(f.child(p, "operator"), op, TOLERATION_OPERATORS))
        if effect and effect not in TAINT_EFFECTS:
            out.append(f.not_supported(f.child(p, "effect"), effect, TAINT_EFFECTS))
    return out


def _host_port_conflicts(containers: list[Any], path: str) -> list[f.Cause]:
    out: list[f.Cause] = []
    seen: set[str] = set()
    for ci, c in enumerate(containers):
        for pi, port in enumerate(f.lst(f.d(c).get("ports"))):
            port = f.d(port)
            hp = port.get("hostPort")
            if not isinstance(hp, int) or hp == 0:
                continue
            key = f"{port.get('protocol') or ''}/{port.get('hostIP') or ''}/{hp}"
            if key in seen:
                out.append(f.duplicate(f.child(f.index(f.child(f.index(path, ci), "ports"), pi),
                                               "hostPort"), key))
            seen.add(key)
    return out


def pod_spec_errors(spec: Any, path: str, *, is_pod: bool, creating: bool = True) -> list[f.Cause]:
    """ValidatePodSpec, plus the pod-only checks when `is_pod` (not for templates)."""
    spec = f.d(spec)
    volumes, out = _volumes_errors(spec.get("volumes"), f.child(path, "volumes"))
    containers = f.lst(spec.get("containers"))
    cpath, ipath = f.child(path, "containers"), f.child(path, "initContainers")
    if not containers:
        out.append(f.required(cpath))
    all_names: set[str] = set()
    for i, c in enumerate(containers):
        c, p = f.d(c), f.index(cpath, i)
        out.extend(_container_common(c, volumes, p))
        name = f.s(c.get("name"))
        if name in all_names:
            out.append(f.duplicate(f.child(p, "name"), name))
        all_names.add(name)
        out.extend(_lifecycle_errors(c.get("lifecycle"), f.child(p, "lifecycle")))
        out.extend(_probe_errors(c.get("livenessProbe"), f.child(p, "livenessProbe"), True))
        out.extend(_probe_errors(c.get("readinessProbe"), f.child(p, "readinessProbe"), False))
        out.extend(_probe_errors(c.get("startupProbe"), f.child(p, "startupProbe"), True))
    out.extend(_host_port_conflicts(containers, cpath))
    for i, c in enumerate(f.lst(spec.get("initContainers"))):
        c, p = f.d(c), f.index(ipath, i)
        out.extend(_container_common(c, volumes, p))
        name = f.s(c.get("name"))
        if name in all_names:
            out.append(f.duplicate(f.child(p, "name"), name))
        elif name:
            all_names.add(name)
        policy = c.get("restartPolicy")
        if policy is not None and policy != "Always":
            out.append(f.not_supported(f.child(p, "restartPolicy"), policy, ("Always",)))
        if policy == "Always":  # a sidecar: probes and lifecycle as for regular containers
            out.extend(_lifecycle_errors(c.get("lifecycle"), f.child(p, "lifecycle")))
            out.extend(_probe_errors(c.get("livenessProbe"), f.child(p, "livenessProbe"), True))
            out.extend(_probe_errors(c.get("readinessProbe"), f.child(p, "readinessProbe"), False))
            out.extend(_probe_errors(c.get("startupProbe"), f.child(p, "startupProbe"), True))
        else:
            for fld in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if c.get(fld) is not None:
                    out.append(f.forbidden(f.child(p, fld), "may not be set for init containers "
                                                            "without restartPolicy=Always"))
        out.extend(_host_port_conflicts([c], ipath))
    restart = spec.get("restartPolicy")
    if restart is not None and restart not in RESTART_POLICIES:
        out.append(f.not_supported(f.child(path, "restartPolicy"), restart, RESTART_POLICIES))
    dns = spec.get("dnsPolicy")
    if dns is not None and dns not in DNS_POLICIES:
        out.append(f.not_supported(f.child(path, "dnsPolicy"), dns, DNS_POLICIES))
    out.extend(meta.labels_errors(spec.get("nodeSelector"), f.child(path, "nodeSelector")))
    out.extend(_security_context_errors(spec.get("securityContext"),
                                        f.child(path, "securityContext")))
    for fld, check in (("serviceAccountName", names.is_dns1123_subdomain),
                       ("nodeName", names.is_dns1123_subdomain),
                       ("priorityClassName", names.is_dns1123_subdomain),
                       ("hostname", names.is_dns1123_label),
                       ("subdomain", names.is_dns1123_label)):
        v = f.s(spec.get(fld))
        if v:
            out.extend(f.invalid(f.child(path, fld), v, m) for m in check(v))
    ads = spec.get("activeDeadlineSeconds")
    if isinstance(ads, int) and not 1 <= ads <= 2**31 - 1:
        out.append(f.invalid(f.child(path, "activeDeadlineSeconds"), ads,
                             names.inclusive_range_error(1, 2**31 - 1)))
    out.extend(tolerations_errors(spec.get("tolerations"), f.child(path, "tolerations")))
    gates = [f.s(f.d(g).get("name")) for g in f.lst(spec.get("schedulingGates"))]
    for i, g in enumerate(gates):
        gp = f.index(f.child(path, "schedulingGates"), i)
        out.extend(f.invalid(gp, g, m) for m in names.is_qualified_name(g))
        if g in gates[:i]:
            out.append(f.duplicate(gp, g))
    if is_pod:
        for cp, lst in ((cpath, containers), (ipath, f.lst(spec.get("initContainers")))):
            for i, c in enumerate(lst):
                image = f.s(f.d(c).get("image"))
                if image != image.strip():
                    out.append(f.invalid(f.child(f.index(cp, i), "image"), image,
                                         "must not have leading or trailing whitespace"))
        # Ephemeral containers only arrive later, through their own subresource.
        if creating and f.lst(spec.get("ephemeralContainers")):
            out.append(f.forbidden(f.child(path, "ephemeralContainers"), "cannot be set on create"))
        if creating and f.s(spec.get("nodeName")) and gates:
            out.append(f.forbidden(f.child(path, "nodeName"),
                                   "cannot be set until all schedulingGates have been cleared"))
    elif f.lst(spec.get("ephemeralContainers")):
        out.append(f.forbidden(f.child(path, "ephemeralContainers"),
                               "ephemeral containers not allowed in pod template"))
    return out


def pod_template_errors(template: Any, path: str) -> list[f.Cause]:
    """ValidatePodTemplateSpec: template labels/annotations and the pod spec."""
    template = f.d(template)
    return (meta.template_meta_errors(template.get("metadata"), f.child(path, "metadata"))
            + pod_spec_errors(template.get("spec"), f.child(path, "spec"), is_pod=False))
