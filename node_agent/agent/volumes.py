"""Pod volumes as directories under the agent's data dir, bind-mounted by the runtime.

`DIR/pods/<uid>/volumes/<volume name>/`: emptyDir (a tmpfs for `medium:
Memory`), and configMap, secret, downwardAPI and projected volumes written
atomically (atomic.py) from the payloads of projections.py. hostPath volumes
are the host's own paths, checked against their type (hostpath.py). They live
as long as the pod does on this node; `remove_pod_dir` drops them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from timonel.api.quantity import int_value

from .atomic import PayloadError, validate_path, write_payload
from .envvars import ConfigError
from .hostpath import check_host_path
from .projections import (
    DEFAULT_MODE,
    Getter,
    Payload,
    Sources,
    downward_payload,
    object_payload,
    projected_payload,
    uses_metadata,
)

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SUPPORTED = ("emptyDir", "configMap", "secret", "downwardAPI", "projected", "hostPath")
# pod uid -> its labels and annotations when its volumes were last written.
_written_metadata: dict[str, str] = {}


class VolumeError(ConfigError):
    """A volume could not be set up; names the volume like upstream's FailedMount events."""

    def __init__(self, volume: str, message: str) -> None:
        super().__init__(message)
        self.volume = volume


def mount_failure_message(e: ConfigError) -> str:
    if isinstance(e, VolumeError):
        return f'MountVolume.SetUp failed for volume "{e.volume}" : {e}'
    return f"MountVolume.SetUp failed: {e}"


@dataclass
class MountSpec:
    container_path: str
    host_path: str
    readonly: bool


def pod_dir(data_dir: str, uid: str) -> str:
    return os.path.join(data_dir, "pods", uid)


def volume_dir(data_dir: str, uid: str, name: str) -> str:
    return os.path.join(pod_dir(data_dir, uid), "volumes", name)


def _safe_rel(path: str) -> str:
    try:
        return validate_path(path)
    except PayloadError as e:
        raise ConfigError(str(e)) from None


def _metadata_print(pod: Obj) -> str:
    md = pod.get("metadata") or {}
    return json.dumps([md.get("labels") or {}, md.get("annotations") or {}], sort_keys=True)


def metadata_changed(pod: Obj) -> bool:
    """Labels or annotations changed since a downwardAPI volume showing them was written."""
    uid = str((pod.get("metadata") or {}).get("uid", ""))
    return uid in _written_metadata and _written_metadata[uid] != _metadata_print(pod)


def _empty_dir(dest: str, ed: Obj) -> None:
    os.makedirs(dest, exist_ok=True)
    os.chmod(dest, 0o777)  # as upstream: any container user may write
    if ed.get("medium") == "Memory" and not os.path.ismount(dest):
        opts = "mode=1777"
        if ed.get("sizeLimit"):
            opts += f",size={int_value(ed['sizeLimit'])}"
        subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", dest], check=True,
                       capture_output=True)


async def _payload(pod: Obj, vol: Obj, sources: Sources) -> Payload | None:
    """The files of a volume made of files; None for other kinds."""
    if "configMap" in vol or "secret" in vol:
        kind = "configmaps" if "configMap" in vol else "secrets"
        src = vol.get("configMap") or vol.get("secret") or {}
        return await object_payload(src, kind, int(src.get("defaultMode") or DEFAULT_MODE), sources)
    if "downwardAPI" in vol:
        d = vol.get("downwardAPI") or {}
        return downward_payload(pod, d.get("items") or [], int(d.get("defaultMode") or DEFAULT_MODE), sources)
    if "projected" in vol:
        return await projected_payload(pod, vol.get("projected") or {}, sources)
    return None


async def prepare_volumes(data_dir: str, pod: Obj, get: Getter, allocatable: dict[str, str] | None = None,
                          ca_pem: bytes | None = None) -> None:
    """Create every volume's directory and contents (again: a refresh follows
    the sources); VolumeError when one cannot be set up."""
    md = pod["metadata"]
    uid, namespace = str(md["uid"]), str(md.get("namespace", ""))
    sources = Sources(get, namespace, allocatable or {}, ca_pem)
    follows_metadata = False
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        name = str(vol["name"])
        dest = volume_dir(data_dir, uid, name)
        try:
            if "emptyDir" in vol:
                _empty_dir(dest, vol.get("emptyDir") or {})
                continue
            if "hostPath" in vol:
                hp = vol.get("hostPath") or {}
                check_host_path(str(hp.get("path", "")), str(hp.get("type") or ""))
                continue
            payload = await _payload(pod, vol, sources)
            if payload is None:
                kinds = [k for k in vol if k != "name"]
                log.warning("volume type not supported volume=%s types=%s pod=%s/%s", name, kinds,
                            namespace, md.get("name"))
                continue
            follows_metadata |= uses_metadata(vol)
            if write_payload(dest, payload):
                log.info("volume written volume=%s pod=%s/%s files=%d", name, namespace, md.get("name"),
                         len(payload))
        except PayloadError as e:
            raise VolumeError(name, str(e)) from None
        except VolumeError:
            raise
        except ConfigError as e:
            raise VolumeError(name, str(e)) from None
    if follows_metadata:
        _written_metadata[uid] = _metadata_print(pod)


def _host_path(data_dir: str, uid: str, vol: Obj) -> str:
    if "hostPath" in vol:
        return str((vol.get("hostPath") or {}).get("path", ""))
    return volume_dir(data_dir, uid, str(vol["name"]))


def container_mounts(data_dir: str, pod: Obj, container: Obj) -> list[MountSpec]:
    uid = str(pod["metadata"]["uid"])
    known = {str(v["name"]): v for v in (pod.get("spec") or {}).get("volumes") or []
             if any(k in v for k in SUPPORTED)}
    mounts = []
    for vm in container.get("volumeMounts") or []:
        name = str(vm["name"])
        if name not in known:
            raise ConfigError(f"volume {name!r} of mount {vm.get('mountPath')} is not "
                              f"supported by this node (only {', '.join(SUPPORTED)})")
        host = _host_path(data_dir, uid, known[name])
        if vm.get("subPath"):
            host = os.path.join(host, _safe_rel(str(vm["subPath"])))
            if not os.path.lexists(host):  # as upstream: a missing subPath becomes a directory
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
    _written_metadata.pop(uid, None)
