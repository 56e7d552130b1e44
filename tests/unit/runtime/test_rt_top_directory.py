"""mark_top_directory (`chattr +T`): set where the filesystem knows the flag, harmless elsewhere."""

from __future__ import annotations

import fcntl
import os
import struct
import subprocess
from pathlib import Path

import pytest

from timonel.node_agent.runtime.linux import Syscalls
from timonel.node_agent.runtime.linux.constants import FS_IOC_GETFLAGS, FS_TOPDIR_FL


def _flags(path: Path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return int(struct.unpack("i", fcntl.ioctl(fd, FS_IOC_GETFLAGS, b"\0" * 8)[:4])[0])
    finally:
        os.close(fd)


def test_marks_a_directory_on_ext4(tmp_path: Path) -> None:
    fstype = subprocess.run(["stat", "-f", "-c", "%T", str(tmp_path)], capture_output=True, text=True).stdout
    if not fstype.startswith("ext"):
        pytest.skip(f"the temp directory is on {fstype.strip()}, not ext2/3/4")
    d = tmp_path / "layers"
    d.mkdir()
    assert not _flags(d) & FS_TOPDIR_FL
    assert Syscalls().mark_top_directory(str(d))
    assert _flags(d) & FS_TOPDIR_FL
    assert Syscalls().mark_top_directory(str(d))  # again: nothing to change


def test_a_filesystem_without_inode_flags_is_not_an_error() -> None:
    assert Syscalls().mark_top_directory("/proc") is False
