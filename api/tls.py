"""TLS material for the API server: a CA generated on first start, a serving
certificate signed by it, client certificates for node agents and users, and
the `ssl` contexts both sides use.

The CA is kept across restarts because every kubeconfig embeds it
(`certificate-authority-data`); only the serving certificate is reissued, when
it lacks a requested SAN or is close to expiry.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import os
import socket
import ssl
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from timonel.api.fileutil import locked, write_atomic

log = logging.getLogger(__name__)

CA_COMMON_NAME = "timonel-ca"
SERVER_COMMON_NAME = "timonel-apiserver"
CA_VALIDITY = datetime.timedelta(days=3650)
SERVER_VALIDITY = datetime.timedelta(days=365)
CLIENT_VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)
# Certificates start a little in the past so a peer whose clock lags ours
# does not reject a certificate issued a moment ago as "not yet valid".
BACKDATE = datetime.timedelta(hours=1)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class TLSFiles:
    dir: str
    ca_cert: str
    ca_key: str
    server_cert: str
    server_key: str
    ca_pem: bytes


def _paths(tls_dir: str) -> TLSFiles:
    return TLSFiles(
        dir=tls_dir,
        ca_cert=os.path.join(tls_dir, "ca.crt"),
        ca_key=os.path.join(tls_dir, "ca.key"),
        server_cert=os.path.join(tls_dir, "server.crt"),
        server_key=os.path.join(tls_dir, "server.key"),
        ca_pem=b"",
    )


def read_ca(tls_dir: str) -> bytes:
    """The cluster CA certificate (PEM) of `tls_dir`."""
    return _read(_paths(tls_dir).ca_cert)


def ensure_tls(tls_dir: str, sans: list[str]) -> TLSFiles:
    """Create or reuse the CA and serving certificate in `tls_dir`.

    The serving certificate always covers 127.0.0.1, ::1, localhost and this
    host's name, plus `sans` (IP literals become IP SANs, the rest DNS SANs).
    """
    ips, names = split_sans(default_sans() + list(sans))
    os.makedirs(tls_dir, mode=0o700, exist_ok=True)
    files = _paths(tls_dir)
    with _locked(tls_dir):
        ca_cert, ca_key = _ensure_ca(files)
        _ensure_server_cert(files, ca_cert, ca_key, ips, names)
        with open(files.ca_cert, "rb") as f:
            ca_pem = f.read()
    return TLSFiles(files.dir, files.ca_cert, files.ca_key, files.server_cert,
                    files.server_key, ca_pem)


def default_sans() -> list[str]:
    sans = ["127.0.0.1", "::1", "localhost"]
    host = socket.gethostname()
    try:
        split_sans([host])
    except ValueError:
        # An odd host name must not stop the server; users can pass a usable one.
        log.warning("host name not usable as a TLS name, left out hostname=%r", host)
        return sans
    if host and host not in sans:
        sans.append(host)
    return sans


def split_sans(sans: list[str]) -> tuple[list[IPAddress], list[str]]:
    """Split SAN strings into IP addresses and DNS names, dropping duplicates."""
    ips: list[IPAddress] = []
    names: list[str] = []
    for raw in sans:
        s = raw.strip()
        if not s:
            continue
        try:
            ip = ipaddress.ip_address(s.strip("[]"))
        except ValueError:
            name = s.lower().rstrip(".")
            if not name.isascii() or any(c.isspace() or c in "/:@" for c in name):
                raise ValueError(
                    f"TLS subject alternative name {raw!r} is neither an IP address nor a "
                    "DNS name; give an IP literal or an ASCII host name (punycode for "
                    "international names)"
                ) from None
            if name not in names:
                names.append(name)
            continue
        if ip not in ips:
            ips.append(ip)
    return ips, names


def issue_client_cert(
    tls_dir: str, common_name: str, organizations: list[str],
    validity: datetime.timedelta = CLIENT_VALIDITY,
) -> tuple[bytes, bytes]:
    """Issue a client certificate signed by the cluster CA.

    As in Kubernetes x509 authentication, the CN is the user name and each O
    a group. Returns `(cert_pem, key_pem)`; nothing is written to disk.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _sign_client(tls_dir, key.public_key(), common_name, organizations, validity)
    return cert, _key_pem(key)


