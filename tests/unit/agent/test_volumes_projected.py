"""downwardAPI and projected volumes, and the atomic ..data swap that keeps a reader from a half-written set."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from timonel.node_agent.agent.atomic import (
    DATA_DIR_NAME,
    FileProjection,
    PayloadError,
    write_payload,
)
from timonel.node_agent.agent.envvars import ConfigError
from timonel.node_agent.agent.projections import format_map
from timonel.node_agent.agent.volumes import (
    metadata_changed,
    prepare_volumes,
    remove_pod_dir,
    volume_dir,
)

OBJECTS: dict[tuple[str, str], dict[str, Any]] = {
    ("configmaps", "cm"): {"data": {"a": "A", "b": "B"}},
    ("secrets", "sec"): {"data": {"user": base64.b64encode(b"admin").decode()}},
}


async def getter(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return OBJECTS.get((kind, name))


def pod(*volumes: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "web", "namespace": "ns", "uid": "u-9",
                         "labels": {"app": "web", "tier": "front"},
                         "annotations": {"note": 'say "hi"\nbye'}},
            "spec": {"volumes": list(volumes),
                     "containers": [{"name": "main", "resources": {"limits": {"memory": "64Mi"},
                                                                    "requests": {"cpu": "250m"}}}]}}


DOWNWARD = {"name": "info", "downwardAPI": {"defaultMode": 0o640, "items": [
    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
    {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
    {"path": "meta/name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
    {"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}},
    {"path": "uid", "fieldRef": {"fieldPath": "metadata.uid"}},
    {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
    {"path": "mem_mi", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory",
                                            "divisor": "1Mi"}},
    {"path": "cpu_m", "resourceFieldRef": {"containerName": "main", "resource": "requests.cpu",
                                           "divisor": "1m"}},
    {"path": "cpu_limit", "resourceFieldRef": {"containerName": "main", "resource": "limits.cpu"}},
]}}


async def test_downward_api_files(tmp_path: Path) -> None:
    p = pod(DOWNWARD)
    await prepare_volumes(str(tmp_path), p, getter, {"cpu": "2", "memory": "1Gi"})
    d = Path(volume_dir(str(tmp_path), "u-9", "info"))
    assert (d / "labels").read_text() == 'app="web"\ntier="front"'
    assert (d / "annotations").read_text() == 'note="say \\"hi\\"\\nbye"'
    assert (d / "meta" / "name").read_text() == "web"
    assert (d / "ns").read_text() == "ns" and (d / "uid").read_text() == "u-9"
    assert (d / "app").read_text() == "web"
    assert (d / "mem_mi").read_text() == "64" and (d / "cpu_m").read_text() == "250"
    assert (d / "cpu_limit").read_text() == "2"  # no limit: the node's allocatable
    assert stat.S_IMODE((d / "labels").stat().st_mode) == 0o640
    assert stat.S_IMODE((d / "meta" / "name").stat().st_mode) == 0o600
    # Visible names go through ..data, as upstream.
    assert os.readlink(d / "labels") == f"{DATA_DIR_NAME}/labels"

    assert not metadata_changed(p)
    p["metadata"]["labels"]["tier"] = "back"
    assert metadata_changed(p)
    await prepare_volumes(str(tmp_path), p, getter, {"cpu": "2"})
    assert (d / "labels").read_text() == 'app="web"\ntier="back"'
    assert not metadata_changed(p)
    remove_pod_dir(str(tmp_path), "u-9")
    assert not metadata_changed(p)


async def test_downward_api_unknown_container(tmp_path: Path) -> None:
    vol = {"name": "info", "downwardAPI": {"items": [
        {"path": "x", "resourceFieldRef": {"containerName": "nope", "resource": "limits.cpu"}}]}}
    with pytest.raises(ConfigError, match="no container 'nope'"):
        await prepare_volumes(str(tmp_path), pod(vol), getter)


async def test_projected_combines_sources(tmp_path: Path) -> None:
    vol = {"name": "all", "projected": {"defaultMode": 0o440, "sources": [
        {"configMap": {"name": "cm", "items": [{"key": "a", "path": "conf/a"}]}},
        {"secret": {"name": "sec", "items": [{"key": "user", "path": "creds/user", "mode": 0o400}]}},
        {"downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
        {"configMap": {"name": "gone", "optional": True}},
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
    ]}}
    await prepare_volumes(str(tmp_path), pod(vol), getter, ca_pem=b"-----BEGIN CERTIFICATE-----\n")
    d = Path(volume_dir(str(tmp_path), "u-9", "all"))
    assert (d / "conf" / "a").read_text() == "A"
    assert (d / "creds" / "user").read_text() == "admin"
    assert stat.S_IMODE((d / "creds" / "user").stat().st_mode) == 0o400
    assert stat.S_IMODE((d / "conf" / "a").stat().st_mode) == 0o440
    assert (d / "labels").read_text() == 'app="web"\ntier="front"'
    assert (d / "ca.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert not (d / "token").exists()  # no service account tokens to project yet
    assert sorted(n for n in os.listdir(d) if not n.startswith("..")) == ["ca.crt", "conf", "creds", "labels"]


async def test_projected_missing_source_fails(tmp_path: Path) -> None:
    vol = {"name": "all", "projected": {"sources": [{"secret": {"name": "absent"}}]}}
    with pytest.raises(ConfigError, match='secret "absent" not found'):
        await prepare_volumes(str(tmp_path), pod(vol), getter)


def test_format_map_sorted_and_quoted() -> None:
    assert format_map({"b": "2", "a": "x\ty\x01é"}) == 'a="x\\ty\\x01é"\nb="2"'
    assert format_map({}) == ""


def test_atomic_swap_keeps_old_set_whole(tmp_path: Path) -> None:
    target = str(tmp_path / "vol")
    assert write_payload(target, {"a": FileProjection(b"1", 0o644), "d/b": FileProjection(b"2", 0o644)})
    first = os.readlink(os.path.join(target, DATA_DIR_NAME))
    # A reader that opened the old directory keeps a whole old set across the swap.
    old_dir = os.path.join(target, first)
    assert not write_payload(target, {"a": FileProjection(b"1", 0o644), "d/b": FileProjection(b"2", 0o644)})
    assert os.readlink(os.path.join(target, DATA_DIR_NAME)) == first  # unchanged: nothing rewritten
    assert write_payload(target, {"a": FileProjection(b"10", 0o644)})
    second = os.readlink(os.path.join(target, DATA_DIR_NAME))
    assert second != first and not os.path.exists(old_dir)
    assert Path(target, "a").read_text() == "10" and not os.path.lexists(os.path.join(target, "d"))
    # Only ..data and the current directory are left.
    assert sorted(os.listdir(target)) == sorted([DATA_DIR_NAME, second, "a"])
    # A mode change alone is a change.
    assert write_payload(target, {"a": FileProjection(b"10", 0o600)})
    assert stat.S_IMODE(os.stat(os.path.join(target, "a")).st_mode) == 0o600


def test_atomic_replaces_files_of_older_layout(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    target.mkdir()
    (target / "a").write_text("plain file from before")
    (target / "stale").write_text("x")
    write_payload(str(target), {"a": FileProjection(b"new", 0o644)})
    assert os.path.islink(target / "a") and (target / "a").read_text() == "new"
    assert not (target / "stale").exists()


@pytest.mark.parametrize("path", ["../x", "/abs", "a/../../b", "..data", "..x/y", ""])
def test_atomic_refuses_paths(tmp_path: Path, path: str) -> None:
    with pytest.raises(PayloadError):
        write_payload(str(tmp_path / "vol"), {path: FileProjection(b"", 0o644)})
