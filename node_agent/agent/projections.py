"""The files of configMap, secret, downwardAPI and projected volumes, as upstream lays them out.

Each builder returns a payload (relative path -> bytes and mode) that
`atomic.write_payload` puts in place; resolution of downward-API fields is
envvars.py's, so a field reads the same in an env var and in a file.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .atomic import FileProjection
from .envvars import ConfigError, field_ref, resource_field_ref

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Getter = Callable[[str, str, str], Awaitable[Obj | None]]
Payload = dict[str, FileProjection]
DEFAULT_MODE = 0o644
# The ConfigMap upstream's root-CA publisher puts in every namespace: the CA of kube-api-access volumes.
ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"


@dataclass
class Sources:
    """What the files come from besides the pod: API objects, the node, the agent's CA."""

    get: Getter
    namespace: str
    allocatable: dict[str, str] = field(default_factory=dict)
    ca_pem: bytes | None = None


def _go_quote(value: str) -> str:
    """Go's %q, which upstream uses for label and annotation values."""
    escapes = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r", "\a": "\\a",
               "\b": "\\b", "\f": "\\f", "\v": "\\v"}
    out = []
    for ch in value:
        if ch in escapes:
            out.append(escapes[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) <= 0xFFFF:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return '"' + "".join(out) + '"'


def format_map(values: dict[str, str]) -> str:
    """`key="value"` lines in key order, no final newline (upstream's FormatMap)."""
    return "\n".join(f"{k}={_go_quote(str(values[k]))}" for k in sorted(values))


def downward_value(pod: Obj, item: Obj, sources: Sources) -> str:
    if "fieldRef" in item:
        path = str((item["fieldRef"] or {}).get("fieldPath", ""))
        if path in ("metadata.labels", "metadata.annotations"):
            return format_map((pod.get("metadata") or {}).get(path.split(".")[1]) or {})
        return field_ref(pod, path)
    if "resourceFieldRef" in item:
        ref = item["resourceFieldRef"] or {}
        spec = pod.get("spec") or {}
        name = ref.get("containerName")
        for c in list(spec.get("containers") or []) + list(spec.get("initContainers") or []):
            if c.get("name") == name:
                return resource_field_ref(c, ref, sources.allocatable)
        raise ConfigError(f"resourceFieldRef of {item.get('path')!r}: no container {name!r} in the pod")
    raise ConfigError(f"downwardAPI item {item.get('path')!r} has neither fieldRef nor resourceFieldRef")


def downward_payload(pod: Obj, items: list[Obj], default_mode: int, sources: Sources) -> Payload:
    return {str(item.get("path", "")): FileProjection(downward_value(pod, item, sources).encode(),
                                                      int(item.get("mode") or default_mode))
            for item in items}


def object_data(obj: Obj, kind: str) -> dict[str, bytes]:
    if kind == "secrets":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def key_payload(data: dict[str, bytes], items: list[Obj] | None, default_mode: int, optional: bool,
                kind: str) -> Payload:
    """All keys, or only `items` (key -> path, own mode); a missing key fails unless optional."""
    if not items:
        return {k: FileProjection(v, default_mode) for k, v in data.items()}
    out: Payload = {}
    for item in items:
        key = str(item.get("key", ""))
        if key not in data:
            if optional:
                continue
            raise ConfigError(f"configmap references non-existent config key: {key}" if kind == "configmaps"
                              else f"references non-existent secret key: {key}")
        out[str(item.get("path") or key)] = FileProjection(data[key], int(item.get("mode") or default_mode))
    return out


async def object_payload(src: Obj, kind: str, default_mode: int, sources: Sources) -> Payload:
    """A configMap or secret (volume or projected source); empty when optional and absent."""
    name = str(src.get("name") or src.get("secretName") or "")
    optional = bool(src.get("optional"))
    obj = await sources.get(kind, sources.namespace, name)
    if obj is None:
        if kind == "configmaps" and name == ROOT_CA_CONFIG_MAP and sources.ca_pem:
            # No publisher of that ConfigMap here: the agent's own CA is the cluster's.
            obj = {"data": {"ca.crt": sources.ca_pem.decode()}}
        elif optional:
            return {}
        else:
            raise ConfigError(f'{"configmap" if kind == "configmaps" else "secret"} "{name}" not found')
    return key_payload(object_data(obj, kind), src.get("items"), default_mode, optional, kind)


async def projected_payload(pod: Obj, projected: Obj, sources: Sources) -> Payload:
    default_mode = int(projected.get("defaultMode") or DEFAULT_MODE)
    out: Payload = {}
    for src in projected.get("sources") or []:
        if "configMap" in src:
            out.update(await object_payload(src["configMap"] or {}, "configmaps", default_mode, sources))
        elif "secret" in src:
            out.update(await object_payload(src["secret"] or {}, "secrets", default_mode, sources))
        elif "downwardAPI" in src:
            out.update(downward_payload(pod, (src["downwardAPI"] or {}).get("items") or [], default_mode,
                                        sources))
        elif "serviceAccountToken" in src:
            # The API server issues no service account tokens yet: nothing it would accept to write.
            log.info("serviceAccountToken projection not supported pod=%s/%s path=%s",
                     sources.namespace, (pod.get("metadata") or {}).get("name"),
                     (src["serviceAccountToken"] or {}).get("path"))
        else:
            log.warning("projected source not supported pod=%s/%s kinds=%s", sources.namespace,
                        (pod.get("metadata") or {}).get("name"), sorted(src))
    return out


def uses_metadata(vol: Obj) -> bool:
    """The volume shows labels or annotations, so it must follow their changes."""
    items = list((vol.get("downwardAPI") or {}).get("items") or [])
    for src in (vol.get("projected") or {}).get("sources") or []:
        items += (src.get("downwardAPI") or {}).get("items") or []
    return any(str((i.get("fieldRef") or {}).get("fieldPath", "")).startswith(("metadata.labels",
                                                                                 "metadata.annotations"))
               for i in items)