def new_client_csr(common_name: str, organizations: list[str]) -> tuple[bytes, bytes]:
    """A fresh key and a CSR for it: `(csr_pem, key_pem)`. The key never leaves
    the machine that asks (a node agent joining the cluster)."""
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs)).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def sign_client_csr(
    tls_dir: str, csr_pem: bytes, common_name: str, organizations: list[str],
    validity: datetime.timedelta = CLIENT_VALIDITY,
) -> bytes:
    """Sign the public key of `csr_pem` as a client certificate for
    `common_name`/`organizations`. The subject comes from the caller, never
    from the CSR: the caller decides who the requester may be."""
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise ValueError(f"not a PEM certificate signing request: {e}") from None
    if not csr.is_signature_valid:
        raise ValueError("the certificate signing request's signature is not valid")
    public_key = csr.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise ValueError("the certificate signing request must be for an ECDSA key")
    return _sign_client(tls_dir, public_key, common_name, organizations, validity)


def _sign_client(
    tls_dir: str, public_key: ec.EllipticCurvePublicKey, common_name: str,
    organizations: list[str], validity: datetime.timedelta,
) -> bytes:
    if not common_name:
        raise ValueError("a client certificate needs a common name: it is the user name")
    files = _paths(tls_dir)
    if not (os.path.exists(files.ca_cert) and os.path.exists(files.ca_key)):
        raise FileNotFoundError(
            f"no CA in {tls_dir} (ca.crt and ca.key): start the API server once "
            "with this TLS directory to create it"
        )
    ca_cert, ca_key = _load_ca(files)
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    cert = builder.sign(ca_key, hashes.SHA256())
    log.info("issued client certificate cn=%s o=%s", common_name, ",".join(organizations))
    return cert.public_bytes(serialization.Encoding.PEM)


def server_ssl_context(files: TLSFiles, verify_clients: bool = True) -> ssl.SSLContext:
    """Context serving `server.crt`; with `verify_clients`, client certificates
    are requested but optional (bearer-token clients send none) and, when
    sent, must chain to the CA."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(files.server_cert, files.server_key)
    # kubectl offers h2 first; aiohttp speaks only HTTP/1.1, so say so.
    ctx.set_alpn_protocols(["http/1.1"])
    if verify_clients:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cadata=(files.ca_pem or _read(files.ca_cert)).decode())
    return ctx


def client_ssl_context(
    ca_pem: bytes, cert: bytes | str | None = None, key: bytes | str | None = None,
) -> ssl.SSLContext:
    """Context trusting only `ca_pem`, optionally presenting a client certificate.

    `cert`/`key` are PEM bytes (kubeconfig `client-certificate-data`) or file
    paths (`client-certificate`).
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem.decode())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    if cert is not None:
        if key is None:
            raise ValueError("a client certificate needs its private key as well")
        _load_chain(ctx, cert, key)
    return ctx


def peer_identity(peer_cert: dict | None) -> tuple[str, list[str]] | None:
    """(CN, [O...]) of a peer certificate as returned by `SSLSocket.getpeercert()`."""
    if not peer_cert:
        return None
    cn = ""
    orgs: list[str] = []
    for rdn in peer_cert.get("subject", ()):
        for attr, value in rdn:
            if attr == "commonName":
                cn = value
            elif attr == "organizationName":
                orgs.append(value)
    if not cn:
        return None
    return cn, orgs


# --- generation and reuse ----------------------------------------------------


