"""configMap, secret and emptyDir volumes as files under the data dir, and the mounts that use them."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from timonel.node_agent.agent.envvars import ConfigError
from timonel.node_agent.agent.volumes import (
    container_mounts,
    mount_failure_message,
    prepare_volumes,
    remove_pod_dir,
    volume_dir,
)

OBJECTS: dict[tuple[str, str], dict[str, Any]] = {}


def visible(d: Path) -> list[str]:
    """Files a container sees (the writer's own `..` entries left out), by relative path."""
    out = []
    for root, dirs, files in os.walk(d, followlinks=True):
        dirs[:] = [x for x in dirs if not x.startswith("..")]
        out += [str((Path(root) / f).relative_to(d)) for f in files if not f.startswith("..")]
    return sorted(out)


async def getter(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return OBJECTS.get((kind, name))


def pod(*volumes: dict[str, Any], mounts: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
            "spec": {"volumes": list(volumes),
                     "containers": [{"name": "a", "volumeMounts": mounts or []}]}}


@pytest.fixture(autouse=True)
def objects() -> None:
    OBJECTS.clear()
    OBJECTS[("configmaps", "cm")] = {"data": {"a.conf": "A", "b.conf": "B"},
                                     "binaryData": {"bin": base64.b64encode(b"\x00\x01").decode()}}
    OBJECTS[("secrets", "sec")] = {"data": {"token": base64.b64encode(b"t0k").decode()}}


async def test_config_map_and_secret_files(tmp_path: Path) -> None:
    p = pod({"name": "cfg", "configMap": {"name": "cm"}},
            {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
            {"name": "picked", "configMap": {"name": "cm", "items": [{"key": "a.conf", "path": "sub/x.conf",
                                                                       "mode": 0o600}]}},
            {"name": "scratch", "emptyDir": {}})
    await prepare_volumes(str(tmp_path), p, getter)
    cfg = Path(volume_dir(str(tmp_path), "u-1", "cfg"))
    assert visible(cfg) == ["a.conf", "b.conf", "bin"]
    assert (cfg / "a.conf").read_text() == "A" and (cfg / "bin").read_bytes() == b"\x00\x01"
    assert stat.S_IMODE((cfg / "a.conf").stat().st_mode) == 0o644
    sec = Path(volume_dir(str(tmp_path), "u-1", "sec")) / "token"
    assert sec.read_bytes() == b"t0k" and stat.S_IMODE(sec.stat().st_mode) == 0o400
    picked = Path(volume_dir(str(tmp_path), "u-1", "picked"))
    assert visible(picked) == ["sub/x.conf"]
    assert stat.S_IMODE((picked / "sub" / "x.conf").stat().st_mode) == 0o600
    scratch = Path(volume_dir(str(tmp_path), "u-1", "scratch"))
    assert scratch.is_dir() and stat.S_IMODE(scratch.stat().st_mode) == 0o777

    # A refresh follows the source: changed values, removed keys.
    OBJECTS[("configmaps", "cm")] = {"data": {"a.conf": "A2"}}
    await prepare_volumes(str(tmp_path), p, getter)
    assert visible(cfg) == ["a.conf"] and (cfg / "a.conf").read_text() == "A2"

    remove_pod_dir(str(tmp_path), "u-1")
    assert not (tmp_path / "pods" / "u-1").exists()


@pytest.mark.parametrize(("volume", "message"), [
    ({"name": "v", "configMap": {"name": "missing"}}, 'configmap "missing" not found'),
    ({"name": "v", "secret": {"secretName": "missing"}}, 'secret "missing" not found'),
    ({"name": "v", "configMap": {"name": "cm", "items": [{"key": "nope", "path": "x"}]}}, "configmap references non-existent config key: nope"),
    ({"name": "v", "secret": {"secretName": "sec", "items": [{"key": "nope", "path": "x"}]}},
     "references non-existent secret key: nope"),
    ({"name": "v", "configMap": {"name": "cm", "items": [{"key": "a.conf", "path": "../../escape"}]}},
     "must not contain '..'"),
])
async def test_volume_errors(tmp_path: Path, volume: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        await prepare_volumes(str(tmp_path), pod(volume), getter)
    assert mount_failure_message(info.value).startswith('MountVolume.SetUp failed for volume "v" : ')
    assert not (tmp_path / "escape").exists()


async def test_optional_missing_source_is_an_empty_dir(tmp_path: Path) -> None:
    await prepare_volumes(str(tmp_path), pod({"name": "v", "configMap": {"name": "none", "optional": True}}),
                          getter)
    assert visible(Path(volume_dir(str(tmp_path), "u-1", "v"))) == []


def test_mounts(tmp_path: Path) -> None:
    p = pod({"name": "data", "emptyDir": {}}, {"name": "host", "hostPath": {"path": "/etc"}},
            {"name": "nfs", "nfs": {"server": "x", "path": "/"}},
            mounts=[{"name": "data", "mountPath": "/data"},
                    {"name": "data", "mountPath": "/logs", "subPath": "logs", "readOnly": True},
                    {"name": "host", "mountPath": "/host-etc", "readOnly": True}])
    got = container_mounts(str(tmp_path), p, p["spec"]["containers"][0])
    base = volume_dir(str(tmp_path), "u-1", "data")
    assert [(m.container_path, m.host_path, m.readonly) for m in got] == [
        ("/data", base, False), ("/logs", os.path.join(base, "logs"), True), ("/host-etc", "/etc", True)]
    assert os.path.isdir(os.path.join(base, "logs"))
    bad = {"name": "a", "volumeMounts": [{"name": "nfs", "mountPath": "/h"}]}
    with pytest.raises(ConfigError, match="not supported"):
        container_mounts(str(tmp_path), p, bad)
