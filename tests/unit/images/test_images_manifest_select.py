"""Manifest kinds, platform selection from indexes, image config defaults."""

from __future__ import annotations

import json

import pytest

from timonel.node_agent.runtime.images import manifests as m
from timonel.node_agent.runtime.images.errors import InvalidImageError


def entry(arch: str, variant: str = "", os_name: str = "linux", digest_char: str = "a",
          attestation: bool = False) -> m.Descriptor:
    d: dict[str, object] = {
        "mediaType": m.OCI_MANIFEST, "digest": "sha256:" + digest_char * 64, "size": 10,
        "platform": {"os": os_name, "architecture": arch, **({"variant": variant} if variant else {})},
    }
    if attestation:
        d["annotations"] = {"vnd.docker.reference.type": "attestation-manifest"}
    return m.parse_descriptor(d, "test")


def test_selects_host_platform_by_default() -> None:
    host = m.host_platform()
    entries = [entry("s390x", digest_char="1"), entry(host.architecture, host.variant, digest_char="2")]
    assert m.select_manifest(entries, None, "idx").digest == "sha256:" + "2" * 64


def test_exact_variant_wins_and_missing_variant_matches() -> None:
    entries = [entry("arm", "v6", digest_char="1"), entry("arm", "v7", digest_char="2")]
    assert m.select_manifest(entries, m.Platform("linux", "arm", "v7"), "idx").digest.endswith("2" * 64)
    only_plain = [entry("arm64", digest_char="3")]
    assert m.select_manifest(only_plain, m.Platform("linux", "arm64", "v8"), "idx").digest.endswith("3" * 64)


def test_amd64_pick_from_docker_manifest_list() -> None:
    doc = {
        "schemaVersion": 2, "mediaType": m.DOCKER_MANIFEST_LIST,
        "manifests": [
            {"mediaType": m.DOCKER_MANIFEST, "digest": "sha256:" + "1" * 64, "size": 1,
             "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"mediaType": m.DOCKER_MANIFEST, "digest": "sha256:" + "2" * 64, "size": 1,
             "platform": {"os": "windows", "architecture": "amd64"}},
            {"mediaType": m.DOCKER_MANIFEST, "digest": "sha256:" + "3" * 64, "size": 1,
             "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }
    assert m.detect_media_type(doc, None, "x") == m.DOCKER_MANIFEST_LIST
    chosen = m.select_manifest(m.parse_index(doc, "x"), m.Platform("linux", "amd64"), "x")
    assert chosen.digest == "sha256:" + "3" * 64


def test_attestations_are_never_picked_and_errors_list_platforms() -> None:
    entries = [entry("unknown", os_name="unknown", attestation=True), entry("s390x", digest_char="b")]
    with pytest.raises(InvalidImageError, match=r"no image for platform linux/amd64 \(available: linux/s390x"):
        m.select_manifest(entries, m.Platform("linux", "amd64"), "idx")


def test_single_unplatformed_entry_is_taken() -> None:
    d = m.parse_descriptor({"mediaType": m.OCI_MANIFEST, "digest": "sha256:" + "c" * 64, "size": 3}, "t")
    assert m.select_manifest([d], m.Platform("linux", "amd64"), "idx") is d


def test_media_type_detection() -> None:
    assert m.detect_media_type({"schemaVersion": 2, "config": {}, "layers": []}, None, "x") == m.OCI_MANIFEST
    assert m.detect_media_type({"schemaVersion": 2, "manifests": []}, "application/json", "x") == m.OCI_INDEX
    assert m.detect_media_type({}, m.DOCKER_MANIFEST + "; charset=utf-8", "x") == m.DOCKER_MANIFEST
    with pytest.raises(InvalidImageError, match="schema 1"):
        m.detect_media_type({"schemaVersion": 1}, m.DOCKER_SCHEMA1_SIGNED, "x")


def test_manifest_rejects_foreign_layers() -> None:
    doc = {"schemaVersion": 2, "mediaType": m.DOCKER_MANIFEST,
           "config": {"mediaType": m.DOCKER_CONFIG, "digest": "sha256:" + "1" * 64, "size": 1},
           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                       "digest": "sha256:" + "2" * 64, "size": 1}]}
    with pytest.raises(InvalidImageError, match=r"layers\[0\] has unsupported media type"):
        m.parse_manifest(doc, "x")


def test_chain_ids_follow_the_oci_formula() -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    chains = m.chain_ids([a, b])
    assert chains[0] == a
    assert chains[1] == m.sha256_digest(f"{a} {b}".encode())


def test_runtime_config_defaults() -> None:
    raw = json.loads(json.dumps({"config": {
        "Entrypoint": ["/init"], "Cmd": ["serve"], "Env": ["A=1"], "WorkingDir": "/srv",
        "User": "1000:1000", "ExposedPorts": {"8080/tcp": {}, "53/udp": {}}}}))
    cfg = m.runtime_config(raw)
    assert cfg["entrypoint"] == ["/init"] and cfg["cmd"] == ["serve"] and cfg["env"] == ["A=1"]
    assert cfg["working_dir"] == "/srv" and cfg["user"] == "1000:1000"
    assert cfg["exposed_ports"] == ["53/udp", "8080/tcp"]
    empty = m.runtime_config({})
    assert empty["entrypoint"] == [] and empty["cmd"] == [] and empty["user"] == ""


def test_parse_platform() -> None:
    assert m.parse_platform("linux/arm64/v8") == m.Platform("linux", "arm64", "v8")
    assert m.parse_platform("amd64") == m.Platform("linux", "amd64")
    with pytest.raises(InvalidImageError):
        m.parse_platform("linux//")