def _ensure_ca(files: TLSFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    have_cert = os.path.exists(files.ca_cert)
    have_key = os.path.exists(files.ca_key)
    if have_cert and have_key:
        cert, key = _load_ca(files)
        if cert.not_valid_after_utc > _now():
            if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
                log.warning("CA certificate expires soon path=%s not_after=%s: clients will "
                            "need a new kubeconfig once it is replaced",
                            files.ca_cert, cert.not_valid_after_utc.isoformat())
            return cert, key
        log.warning("CA certificate expired path=%s: generating a new CA; existing "
                    "kubeconfigs and client certificates stop working", files.ca_cert)
    elif have_cert != have_key:
        missing = files.ca_key if have_cert else files.ca_cert
        raise FileNotFoundError(
            f"{missing} is missing while its pair exists: restore it, or delete both "
            f"ca.crt and ca.key in {files.dir} to generate a new CA (existing kubeconfigs "
            "and client certificates then stop working)"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(files.ca_key, _key_pem(key), 0o600)
    _write(files.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    # A serving certificate from an older CA would no longer verify.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(files.server_cert)
    log.info("generated CA dir=%s cn=%s", files.dir, CA_COMMON_NAME)
    return cert, key


def _ensure_server_cert(
    files: TLSFiles, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey,
    ips: list[IPAddress], names: list[str],
) -> None:
    reason = _server_cert_problem(files, ca_cert, ips, names)
    if reason is None:
        return
    try:
        with open(files.server_cert, "rb") as f:
            old = x509.load_pem_x509_certificate(f.read())
        old_san = old.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        # Keep names an earlier start asked for, so servers started with
        # different flags on one directory do not keep evicting each other.
        ips = ips + [
            ip for ip in old_san.get_values_for_type(x509.IPAddress)
            if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address) and ip not in ips
        ]
        names = names + [n for n in old_san.get_values_for_type(x509.DNSName) if n not in names]
    except (FileNotFoundError, ValueError, x509.ExtensionNotFound):
        pass
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    san = x509.SubjectAlternativeName(
        [x509.DNSName(n) for n in names] + [x509.IPAddress(ip) for ip in ips]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_COMMON_NAME)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + SERVER_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(san, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    # Key first: a crash between the writes leaves a cert/key mismatch that
    # the next start detects and repairs, never a cert whose key is lost.
    _write(files.server_key, _key_pem(key), 0o600)
    _write(files.server_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info("generated serving certificate dir=%s reason=%s sans=%s", files.dir, reason,
             ",".join(names + [str(ip) for ip in ips]))


def _server_cert_problem(
    files: TLSFiles, ca_cert: x509.Certificate, ips: list[IPAddress], names: list[str],
) -> str | None:
    """Why the serving certificate must be (re)issued, or None to keep it."""
    try:
        with open(files.server_cert, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(files.server_key, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except FileNotFoundError:
        return "missing"
    except ValueError:
        return "unreadable"
    if cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        return "key-mismatch"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "other-ca"
    if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return "expiring"
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "no-san"
    have_ips = set(san.get_values_for_type(x509.IPAddress))
    have_names = {n.lower() for n in san.get_values_for_type(x509.DNSName)}
    missing = [str(ip) for ip in ips if ip not in have_ips]
    missing += [n for n in names if n not in have_names]
    if missing:
        return "new-san:" + ",".join(missing)
    return None


def _load_ca(files: TLSFiles) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(_read(files.ca_cert))
    key = serialization.load_pem_private_key(_read(files.ca_key), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{files.ca_key}: expected an ECDSA private key")
    return cert, key


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write(path: str, data: bytes, mode: int) -> None:
    write_atomic(path, data, mode)


@contextlib.contextmanager
def _locked(tls_dir: str) -> Iterator[None]:
    """Serialise generation between processes sharing a TLS directory."""
    with locked(os.path.join(tls_dir, ".lock")):
        yield


def _load_chain(ctx: ssl.SSLContext, cert: bytes | str, key: bytes | str) -> None:
    if isinstance(cert, str) and isinstance(key, str):
        ctx.load_cert_chain(cert, key)
        return
    # The ssl module loads certificates only from files: stage PEM data in a
    # private directory that is removed right after loading.
    with tempfile.TemporaryDirectory(prefix="timonel-tls-") as d:
        cert_path = cert if isinstance(cert, str) else os.path.join(d, "client.crt")
        key_path = key if isinstance(key, str) else os.path.join(d, "client.key")
        if isinstance(cert, bytes):
            _write(cert_path, cert, 0o600)
        if isinstance(key, bytes):
            _write(key_path, key, 0o600)
        ctx.load_cert_chain(cert_path, key_path)
