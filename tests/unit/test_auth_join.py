"""The node join token and CSR signing, without a server."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from timonel.api import pki, tls
from timonel.api.auth.join import (
    JoinToken,
    JoinTokenError,
    ca_hash,
    ensure_join_token,
    join_token_file,
    looks_like_join_token,
    parse_join_token,
)


def test_token_text_round_trips_and_secret_compares() -> None:
    token = JoinToken("ab" * 32, "s3cret")
    assert token.text() == "K10" + "ab" * 32 + "::node:s3cret"
    assert looks_like_join_token(token.text())
    assert parse_join_token(token.text() + "\n") == token
    assert token.secret_matches("s3cret")
    assert not token.secret_matches("s3cret2")
    assert not looks_like_join_token("an-ordinary-bearer-token")


@pytest.mark.parametrize("text, words", [
    ("abc", "looks like"),
    ("K10xyz::node:s", "64 lowercase hex"),
    ("K10" + "AB" * 32 + "::node:s", "64 lowercase hex"),
    ("K10" + "ab" * 32 + "::admin:s", "::node:<secret>"),
    ("K10" + "ab" * 32 + "::node:", "::node:<secret>"),
])
def test_malformed_tokens_are_refused_with_the_expected_shape(text: str, words: str) -> None:
    with pytest.raises(JoinTokenError, match=words):
        parse_join_token(text)


def test_token_file_is_private_stable_and_follows_the_ca(tmp_path: str) -> None:
    d = str(tmp_path)
    first = ensure_join_token(d, b"ca one")
    assert first.ca_hash == ca_hash(b"ca one")
    assert stat.S_IMODE(os.stat(join_token_file(d)).st_mode) == 0o600
    assert ensure_join_token(d, b"ca one") == first
    moved = ensure_join_token(d, b"ca two")
    assert moved.secret == first.secret and moved.ca_hash == ca_hash(b"ca two")
    with open(join_token_file(d)) as f:
        assert parse_join_token(f.read()) == moved


def test_signed_csr_takes_its_subject_from_the_signer_not_the_request(tmp_path: str) -> None:
    d = str(tmp_path / "tls")
    pki.ensure_tls(d, [])
    # The requester asks to be an admin; the signer decides it is a node.
    csr, key = pki.new_client_csr("admin", ["system:masters"])
    cert = x509.load_pem_x509_certificate(pki.sign_client_csr(d, csr, "system:node:n1", ["system:nodes"]))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:node:n1"
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["system:nodes"]
    ca = x509.load_pem_x509_certificate(tls.read_ca(d))
    cert.verify_directly_issued_by(ca)
    assert b"PRIVATE KEY" in key


def test_bad_csrs_are_refused(tmp_path: str) -> None:
    d = str(tmp_path / "tls")
    pki.ensure_tls(d, [])
    with pytest.raises(ValueError, match="not a PEM certificate signing request"):
        pki.sign_client_csr(d, b"hello", "system:node:n1", ["system:nodes"])
    csr, _ = pki.new_client_csr("x", [])
    der = x509.load_pem_x509_csr(csr)
    # Flip a byte of the signature: the CSR no longer proves possession of its key.
    raw = bytearray(der.public_bytes(serialization.Encoding.DER))
    raw[-3] ^= 0x55
    tampered = x509.load_der_x509_csr(bytes(raw)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ValueError, match="signature is not valid"):
        pki.sign_client_csr(d, tampered, "system:node:n1", ["system:nodes"])
