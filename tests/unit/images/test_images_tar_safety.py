"""Layer unpacking never writes outside the layer dir (no root needed).

Every hostile case runs in both modes; afterwards the directory *next to*
the layer dir is checked to be untouched.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from timonel.node_agent.runtime.images.builder import layer_from_entries, tar_entry
from timonel.node_agent.runtime.images.errors import (
    DigestMismatchError,
    ImageError,
    InvalidImageError,
    UnsafeLayerError,
)
from timonel.node_agent.runtime.images.unpack import clean_components, unpack_layer

MODES = ["overlay", "copy"]


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    layer = tmp_path / "layer"
    outside = tmp_path / "outside"
    layer.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("host secret\n")
    return layer, outside


def snapshot(d: Path) -> dict[str, tuple[int, int, bytes]]:
    out = {}
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(d))] = (st.st_mode, st.st_nlink, p.read_bytes() if p.is_file() and not p.is_symlink() else b"")
    return out


def unpack(entries: list, layer: Path, mode: str, tmp_path: Path, compression: str = "gzip", **kw):  # type: ignore[no-untyped-def]
    blob = layer_from_entries(entries, compression)  # type: ignore[arg-type]
    path = tmp_path / f"blob-{blob.digest[7:19]}"
    path.write_bytes(blob.data)
    return unpack_layer(str(path), str(layer), mode=mode, expected_digest=blob.digest,  # type: ignore[arg-type]
                        expected_diff_id=blob.diff_id, same_owner=False, **kw)


def test_clean_components() -> None:
    assert clean_components("./a//b/./c", "t") == ["a", "b", "c"]
    assert clean_components("/abs/x", "t") == ["abs", "x"]
    assert clean_components("a/../b", "t") == ["b"]
    with pytest.raises(UnsafeLayerError):
        clean_components("a/../../b", "t")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", ["../outside/pwned", "a/../../outside/pwned", "./../../pwned"])
def test_dotdot_paths_refuse_the_layer(dirs: tuple[Path, Path], tmp_path: Path, mode: str, name: str) -> None:
    layer, outside = dirs
    before = snapshot(outside)
    with pytest.raises(UnsafeLayerError, match="outside the layer root"):
        unpack([tar_entry(name, data=b"x")], layer, mode, tmp_path)
    assert snapshot(outside) == before
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("mode", MODES)
def test_absolute_paths_land_inside(dirs: tuple[Path, Path], tmp_path: Path, mode: str) -> None:
    layer, outside = dirs
    before = snapshot(outside)
    unpack([tar_entry(str(outside / "abs-file"), data=b"inside")], layer, mode, tmp_path)
    assert snapshot(outside) == before
    assert (layer / str(outside).lstrip("/") / "abs-file").read_bytes() == b"inside"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("target", ["ABS", "../../..", "../outside"])
def test_symlink_escape_then_write_stays_inside(dirs: tuple[Path, Path], tmp_path: Path, mode: str,
                                                target: str) -> None:
    layer, outside = dirs
    target = str(outside) if target == "ABS" else target
    before = snapshot(outside)
    unpack([tar_entry("evil", "symlink", linkname=target),
            tar_entry("evil/pwned", data=b"payload"),
            tar_entry("evil/secret", data=b"overwrite")], layer, mode, tmp_path)
    assert snapshot(outside) == before
    assert os.readlink(layer / "evil") == target  # the link itself is kept as the image wants it
    # The writes went where a chroot would have put them: inside the layer.
    hits = [p for p in layer.rglob("pwned")]
    assert len(hits) == 1 and hits[0].read_bytes() == b"payload"
    assert str(hits[0].resolve()).startswith(str(layer.resolve()))


@pytest.mark.parametrize("mode", MODES)
def test_symlink_chain_and_loop(dirs: tuple[Path, Path], tmp_path: Path, mode: str) -> None:
    layer, outside = dirs
    before = snapshot(outside)
    unpack([tar_entry("a", "symlink", linkname="b"), tar_entry("b", "symlink", linkname=str(outside)),
            tar_entry("a/x", data=b"1")], layer, mode, tmp_path)
    assert snapshot(outside) == before
    assert (layer / str(outside).lstrip("/") / "x").read_bytes() == b"1"
    layer2 = tmp_path / "layer2"
    layer2.mkdir()
    with pytest.raises(UnsafeLayerError, match="too many levels"):
        unpack([tar_entry("p", "symlink", linkname="q"), tar_entry("q", "symlink", linkname="p"),
                tar_entry("p/x", data=b"1")], layer2, mode, tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_file_replaces_symlink_instead_of_writing_through_it(dirs: tuple[Path, Path], tmp_path: Path,
                                                             mode: str) -> None:
    layer, outside = dirs
    before = snapshot(outside)
    unpack([tar_entry("f", "symlink", linkname=str(outside / "secret")), tar_entry("f", data=b"new")],
           layer, mode, tmp_path)
    assert snapshot(outside) == before
    assert not (layer / "f").is_symlink() and (layer / "f").read_bytes() == b"new"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("linkname", ["../outside/secret", "ABS", "via/secret"])
def test_hardlink_escapes_refuse_the_layer(dirs: tuple[Path, Path], tmp_path: Path, mode: str,
                                           linkname: str) -> None:
    layer, outside = dirs
    linkname = str(outside / "secret") if linkname == "ABS" else linkname
    before = snapshot(outside)
    with pytest.raises(UnsafeLayerError):
        unpack([tar_entry("via", "symlink", linkname=str(outside)),
                tar_entry("h", "hardlink", linkname=linkname)], layer, mode, tmp_path)
    assert snapshot(outside) == before  # nlink of the secret unchanged too
    assert (outside / "secret").stat().st_nlink == 1


@pytest.mark.parametrize("mode", MODES)
def test_hardlinks_inside_the_layer_work(dirs: tuple[Path, Path], tmp_path: Path, mode: str) -> None:
    layer, _ = dirs
    unpack([tar_entry("bin/busybox", data=b"BB", mode=0o755), tar_entry("bin/sh", "hardlink", linkname="bin/busybox")],
           layer, mode, tmp_path)
    assert (layer / "bin/sh").stat().st_ino == (layer / "bin/busybox").stat().st_ino


def test_hardlink_to_a_lower_layer_is_copied_in_overlay_mode(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    unpack([tar_entry("usr/bin/tool", data=b"T", mode=0o755)], lower, "overlay", tmp_path)
    unpack([tar_entry("usr/bin/alias", "hardlink", linkname="usr/bin/tool")], upper, "overlay", tmp_path,
           lower_dirs=[str(lower)])
    assert (upper / "usr/bin/alias").read_bytes() == b"T"
    assert (upper / "usr/bin/alias").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("mode", MODES)
def test_device_nodes_are_skipped(dirs: tuple[Path, Path], tmp_path: Path, mode: str) -> None:
    layer, _ = dirs
    st = unpack([tar_entry("dev/sda", "block", devmajor=8, devminor=0),
                 tar_entry("dev/mem", "char", devmajor=1, devminor=1),
                 tar_entry("ok", data=b"1")], layer, mode, tmp_path)
    assert sorted(st.skipped) == ["dev/mem", "dev/sda"]
    assert not (layer / "dev/sda").exists() and not (layer / "dev/mem").exists()
    assert (layer / "ok").exists()


@pytest.mark.parametrize("mode", MODES)
def test_setuid_bits_are_kept_inside(dirs: tuple[Path, Path], tmp_path: Path, mode: str) -> None:
    layer, _ = dirs
    unpack([tar_entry("bin/su", data=b"x", mode=0o4755), tar_entry("tmp", "dir", mode=0o1777)],
           layer, mode, tmp_path)
    assert stat.S_IMODE((layer / "bin/su").stat().st_mode) == 0o4755
    assert stat.S_IMODE((layer / "tmp").stat().st_mode) == 0o1777


@pytest.mark.parametrize("bad", [".wh..", ".wh..."])
def test_bad_whiteout_names_refuse_the_layer(dirs: tuple[Path, Path], tmp_path: Path, bad: str) -> None:
    layer, _ = dirs
    with pytest.raises(UnsafeLayerError):
        unpack([tar_entry(f"a/{bad}")], layer, "copy", tmp_path)


def test_read_only_dirs_do_not_block_later_entries(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    layer, _ = dirs
    unpack([tar_entry("ro", "dir", mode=0o555), tar_entry("ro/f", data=b"1")], layer, "copy", tmp_path)
    assert (layer / "ro/f").read_bytes() == b"1"
    assert stat.S_IMODE((layer / "ro").stat().st_mode) == 0o555
    os.chmod(layer / "ro", 0o755)  # let pytest clean up


def test_copy_mode_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    root.mkdir()
    unpack([tar_entry("etc/keep", data=b"k"), tar_entry("etc/drop", data=b"d"),
            tar_entry("data/old1", data=b"1"), tar_entry("data/sub/old2", data=b"2"),
            tar_entry("gone/deep/file", data=b"g")], root, "copy", tmp_path)
    # The opaque marker comes after one new entry and before another: both must survive.
    unpack([tar_entry("etc/.wh.drop"), tar_entry(".wh.gone"), tar_entry("data/new1", data=b"n1"),
            tar_entry("data/.wh..wh..opq"), tar_entry("data/sub/new2", data=b"n2"),
            tar_entry("nothere/.wh.x")], root, "copy", tmp_path)
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*")) == [
        "data", "data/new1", "data/sub", "data/sub/new2", "etc", "etc/keep"]


def test_overlay_mode_whiteouts_need_root(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("checks the non-root error; root runs the real whiteouts in tests/integration")
    layer = tmp_path / "l"
    layer.mkdir()
    with pytest.raises(ImageError, match="need root"):
        unpack([tar_entry("a/.wh.b")], layer, "overlay", tmp_path)


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_compressions_and_diff_id_check(tmp_path: Path, compression: str) -> None:
    layer = tmp_path / "l"
    layer.mkdir()
    st = unpack([tar_entry("f", data=b"x" * 5000)], layer, "copy", tmp_path, compression)
    assert st.bytes == 5000 and (layer / "f").stat().st_size == 5000
    blob = layer_from_entries([tar_entry("f", data=b"y")], compression)  # type: ignore[arg-type]
    p = tmp_path / "b"
    p.write_bytes(blob.data)
    layer2 = tmp_path / "l2"
    layer2.mkdir()
    with pytest.raises(DigestMismatchError, match="uncompressed layer hashes to"):
        unpack_layer(str(p), str(layer2), mode="copy", expected_diff_id="sha256:" + "0" * 64, same_owner=False)
    with pytest.raises(DigestMismatchError, match="blob content hashes to"):
        unpack_layer(str(p), str(layer2), mode="copy", expected_digest="sha256:" + "0" * 64, same_owner=False)


def test_corrupt_gzip_is_a_clear_error(tmp_path: Path) -> None:
    blob = layer_from_entries([tar_entry("f", data=os.urandom(100_000))])
    p = tmp_path / "b"
    p.write_bytes(blob.data[: len(blob.data) // 2])
    layer = tmp_path / "l"
    layer.mkdir()
    with pytest.raises(InvalidImageError, match="not a valid layer tar"):
        unpack_layer(str(p), str(layer), mode="copy", same_owner=False)


def test_zstd_layers_or_a_clear_error(tmp_path: Path) -> None:
    blob = layer_from_entries([tar_entry("z/f", data=b"zstd!")], "none")
    plain = tmp_path / "layer.tar"
    plain.write_bytes(blob.data)
    layer = tmp_path / "l"
    layer.mkdir()
    if not shutil.which("zstd"):
        try:
            import zstandard  # type: ignore[import-not-found]
        except ImportError:
            fake = tmp_path / "fake.zst"
            fake.write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 64)
            with pytest.raises(InvalidImageError, match="zstd-compressed"):
                unpack_layer(str(fake), str(layer), mode="copy", same_owner=False)
            return
        compressed = zstandard.ZstdCompressor().compress(blob.data)
    else:
        compressed = subprocess.run(["zstd", "-q", "-c", str(plain)], capture_output=True, check=True).stdout
    zp = tmp_path / "layer.tar.zst"
    zp.write_bytes(compressed)
    st = unpack_layer(str(zp), str(layer), mode="copy", expected_diff_id=blob.diff_id, same_owner=False)
    assert (layer / "z/f").read_bytes() == b"zstd!" and st.diff_id == blob.diff_id
    assert gzip  # keep import used for clarity of supported kinds


def test_a_later_dir_entry_wins(tmp_path: Path) -> None:
    layer = tmp_path / "l"
    layer.mkdir()
    unpack([tar_entry("d", "dir", mode=0o700), tar_entry("d/f", data=b"1"), tar_entry("d", "dir", mode=0o750)],
           layer, "copy", tmp_path)
    assert stat.S_IMODE((layer / "d").stat().st_mode) == 0o750
