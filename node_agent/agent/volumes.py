"""Pod volumes as directories under the agent's data dir, bind-mounted by the runtime.

`DIR/pods/<uid>/volumes/<volume name>/`: emptyDir (a tmpfs for `medium:
Memory`), configMap and secret (their keys written as files). They live as long
as the pod does on this node; `remove_pod_dir` drops them.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from timonel.api.quantity import int_value

from .envvars import ConfigError

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Getter = Callable[[str, str, str], Awaitable[Obj | None]]
SUPPORTED = ("emptyDir", "configMap", "secret")


@dataclass
class MountSpec:
    container_path: str
    host_path: str
    readonly: bool


def pod_dir(data_dir: str, uid: str) -> str:
    return os.path.join(data_dir, "pods", uid)


def volume_dir(data_dir: str, uid: str, name: str) -> str:
    return os.path.join(pod_dir(data_dir, uid), "volumes", name)


def _write_file(path: str, data: bytes, mode: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _safe_rel(path: str) -> str:
    norm = os.path.normpath(path)
    if norm.startswith("..") or os.path.isabs(norm):
        raise ConfigError(f"volume item path {path!r} leaves the volume")
    return norm


def _write_keys(dest: str, data: dict[str, bytes], items: list[Obj] | None, default_mode: int,
                what: str) -> None:
    os.makedirs(dest, exist_ok=True)
    files: dict[str, tuple[bytes, int]] = {}
    if items:
        for item in items:
            key = str(item.get("key", ""))
            if key not in data:
                raise ConfigError(f"{what}: key {key!r} not found")
            files[_safe_rel(str(item.get("path") or key))] = (data[key], int(item.get("mode") or default_mode))
    else:
        files = {_safe_rel(key): (value, default_mode) for key, value in data.items()}
    for rel, (value, mode) in files.items():
        _write_file(os.path.join(dest, rel), value, mode)
    # Keys gone from the source go from the volume too.
    for root, _, names in os.walk(dest):
        for name in names:
            path = os.path.join(root, name)
            if os.path.relpath(path, dest) not in files:
                os.unlink(path)


async def prepare_volumes(data_dir: str, pod: Obj, get: Getter) -> None:
    """Create every volume's directory and contents; ConfigError when a
    configMap or secret it needs is missing."""
    md = pod["metadata"]
    uid, namespace = str(md["uid"]), str(md.get("namespace", ""))
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        name = str(vol["name"])
        dest = volume_dir(data_dir, uid, name)
        if "emptyDir" in vol:
            os.makedirs(dest, exist_ok=True)
            os.chmod(dest, 0o777)  # as upstream: any container user may write
            ed = vol.get("emptyDir") or {}
            if ed.get("medium") == "Memory" and not os.path.ismount(dest):
                opts = "mode=1777"
                if ed.get("sizeLimit"):
                    opts += f",size={int_value(ed['sizeLimit'])}"
                subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", dest], check=True,
                               capture_output=True)
        elif "configMap" in vol or "secret" in vol:
            kind = "configmaps" if "configMap" in vol else "secrets"
            src = vol.get("configMap") or vol.get("secret") or {}
            src_name = str(src.get("name") or src.get("secretName") or "")
            obj = await get(kind, namespace, src_name)
            what = f'{"configmap" if kind == "configmaps" else "secret"} "{src_name}"'
            if obj is None:
                if src.get("optional"):
                    os.makedirs(dest, exist_ok=True)
                    continue
                raise ConfigError(f"{what} not found")
            if kind == "configmaps":
                data = {k: str(v).encode() for k, v in (obj.get("data") or {}).items()}
                data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
            else:
                data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
            _write_keys(dest, data, src.get("items"), int(src.get("defaultMode", 0o644)), what)
        else:
            kinds = [k for k in vol if k != "name"]
            log.warning("volume type not supported volume=%s types=%s pod=%s/%s", name, kinds,
                        namespace, md.get("name"))


def container_mounts(data_dir: str, pod: Obj, container: Obj) -> list[MountSpec]:
    uid = str(pod["metadata"]["uid"])
    known = {str(v["name"]) for v in (pod.get("spec") or {}).get("volumes") or []
             if any(k in v for k in SUPPORTED)}
    mounts = []
    for vm in container.get("volumeMounts") or []:
        name = str(vm["name"])
        if name not in known:
            raise ConfigError(f"volume {name!r} of mount {vm.get('mountPath')} is not "
                              f"supported by this node (only {', '.join(SUPPORTED)})")
        host = volume_dir(data_dir, uid, name)
        if vm.get("subPath"):
            host = os.path.join(host, _safe_rel(str(vm["subPath"])))
            os.makedirs(host, exist_ok=True)
        mounts.append(MountSpec(str(vm["mountPath"]), host, bool(vm.get("readOnly"))))
    return mounts


def remove_pod_dir(data_dir: str, uid: str) -> None:
    base = pod_dir(data_dir, uid)
    vols = os.path.join(base, "volumes")
    if os.path.isdir(vols):
        for name in os.listdir(vols):
            path = os.path.join(vols, name)
            if os.path.ismount(path):
                subprocess.run(["umount", "-l", path], check=False, capture_output=True)
    shutil.rmtree(base, ignore_errors=True)
