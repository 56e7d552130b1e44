"""The API server's side of logs/exec/attach: which container a request
means, and the kubelet client certificate it presents to node agents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from timonel.api import pki, tls
from timonel.api.errors import ApiError
from timonel.api.server import proxy
from timonel.node_agent.agent.streaming import certs


def pod(containers: list[str], inits: tuple[str, ...] = (), annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "web", "annotations": annotations or {}},
            "spec": {"initContainers": [{"name": n} for n in inits],
                     "containers": [{"name": n} for n in containers]}}


def test_container_defaults_and_validation() -> None:
    assert proxy.resolve_container(pod(["app"]), "") == "app"
    assert proxy.resolve_container(pod(["app"], ("init",)), "init") == "init"
    assert proxy.resolve_container(pod(["a", "b"], annotations={proxy.DEFAULT_CONTAINER_ANNOTATION: "b"}),
                                   "") == "b"
    with pytest.raises(ApiError) as e:
        proxy.resolve_container(pod(["a", "b"], ("setup",)), "")
    assert e.value.code == 400
    assert e.value.message == "a container name must be specified for pod web, choose one of: [setup a b]"
    with pytest.raises(ApiError) as e:
        proxy.resolve_container(pod(["app"]), "nope")
    assert e.value.code == 400 and e.value.message == "container nope is not valid for pod web"


def _subject(path: str) -> tuple[str, list[str]]:
    with open(path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return str(cn), [str(o) for o in orgs]


def test_kubelet_client_certificate_issued_once(tmp_path: Path) -> None:
    pki.ensure_tls(str(tmp_path), [])
    cert, key = pki.ensure_kubelet_client_cert(str(tmp_path))
    assert _subject(cert) == (tls.KUBELET_CLIENT_CN, ["system:masters"])
    before = Path(cert).read_bytes()
    assert pki.ensure_kubelet_client_cert(str(tmp_path)) == (cert, key)
    assert Path(cert).read_bytes() == before  # reused, not reissued
    # A new CA (the old one was removed): the certificate is reissued from it.
    for name in ("ca.crt", "ca.key"):
        (tmp_path / name).unlink()
    pki.ensure_tls(str(tmp_path), [])
    pki.ensure_kubelet_client_cert(str(tmp_path))
    assert Path(cert).read_bytes() != before


def test_agent_and_server_agree_on_protocols() -> None:
    from timonel.node_agent.agent.streaming import channels

    assert proxy.CHANNEL_PROTOCOLS == channels.PROTOCOLS


def test_agent_lets_in_only_the_kubelet_client() -> None:
    def peer(cn: str, *orgs: str) -> dict[str, Any]:
        return {"subject": (*((("organizationName", o),) for o in orgs), (("commonName", cn),))}
    assert certs.check_caller(peer(tls.KUBELET_CLIENT_CN, "system:masters")) is None
    refused = certs.check_caller(peer("admin", "system:masters"))
    assert refused is not None and refused[0] == 403 and '"admin"' in refused[1]
    none = certs.check_caller(None)
    assert none is not None and none[0] == 401


def test_agent_serving_certificate_reused_until_its_names_change(tmp_path: Path) -> None:
    cert, key = certs.ensure_serving_cert(str(tmp_path), "127.0.0.1", "node-a")
    first = Path(cert).read_bytes()
    assert certs.ensure_serving_cert(str(tmp_path), "127.0.0.1", "node-a") == (cert, key)
    assert Path(cert).read_bytes() == first
    certs.ensure_serving_cert(str(tmp_path), "10.1.2.3", "node-a")
    san = x509.load_pem_x509_certificate(Path(cert).read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "10.1.2.3"}
    assert "node-a" in san.get_values_for_type(x509.DNSName)
