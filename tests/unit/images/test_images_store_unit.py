"""Image store and importers on small synthetic images (no root, no network)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from timonel.node_agent.runtime.images.builder import (
    BuiltImage,
    layer_from_entries,
    make_config,
    oci_layout_files,
    tar_entry,
    write_dir,
    write_docker_archive,
    write_oci_layout,
    write_oci_tar,
)
from timonel.node_agent.runtime.images.errors import (
    DigestMismatchError,
    ImageInUseError,
    ImageNotFoundError,
    InvalidImageError,
)
from timonel.node_agent.runtime.images.importers import import_image
from timonel.node_agent.runtime.images.manifests import OCI_INDEX, canonical_json
from timonel.node_agent.runtime.images.store import ImageStore

BASE = layer_from_entries([tar_entry("etc/os-release", data=b"ID=test\n"), tar_entry("bin/tool", data=b"T", mode=0o755)])


def image(names: list[str], extra: bytes, cmd: list[str] | None = None) -> BuiltImage:
    top = layer_from_entries([tar_entry("app/data", data=extra)])
    return BuiltImage([BASE, top], make_config([BASE, top], cmd=cmd or ["app"], user="1000",
                                                env=["A=1"], working_dir="/app",
                                                exposed_ports=["8080/tcp"]), names)


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "store", unpack="never")


def blobs_on_disk(store: ImageStore) -> set[str]:
    return set(store.blobs.all())


SPELLINGS = ["app", "app:latest", "library/app", "docker.io/library/app", "docker.io/library/app:latest",
             "index.docker.io/library/app:latest"]


@pytest.mark.parametrize("writer", [write_oci_layout, write_oci_tar, write_docker_archive])
def test_import_found_under_every_spelling(store: ImageStore, tmp_path: Path, writer) -> None:  # type: ignore[no-untyped-def]
    img = image(["app:latest", "registry.local:5000/team/app:v1"], b"1")
    src = writer([img], tmp_path / "src")
    (rec,) = import_image(store, src)
    assert rec.id == img.config_digest
    assert set(rec.repo_tags) == {"docker.io/library/app:latest", "registry.local:5000/team/app:v1"}
    for s in [*SPELLINGS, "registry.local:5000/team/app:v1", rec.id, rec.id[7:], rec.id[7:19]]:
        assert store.resolve(s).id == rec.id, s
    # by digest: the manifest digest pins it under each of its repositories
    digest = rec.manifest_digest
    assert store.resolve(f"app@{digest}").id == rec.id
    assert store.resolve(f"app:whatever@{digest}").id == rec.id  # a digest wins over a tag
    assert store.resolve(f"registry.local:5000/team/app@{digest}").id == rec.id
    assert store.image_status("registry.local:5000/team/app:v2") is None
    assert store.image_status(f"other@{digest}") is None
    cfg = store.image_config("app")
    assert cfg["cmd"] == ["app"] and cfg["user"] == "1000" and cfg["working_dir"] == "/app"
    assert cfg["env"] == ["A=1"] and cfg["exposed_ports"] == ["8080/tcp"]


def test_not_found_is_a_clear_error(store: ImageStore) -> None:
    with pytest.raises(ImageNotFoundError, match="'nope' not found in the image store; pull or import it first"):
        store.resolve("nope")


def test_records_persist_across_reopen(store: ImageStore, tmp_path: Path) -> None:
    import_image(store, write_oci_layout([image(["app"], b"1")], tmp_path / "src"))
    again = ImageStore(store.root, unpack="never")
    assert [r.repo_tags for r in again.list_images()] == [["docker.io/library/app:latest"]]
    assert json.loads(next((store.root / "images").glob("*.json")).read_text())["repo_tags"]


def test_tags_move_and_digests_stay(store: ImageStore, tmp_path: Path) -> None:
    (old,) = import_image(store, write_oci_layout([image(["app"], b"1")], tmp_path / "v1"))
    (new,) = import_image(store, write_oci_layout([image(["app"], b"2")], tmp_path / "v2"))
    assert store.resolve("app").id == new.id
    old_now = store.resolve(old.id)
    assert old_now.repo_tags == [] and store.resolve(f"app@{old.manifest_digest}").id == old.id
    store.tag("app", "app:stable")
    assert store.resolve("app:stable").id == new.id


def test_tampered_blob_is_rejected(store: ImageStore, tmp_path: Path) -> None:
    img = image(["app"], b"1")
    src = write_oci_layout([img], tmp_path / "src")
    top = img.layers[1].digest
    blob = src / "blobs/sha256" / top[7:]
    data = bytearray(blob.read_bytes())
    data[-20] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError, match=f"hashes to sha256:[0-9a-f]{{64}}, expected {top}"):
        import_image(store, src)
    assert store.list_images() == []
    assert top not in blobs_on_disk(store)
    assert list(store.blobs.tmp_dir.iterdir()) == []


def test_tampered_docker_archive_layer_is_rejected(store: ImageStore, tmp_path: Path) -> None:
    from timonel.node_agent.runtime.images.builder import docker_archive_files

    img = image(["app"], b"1")
    files = docker_archive_files([img])
    layer = next(n for n in files if n.endswith("layer.tar") and files[n] != b"")
    files[layer] = files[layer].replace(b"ID=test", b"ID=evil")
    src = write_dir(files, tmp_path / "extracted")
    with pytest.raises(DigestMismatchError, match="tampered"):
        import_image(store, src)
    assert store.list_images() == []


def test_remove_frees_only_unshared_blobs(store: ImageStore, tmp_path: Path) -> None:
    a, b = image(["a"], b"A"), image(["b"], b"B")
    import_image(store, write_oci_layout([a, b], tmp_path / "src"))
    assert len(store.list_images()) == 2
    # both images share BASE
    store.remove_image("a")
    left = blobs_on_disk(store)
    assert BASE.digest in left and b.layers[1].digest in left
    assert a.layers[1].digest not in left and a.config_digest not in left and a.manifest_digest not in left
    store.remove_image("b")
    assert blobs_on_disk(store) == set()
    assert list((store.root / "images").iterdir()) == []


def test_in_use_images_cannot_be_removed(tmp_path: Path) -> None:
    used: set[str] = set()
    store = ImageStore(tmp_path / "s", unpack="never", in_use=lambda: used)
    (rec,) = import_image(store, write_oci_layout([image(["app"], b"1")], tmp_path / "src"))
    used.add(rec.id)
    with pytest.raises(ImageInUseError, match="remove the container first"):
        store.remove_image("app")
    used.clear()
    store.remove_image("app")


def test_lease_protects_blobs_of_a_running_import(store: ImageStore) -> None:
    with store.lease() as lease:
        d = store.blobs.put_bytes(b"half-imported")
        lease.add(d)
        store.gc()
        assert store.blobs.has(d)
    store.gc()
    assert not store.blobs.has(d)


def test_copy_rootfs_flattens_layers(store: ImageStore, tmp_path: Path) -> None:
    l1 = layer_from_entries([tar_entry("etc/a", data=b"a"), tar_entry("etc/b", data=b"b"), tar_entry("opt/x/1", data=b"1")])
    l2 = layer_from_entries([tar_entry("etc/.wh.a"), tar_entry("opt/x/.wh..wh..opq"), tar_entry("opt/x/2", data=b"2")])
    img = BuiltImage([l1, l2], make_config([l1, l2], cmd=["sh"]), ["flat"])
    import_image(store, write_oci_layout([img], tmp_path / "src"))
    dest = tmp_path / "rootfs"
    store.copy_rootfs("flat", dest)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == ["etc", "etc/b", "opt", "opt/x", "opt/x/2"]
    with pytest.raises(Exception, match="not empty"):
        store.copy_rootfs("flat", dest)


def test_names_with_several_images(store: ImageStore, tmp_path: Path) -> None:
    src = write_oci_layout([image(["a"], b"A"), image(["b"], b"B")], tmp_path / "src")
    with pytest.raises(InvalidImageError, match="holds 2 images"):
        import_image(store, src, name="c")
    (rec,) = import_image(store, src, name="b")  # picks the image already called b
    assert store.resolve("b").id == rec.id and store.image_status("a") is None


def test_caller_name_for_unnamed_layout_and_bare_tag_annotations(store: ImageStore, tmp_path: Path) -> None:
    img = image([], b"1")
    files = oci_layout_files([img])
    # what `skopeo copy ... oci:dir:v1` writes: only a bare tag
    files["index.json"] = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.manifest_digest,
         "size": len(img.manifest), "annotations": {"org.opencontainers.image.ref.name": "v1"}}]})
    src = write_dir(files, tmp_path / "src")
    (rec,) = import_image(store, src)
    assert rec.repo_tags == [] and store.resolve(rec.id[7:19]).id == rec.id
    (rec2,) = import_image(store, src, name="myapp:v1")
    assert rec2.id == rec.id and store.resolve("myapp:v1").id == rec.id
    with pytest.raises(InvalidImageError, match="digest"):
        import_image(store, src, name=f"myapp@{img.manifest_digest}")


def test_nested_index_picks_the_host_platform(store: ImageStore, tmp_path: Path) -> None:
    native = image([], b"native")
    foreign = BuiltImage(native.layers, make_config(native.layers, cmd=["x"], architecture="s390x"), [])
    files = {**oci_layout_files([native]), **oci_layout_files([foreign])}
    from timonel.node_agent.runtime.images.manifests import host_platform, sha256_digest

    host = host_platform()
    inner = canonical_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": foreign.manifest_digest,
         "size": len(foreign.manifest), "platform": {"os": "linux", "architecture": "s390x"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": native.manifest_digest,
         "size": len(native.manifest), "platform": {"os": "linux", "architecture": host.architecture}}]})
    inner_digest = sha256_digest(inner)
    files[f"blobs/sha256/{inner_digest[7:]}"] = inner
    files["index.json"] = canonical_json({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_INDEX, "digest": inner_digest, "size": len(inner),
         "annotations": {"io.containerd.image.name": "docker.io/library/multi:1"}}]})
    (rec,) = import_image(store, write_dir(files, tmp_path / "src"))
    assert rec.id == native.config_digest and rec.index_digest == inner_digest
    assert store.resolve(f"multi@{inner_digest}").id == rec.id  # the index digest pins it
    assert store.resolve("multi:1").manifest_digest == native.manifest_digest


def test_unknown_source_is_a_clear_error(store: ImageStore, tmp_path: Path) -> None:
    (tmp_path / "junk").mkdir()
    with pytest.raises(InvalidImageError, match="neither an OCI image layout"):
        import_image(store, tmp_path / "junk")
    (tmp_path / "file").write_bytes(b"not a tar")
    with pytest.raises(InvalidImageError, match="not a directory or a readable tar"):
        import_image(store, tmp_path / "file")
    shutil.rmtree(tmp_path / "junk")


def test_docker_archive_with_gzip_layers(store: ImageStore, tmp_path: Path) -> None:
    import gzip

    from timonel.node_agent.runtime.images.builder import docker_archive_files

    img = image(["app"], b"1")
    files = docker_archive_files([img])
    for name in [n for n in files if n.endswith("layer.tar")]:
        files[name] = gzip.compress(files[name], mtime=0)
    (rec,) = import_image(store, write_dir(files, tmp_path / "gz"))
    assert rec.id == img.config_digest
    assert [x.media_type for x in rec.layers] == ["application/vnd.oci.image.layer.v1.tar+gzip"] * 2
    top = next(n for n in files if n.endswith("layer.tar") and gzip.decompress(files[n]).find(b"app/data") >= 0)
    files[top] = gzip.compress(gzip.decompress(files[top]).replace(b"app/data", b"app/evil"), mtime=0)
    store2 = ImageStore(tmp_path / "s2", unpack="never")
    with pytest.raises(DigestMismatchError, match="tampered"):
        import_image(store2, write_dir(files, tmp_path / "gz-bad"))
