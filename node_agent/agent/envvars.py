"""A container's environment, resolved as the kubelet does.

`envFrom` sources first (in order), then `env` entries, which override them;
each `env` value may reference variables defined before it with `$(VAR)`.
`command` and `args` are expanded against the final environment.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from decimal import ROUND_CEILING
from typing import Any

from timonel.api.quantity import parse_quantity

Obj = dict[str, Any]
# (kind "configmaps"/"secrets", namespace, name) -> the object, or None when it does not exist.
Getter = Callable[[str, str, str], Awaitable[Obj | None]]

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


class ConfigError(Exception):
    """The container cannot be configured (CreateContainerConfigError)."""


def expand(value: str, env: dict[str, str]) -> str:
    """Upstream's expansion: `$(NAME)` -> its value when defined (else left as
    written), `$$` -> `$`, any other `$` kept."""
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch == "$" and i + 1 < n:
            nxt = value[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = value.find(")", i + 2)
                if end != -1:
                    name = value[i + 2:end]
                    out.append(env[name] if name in env else value[i:end + 1])
                    i = end + 1
                    continue
        out.append(ch)
        i += 1
    return "".join(out)


def field_ref(pod: Obj, path: str, host_ip: str = "", pod_ip: str = "") -> str:
    """A downward-API field. The pod IP comes from the sandbox when given: the
    first containers start before any status carries it (as upstream)."""
    md = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str((md.get(m.group(1)) or {}).get(m.group(2), ""))
    simple = {
        "metadata.name": md.get("name"), "metadata.namespace": md.get("namespace"),
        "metadata.uid": md.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.hostIP": status.get("hostIP") or host_ip, "status.podIP": pod_ip or status.get("podIP"),
        "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or []) or host_ip,
        "status.podIPs": pod_ip or ",".join(i["ip"] for i in status.get("podIPs") or []),
    }
    if path not in simple:
        raise ConfigError(f"fieldRef {path!r} is not supported")
    return str(simple[path] or "")


def resource_field_ref(container: Obj, ref: Obj, node_allocatable: dict[str, str]) -> str:
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    res = (container.get("resources") or {}).get(kind) or {}
    value = res.get(name)
    if value is None:
        # Without a limit the node's allocatable is the limit (upstream).
        value = node_allocatable.get(name, "0")
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        raise ConfigError(f"resourceFieldRef {resource}: divisor is zero")
    return str(int((parse_quantity(value) / divisor).to_integral_value(rounding=ROUND_CEILING)))


def _source_data(obj: Obj, kind: str) -> dict[str, str]:
    if kind == "secrets":
        return {k: base64.b64decode(v).decode("utf-8", "replace")
                for k, v in (obj.get("data") or {}).items()}
    data = dict(obj.get("data") or {})
    for k, v in (obj.get("binaryData") or {}).items():
        data.setdefault(k, base64.b64decode(v).decode("utf-8", "replace"))
    return data


async def _lookup(get: Getter, kind: str, namespace: str, name: str, optional: bool,
                  cache: dict[tuple[str, str], Obj | None]) -> dict[str, str] | None:
    if (kind, name) not in cache:
        cache[(kind, name)] = await get(kind, namespace, name)
    obj = cache[(kind, name)]
    if obj is None:
        if optional:
            return None
        singular = "configmap" if kind == "configmaps" else "secret"
        raise ConfigError(f'{singular} "{name}" not found')
    return _source_data(obj, kind)


async def container_env(pod: Obj, container: Obj, get: Getter, host_ip: str = "",
                        node_allocatable: dict[str, str] | None = None,
                        pod_ip: str = "") -> list[tuple[str, str]]:
    """The container's environment as ordered (name, value) pairs."""
    namespace = str((pod.get("metadata") or {}).get("namespace", ""))
    cache: dict[tuple[str, str], Obj | None] = {}
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = str(src.get("prefix") or "")
        for key, kind in (("configMapRef", "configmaps"), ("secretRef", "secrets")):
            ref = src.get(key)
            if not ref:
                continue
            data = await _lookup(get, kind, namespace, str(ref.get("name", "")),
                                 bool(ref.get("optional")), cache)
            for k, v in (data or {}).items():
                # Keys that are not valid variable names are skipped, as upstream.
                if _ENV_NAME.match(prefix + k):
                    env[prefix + k] = v
    for item in container.get("env") or []:
        name = str(item["name"])
        if "valueFrom" not in item:
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        vf = item["valueFrom"] or {}
        if "fieldRef" in vf:
            env[name] = field_ref(pod, str(vf["fieldRef"].get("fieldPath", "")), host_ip, pod_ip)
        elif "resourceFieldRef" in vf:
            env[name] = resource_field_ref(container, vf["resourceFieldRef"], node_allocatable or {})
        else:
            key_name, kind = (("configMapKeyRef", "configmaps") if "configMapKeyRef" in vf
                              else ("secretKeyRef", "secrets"))
            ref = vf.get(key_name) or {}
            optional = bool(ref.get("optional"))
            data = await _lookup(get, kind, namespace, str(ref.get("name", "")), optional, cache)
            if data is None:
                continue
            key = str(ref.get("key", ""))
            if key not in data:
                if optional:
                    continue
                singular = "configmap" if kind == "configmaps" else "secret"
                raise ConfigError(f'couldn\'t find key {key} in {singular} '
                                  f'{namespace}/{ref.get("name", "")}')
            env[name] = data[key]
    return list(env.items())


def command_and_args(container: Obj, env: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    values = dict(env)
    return ([expand(str(c), values) for c in container.get("command") or []],
            [expand(str(a), values) for a in container.get("args") or []])
