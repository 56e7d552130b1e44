"""ImageService, the async facade the runtime's gRPC service calls (no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from timonel.node_agent.runtime.images import ImageNotFoundError, ImageService, cri_image
from timonel.node_agent.runtime.images.builder import (
    BuiltImage,
    layer_from_entries,
    make_config,
    tar_entry,
    write_oci_tar,
)


async def test_import_list_status_remove(tmp_path: Path) -> None:
    layer = layer_from_entries([tar_entry("hello", data=b"hi")])
    img = BuiltImage([layer], make_config([layer], cmd=["hello"], user="65534"), ["hello:1"])
    svc = ImageService(tmp_path / "images", unpack="never")
    try:
        (rec,) = await svc.import_image(write_oci_tar([img], tmp_path / "hello.tar"))
        assert [r.id for r in svc.list_images()] == [rec.id]
        status = svc.image_status("docker.io/library/hello:1")
        assert status is not None and status.id == rec.id
        assert svc.image_config("hello:1")["cmd"] == ["hello"]
        info = cri_image(rec, svc.image_config("hello:1"))
        assert info["uid"] == 65534 and info["username"] == "" and info["repo_tags"] == ["docker.io/library/hello:1"]
        assert info["size"] == layer.size + len(img.config) + len(img.manifest)
        flat = tmp_path / "rootfs"
        await svc.copy_rootfs("hello:1", flat)
        assert (flat / "hello").read_bytes() == b"hi"
        await svc.remove_image("hello:1")
        assert svc.list_images() == [] and svc.image_status("hello:1") is None
        with pytest.raises(ImageNotFoundError):
            await svc.remove_image("hello:1")
    finally:
        await svc.close()


def test_cri_image_username() -> None:
    from timonel.node_agent.runtime.images.store import ImageRecord

    rec = ImageRecord("sha256:" + "a" * 64, "m", "t", "c", [], 1, "", "linux/amd64")
    assert cri_image(rec, {"user": "www-data:www-data"})["username"] == "www-data"
    assert cri_image(rec, {"user": "1000:1000"})["uid"] == 1000
