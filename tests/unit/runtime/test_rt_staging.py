"""The staging mount namespace a spare's init copies (rootfs.staging_namespace, shim._stage),
against the recording syscall fake."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from timonel.node_agent.runtime.container import rootfs, shim
from timonel.node_agent.runtime.container.rootfs import StagedMounts
from timonel.node_agent.runtime.linux import FakeSyscalls
from timonel.node_agent.runtime.linux.constants import (
    CLONE_NEWNS,
    MNT_DETACH,
    MS_BIND,
    MS_PRIVATE,
    MS_REC,
)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_staging_namespace_is_a_tmpfs_root_with_the_hosts_dev(tmp_path: Path) -> None:
    sys = FakeSyscalls()
    cwd = os.getcwd()
    fd = rootfs.staging_namespace(sys, str(tmp_path))
    try:
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("mnt:")  # what unshare made (here: ours)
        assert sys.names() == ["unshare", "mount", "mount", "mount", "chdir", "pivot_root", "umount2", "setns"]
        assert sys.calls[0] == ("unshare", (CLONE_NEWNS,))
        private, tmpfs, dev = sys.find("mount")
        assert private == (None, "/", None, MS_REC | MS_PRIVATE, None)  # nothing we do reaches the host
        assert tmpfs[:3] == ("tmpfs", str(tmp_path), "tmpfs")
        assert dev == ("/dev", str(tmp_path / "dev"), None, MS_BIND, None)  # not MS_REC: no pts, shm, mqueue
        assert (tmp_path / "tmp").is_dir()  # stage_kernel_mounts' scratch
        assert sys.find("pivot_root") == [(".", ".")] and sys.find("umount2") == [(".", MNT_DETACH)]
        back, kind = sys.find("setns")[0]
        assert kind == CLONE_NEWNS and back != fd
        assert os.getcwd() == cwd  # setns moves a process to the root; it is put back
    finally:
        os.close(fd)


def test_staging_namespace_goes_back_and_leaks_nothing_when_it_fails(tmp_path: Path) -> None:
    sys = FakeSyscalls(fail={"pivot_root": OSError(22, "Invalid argument")})
    before = _open_fds()
    with pytest.raises(OSError):
        rootfs.staging_namespace(sys, str(tmp_path))
    assert sys.names()[-1] == "setns"  # back in our own namespace
    assert _open_fds() == before


@pytest.fixture
def staged(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """shim._stage's stage_kernel_mounts, recorded instead of run (it would mount on the host's /tmp)."""
    calls: list[str] = []

    def stage(sys: FakeSyscalls) -> StagedMounts:
        calls.append("stage")
        sys.calls.append(("stage", ()))
        return StagedMounts(-1, -1)
    monkeypatch.setattr(shim, "stage_kernel_mounts", stage)
    return calls


def test_a_spare_stages_in_a_copy_of_the_staging_namespace(staged: list[str]) -> None:
    sys = FakeSyscalls()
    staging = os.open(os.devnull, os.O_RDONLY)
    assert shim._stage(sys, staging) == StagedMounts(-1, -1)
    assert sys.names() == ["setns", "unshare", "stage", "setns"]
    assert sys.calls[0] == ("setns", (staging, CLONE_NEWNS))
    assert sys.calls[1] == ("unshare", (CLONE_NEWNS,))
    assert sys.calls[3][1][0] != staging  # then back to the namespace it came from
    with pytest.raises(OSError):  # the staging namespace's fd is not needed any more
        os.fstat(staging)


def test_without_a_staging_namespace_a_spare_stages_in_a_copy_of_its_own(staged: list[str]) -> None:
    sys = FakeSyscalls(fail={"setns": OSError(22, "Invalid argument")})
    staging = os.open(os.devnull, os.O_RDONLY)
    try:
        with pytest.raises(OSError):  # the way back fails too here: the init ends (its spare is unused)
            shim._stage(sys, staging)
        assert sys.names()[:3] == ["setns", "unshare", "stage"]
    finally:
        os.close(staging)
    sys = FakeSyscalls()
    assert shim._stage(sys) == StagedMounts(-1, -1)
    assert sys.names() == ["unshare", "stage", "setns"]
