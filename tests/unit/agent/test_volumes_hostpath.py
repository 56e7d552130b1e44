"""hostPath type checks with upstream's messages, against real files in a temp dir."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from timonel.node_agent.agent.envvars import ConfigError
from timonel.node_agent.agent.hostpath import check_host_path
from timonel.node_agent.agent.volumes import (
    container_mounts,
    mount_failure_message,
    prepare_volumes,
)


async def no_objects(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    return None


def test_or_create_types_create(tmp_path: Path) -> None:
    d = tmp_path / "a" / "b"
    check_host_path(str(d), "DirectoryOrCreate")
    assert d.is_dir() and (d.stat().st_mode & 0o777) == 0o755
    check_host_path(str(d), "DirectoryOrCreate")  # there already: fine
    check_host_path(str(d), "Directory")
    f = tmp_path / "f"
    check_host_path(str(f), "FileOrCreate")
    assert f.is_file() and f.read_bytes() == b""
    check_host_path(str(f), "File")
    untyped = tmp_path / "new"
    check_host_path(str(untyped), "")
    assert untyped.is_dir()


def test_file_or_create_needs_the_parent(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot create file"):
        check_host_path(str(tmp_path / "no" / "f"), "FileOrCreate")


@pytest.mark.parametrize(("kind", "what"), [
    ("Directory", "a directory"), ("File", "a file"), ("Socket", "a socket file"),
    ("CharDevice", "a character device"), ("BlockDevice", "a block device"),
])
def test_wrong_or_missing_type(tmp_path: Path, kind: str, what: str) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(ConfigError) as info:
        check_host_path(str(missing), kind)
    assert str(info.value) == f"hostPath type check failed: {missing} is not {what}"
    assert not missing.exists()


def test_matching_special_files(tmp_path: Path) -> None:
    sock_path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(sock_path)
        check_host_path(sock_path, "Socket")
        with pytest.raises(ConfigError, match="is not a directory"):
            check_host_path(sock_path, "DirectoryOrCreate")
    check_host_path("/dev/null", "CharDevice")
    with pytest.raises(ConfigError, match="is not a block device"):
        check_host_path("/dev/null", "BlockDevice")


def test_invalid_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^Pipe is an invalid volume type$"):
        check_host_path(str(tmp_path), "Pipe")


async def test_volume_setup_and_mount(tmp_path: Path) -> None:
    host = tmp_path / "host" / "data"
    pod: dict[str, Any] = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-2"},
           "spec": {"volumes": [{"name": "h", "hostPath": {"path": str(host), "type": "DirectoryOrCreate"}},
                                {"name": "f", "hostPath": {"path": str(tmp_path / "nofile"), "type": "File"}}],
                    "containers": [{"name": "c", "volumeMounts": [{"name": "h", "mountPath": "/data"}]}]}}
    with pytest.raises(ConfigError) as info:
        await prepare_volumes(str(tmp_path / "agent"), pod, no_objects)
    assert mount_failure_message(info.value) == (
        f'MountVolume.SetUp failed for volume "f" : hostPath type check failed: {tmp_path}/nofile is not a file')
    assert host.is_dir()  # the volumes before the failing one were set up
    pod["spec"]["volumes"].pop()
    await prepare_volumes(str(tmp_path / "agent"), pod, no_objects)
    [m] = container_mounts(str(tmp_path / "agent"), pod, pod["spec"]["containers"][0])
    assert (m.host_path, m.container_path) == (str(host), "/data")
    assert not os.path.exists(tmp_path / "agent" / "pods" / "u-2" / "volumes" / "h")
