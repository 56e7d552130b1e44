"""Import the offline busybox image in every format and run it (as root).

Also reads archives written by skopeo (Debian), so the importers are
checked against another implementation, not only against our own writer.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from timonel.node_agent.runtime.images.builder import BuiltImage
from timonel.node_agent.runtime.images.importers import import_image
from timonel.node_agent.runtime.images.store import ImageStore

from .conftest import needs_busybox, needs_root

pytestmark = needs_busybox

SPELLINGS = [
    "busybox", "busybox:latest", "library/busybox", "docker.io/library/busybox",
    "docker.io/library/busybox:latest", "index.docker.io/library/busybox",
    "timonel.local/busybox", "timonel.local/busybox:latest",
]


@pytest.mark.parametrize("kind", ["docker_archive", "oci_dir", "oci_tar"])
def test_import_busybox_found_by_every_spelling(kind: str, busybox_files: dict[str, Path],
                                                busybox_built: BuiltImage, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store", unpack="never")
    (rec,) = import_image(store, busybox_files[kind])
    assert rec.id == busybox_built.config_digest
    assert set(rec.repo_tags) == {"docker.io/library/busybox:latest", "timonel.local/busybox:latest"}
    for spelling in SPELLINGS:
        assert store.resolve(spelling).id == rec.id, spelling
    assert store.resolve(f"busybox@{rec.manifest_digest}").id == rec.id
    assert store.resolve(f"timonel.local/busybox:latest@{rec.manifest_digest}").id == rec.id
    assert store.image_config("busybox")["cmd"] == ["sh"]
    if kind != "docker_archive":
        # OCI layouts keep the real manifest; docker save has none (one is made on import).
        assert rec.manifest_digest == busybox_built.manifest_digest
    reopened = ImageStore(store.root, unpack="never")
    assert reopened.resolve("busybox").id == rec.id


@needs_root
@pytest.mark.parametrize("mode", ["overlay", "copy"])
def test_imported_busybox_runs(mode: str, busybox_files: dict[str, Path], tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "store")
    import_image(store, busybox_files["docker_archive"])
    if mode == "copy":
        rootfs = tmp_path / "rootfs"
        store.copy_rootfs("busybox", rootfs)
        cmd = ["chroot", str(rootfs), "/bin/sh", "-c", "id -un; id -u user; ls -ld /tmp"]
    else:
        lowers = ":".join(store.rootfs_layers("busybox"))
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        # A private mount namespace: the overlay vanishes with the command.
        script = (f"mount -t overlay overlay -o lowerdir={lowers},upperdir={tmp_path}/u,workdir={tmp_path}/w {mnt}"
                  f" && chroot {mnt} /bin/sh -c 'id -un; id -u user; ls -ld /tmp'")
        (tmp_path / "u").mkdir()
        (tmp_path / "w").mkdir()
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c", script]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[0] == "root" and lines[1] == "1000" and lines[2].startswith("drwxrwxrwt")


@pytest.mark.skipif(not shutil.which("skopeo"), reason="skopeo missing: apt-get install skopeo (deploy/install.sh does)")
@pytest.mark.parametrize("dest", ["docker-archive", "oci-archive", "oci"])
def test_import_what_skopeo_writes(dest: str, busybox_module, busybox_built: BuiltImage,  # type: ignore[no-untyped-def]
                                   tmp_path: Path) -> None:
    one = BuiltImage(busybox_built.layers, busybox_built.config, ["timonel.local/busybox:latest"])
    src = busybox_module.write_busybox_image(tmp_path / "src", image=one)["oci_dir"]
    out = tmp_path / ("skopeo.tar" if dest.endswith("archive") else "skopeo-oci")
    target = f"{dest}:{out}:" + ("quay.example/team/bb:2" if dest == "docker-archive" else "v2")
    env = {**os.environ, "HOME": str(tmp_path)}
    res = subprocess.run(["skopeo", "copy", "-q", f"oci:{src}:latest", target],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr
    store = ImageStore(tmp_path / "store", unpack="never")
    name = None if dest == "docker-archive" else "quay.example/team/bb:2"  # OCI: only a bare tag inside
    (rec,) = import_image(store, out, name=name)
    assert rec.id == busybox_built.config_digest
    assert store.resolve("quay.example/team/bb:2").id == rec.id
