"""Layers for overlayfs, as root: whiteouts, sharing, removal, hostile layers.

The merged view is checked by mounting a real overlay (in a private mount
namespace, so nothing outlives the test) and by the copy-mode fallback;
both must agree.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from timonel.node_agent.runtime.images.builder import (
    BuiltImage,
    layer_from_entries,
    make_config,
    tar_entry,
    write_oci_layout,
)
from timonel.node_agent.runtime.images.errors import (
    DigestMismatchError,
    InvalidImageError,
    UnsafeLayerError,
)
from timonel.node_agent.runtime.images.importers import import_image
from timonel.node_agent.runtime.images.store import ImageStore

from .conftest import needs_root

pytestmark = needs_root

L1 = layer_from_entries([
    tar_entry("etc/a", data=b"a"), tar_entry("etc/b", data=b"b"),
    tar_entry("opt/x/1", data=b"1"), tar_entry("opt/x/sub/2", data=b"2"),
    tar_entry("var/keep", data=b"k"), tar_entry("home/u/.profile", data=b"p", uid=1000, gid=1000),
])
L2 = layer_from_entries([
    tar_entry("etc/.wh.a"), tar_entry("opt/x/3", data=b"3"), tar_entry("opt/x/.wh..wh..opq"),
    tar_entry("newdir/f", data=b"f"), tar_entry("etc/b", data=b"b2"),
])
L3 = layer_from_entries([tar_entry(".wh.var"), tar_entry("etc/c", data=b"c"), tar_entry("opt/.wh.nothing")])
MERGED = {
    "etc": None, "etc/b": b"b2", "etc/c": b"c", "home": None, "home/u": None, "home/u/.profile": b"p",
    "newdir": None, "newdir/f": b"f", "opt": None, "opt/x": None, "opt/x/3": b"3",
}


def whiteout_image(names: list[str]) -> BuiltImage:
    return BuiltImage([L1, L2, L3], make_config([L1, L2, L3], cmd=["sh"]), names)


def tree(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = None if p.is_dir() else p.read_bytes()
    return out


def overlay_view(lowers: list[str], tmp_path: Path) -> dict[str, bytes | None]:
    """Mount the layers read-only in a private mount namespace and dump the tree."""
    mnt = tmp_path / "mnt"
    mnt.mkdir(exist_ok=True)
    opts = f"lowerdir={':'.join(lowers)}"
    script = (f"mount -t overlay overlay -o {opts} {mnt} && cd {mnt} && "
              "find . -mindepth 1 | sort | while read p; do "
              "if [ -d \"$p\" ]; then echo \"D $p\"; else echo \"F $p $(cat \"$p\")\"; fi; done")
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out: dict[str, bytes | None] = {}
    for line in res.stdout.splitlines():
        kind, path, *rest = line.split(" ", 2)
        out[path[2:]] = None if kind == "D" else (rest[0] if rest else "").encode()
    return out


def test_whiteouts_and_opaque_dirs_merge_right_in_overlay_and_copy_mode(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    import_image(store, write_oci_layout([whiteout_image(["wh"])], tmp_path / "src"))
    lowers = store.rootfs_layers("wh")
    assert len(lowers) == 3
    # In the layer dirs, whiteouts take overlayfs' form.
    mid = Path(lowers[1])
    st = os.lstat(mid / "etc/a")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 0 and os.minor(st.st_rdev) == 0
    assert os.getxattr(mid / "opt/x", "trusted.overlay.opaque") == b"y"
    assert not (mid / "etc/.wh.a").exists() and not (mid / "opt/x/.wh..wh..opq").exists()
    assert stat.S_ISCHR(os.lstat(Path(lowers[0]) / "var").st_mode)
    # Ownership kept when unpacking as root.
    assert (Path(lowers[2]) / "home/u/.profile").stat().st_uid == 1000

    assert overlay_view(lowers, tmp_path) == MERGED
    flat = tmp_path / "flat"
    store.copy_rootfs("wh", flat)
    assert tree(flat) == MERGED
    assert (flat / "home/u/.profile").stat().st_uid == 1000


def test_shared_layers_are_unpacked_once_and_freed_on_removal(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    top_a = layer_from_entries([tar_entry("a", data=b"A")])
    top_b = layer_from_entries([tar_entry("b", data=b"B")])
    img_a = BuiltImage([L1, L2, top_a], make_config([L1, L2, top_a], cmd=["a"]), ["img-a"])
    img_b = BuiltImage([L1, L2, top_b], make_config([L1, L2, top_b], cmd=["b"]), ["img-b"])
    import_image(store, write_oci_layout([img_a], tmp_path / "a"))
    base_dirs = store.rootfs_layers("img-a")[1:]
    inodes = [os.stat(d).st_ino for d in base_dirs]
    marker = Path(base_dirs[-1]) / "unpacked-once-marker"
    marker.write_text("x")  # would vanish if the layer were unpacked again

    import_image(store, write_oci_layout([img_b], tmp_path / "b"))
    lowers_b = store.rootfs_layers("img-b")
    assert lowers_b[1:] == base_dirs
    assert [os.stat(d).st_ino for d in lowers_b[1:]] == inodes and marker.exists()
    assert len(list(store.layers_dir.iterdir())) == 4  # L1, L2, top_a, top_b

    store.remove_image("img-a")
    layer_names = {p.name for p in store.layers_dir.iterdir()}
    assert len(layer_names) == 3 and all(Path(d).is_dir() for d in lowers_b)
    blobs = set(store.blobs.all())
    assert top_a.digest not in blobs and img_a.config_digest not in blobs and img_a.manifest_digest not in blobs
    assert {L1.digest, L2.digest, top_b.digest} <= blobs
    assert overlay_view(lowers_b, tmp_path)["b"] == b"B"

    store.remove_image("img-b")
    assert list(store.layers_dir.iterdir()) == [] and store.blobs.all() == []
    assert store.list_images() == []


def test_hostile_layer_cannot_write_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    before = sorted(os.listdir(outside))
    hostile = layer_from_entries([
        tar_entry("escape", "symlink", linkname=str(outside)),
        tar_entry("escape/pwned", data=b"payload"),
        tar_entry("rel", "symlink", linkname="../../../../../../../.."),
        tar_entry(f"rel{outside}/pwned2", data=b"payload"),
        tar_entry("dev/sda", "block", devmajor=8, devminor=0),
        tar_entry("dev/kmem", "char", devmajor=1, devminor=2),
        tar_entry("bin/su", data=b"su", mode=0o4755),
    ])
    # A trusted.overlay xattr smuggled in PAX headers must not reach the layer dir.
    ti, data = tar_entry("forged", "dir")
    ti.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.note": "ok"}
    extra = layer_from_entries([(ti, data)])
    img = BuiltImage([hostile, extra], make_config([hostile, extra], cmd=["sh"]), ["hostile"])
    store = ImageStore(tmp_path / "store")
    import_image(store, write_oci_layout([img], tmp_path / "src"))
    lowers = store.rootfs_layers("hostile")
    flat = tmp_path / "flat"
    store.copy_rootfs("hostile", flat)

    assert sorted(os.listdir(outside)) == before and (outside / "secret").read_text() == "s"
    for root in (Path(lowers[1]), flat):
        assert (root / str(outside).lstrip("/") / "pwned").read_bytes() == b"payload"
        assert (root / str(outside).lstrip("/") / "pwned2").read_bytes() == b"payload"
        assert not (root / "dev/sda").exists() and not (root / "dev/kmem").exists()
        assert stat.S_IMODE((root / "bin/su").stat().st_mode) == 0o4755
    with pytest.raises(OSError):
        os.getxattr(Path(lowers[0]) / "forged", "trusted.overlay.opaque")
    assert os.getxattr(Path(lowers[0]) / "forged", "user.note") == b"ok"


@pytest.mark.parametrize("entry", [
    tar_entry("../../../escaped", data=b"x"),
    tar_entry("h", "hardlink", linkname="../../../../etc/passwd"),
])
def test_escaping_layer_is_refused_and_leaves_nothing(entry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = layer_from_entries([tar_entry("ok", data=b"1"), entry])
    img = BuiltImage([bad], make_config([bad], cmd=["sh"]), ["bad"])
    store = ImageStore(tmp_path / "store", unpack="never")
    import_image(store, write_oci_layout([img], tmp_path / "src"))
    with pytest.raises(UnsafeLayerError, match="refusing the layer"):
        store.rootfs_layers("bad")
    assert list(store.layers_dir.iterdir()) == [] and list(store.blobs.tmp_dir.iterdir()) == []
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()
    with pytest.raises(UnsafeLayerError):
        store.copy_rootfs("bad", tmp_path / "flat")
    assert not (tmp_path / "flat").exists()


def test_blob_damaged_in_the_store_is_caught_at_unpack(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store", unpack="never")
    import_image(store, write_oci_layout([whiteout_image(["wh"])], tmp_path / "src"))
    blob = store.blobs.path(L3.digest)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    with pytest.raises((DigestMismatchError, InvalidImageError)) as e:
        store.rootfs_layers("wh")
    assert "corrupt" in str(e.value) or "tampered" in str(e.value)
    assert not store.layer_dir(store.resolve("wh").layers[2].chain_id).exists()


def test_import_of_an_unpackable_image_leaves_nothing(tmp_path: Path) -> None:
    bad = layer_from_entries([tar_entry("ok", data=b"1"), tar_entry("../../x", data=b"x")])
    img = BuiltImage([L1, bad], make_config([L1, bad], cmd=["sh"]), ["bad"])
    store = ImageStore(tmp_path / "store")  # unpacks at import, as root
    with pytest.raises(UnsafeLayerError):
        import_image(store, write_oci_layout([img], tmp_path / "src"))
    assert store.list_images() == [] and list(store.layers_dir.iterdir()) == []
    # Verified blobs of a failed import stay for a retry until the next collection.
    store.gc()
    assert store.blobs.all() == []
