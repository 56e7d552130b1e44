"""Which state dirs statefs takes for a tmpfs, read from a mountinfo like the kernel writes it."""

from __future__ import annotations

from pathlib import Path

from timonel.node_agent.runtime.statefs import on_tmpfs, state_dir, tmpfs_mounted_at

MOUNTINFO = """\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 22 0:25 / /dev/shm rw,nosuid,nodev shared:4 - tmpfs tmpfs rw
41 22 0:40 / /var/lib/my\\040root/run rw,nosuid,nodev,noexec - tmpfs tmpfs rw,mode=700
42 22 0:41 / /var/lib/other/run rw - ext4 /dev/vdb rw
"""


def test_a_tmpfs_mount_point_is_found_with_spaces_unescaped(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert tmpfs_mounted_at("/var/lib/my root/run", str(info))
    assert not tmpfs_mounted_at("/var/lib/my\\040root/run", str(info))
    assert not tmpfs_mounted_at("/var/lib/other/run", str(info))  # mounted, but not a tmpfs
    assert not tmpfs_mounted_at("/dev/shm/x", str(info))  # on a tmpfs, not a mount point


def test_a_dir_below_a_tmpfs_is_on_it_and_the_deepest_mount_decides(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert on_tmpfs("/dev/shm/timonel/run", str(info))
    assert not on_tmpfs("/dev/shmx/run", str(info))  # a prefix of the name is not a parent
    assert not on_tmpfs("/var/lib/other/run/x", str(info))
    assert not on_tmpfs("/srv/run", str(info))


def test_state_dir_is_beside_the_layers() -> None:
    assert state_dir("/var/lib/timonel/runtime") == "/var/lib/timonel/runtime/run"
