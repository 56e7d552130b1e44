"""Every certificate timonel makes: the cluster CA (generated on first start),
the API server's serving certificate, client certificates for users, node
agents and the API server's kubelet client, CSRs for joining nodes, and the
node agent's self-signed serving certificate.

The CA is kept across restarts because every kubeconfig embeds it
(`certificate-authority-data`); only the serving certificate is reissued, when
it lacks a requested SAN or is close to expiry.

Long-running processes run this module as a child (`python -m timonel.api.pki`,
see `tls.ensure_apiserver_files`) so `cryptography` never stays resident in them.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import logging
import os
import sys
from collections.abc import Iterator

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from timonel.api.fileutil import locked, write_atomic
from timonel.api.tls import (
    KUBELET_CLIENT_CN,
    KUBELET_CLIENT_GROUPS,
    PKI_EXIT_BAD_INPUT,
    PKI_EXIT_FAILED,
    IPAddress,
    TLSFiles,
    agent_serving_files,
    default_sans,
    kubelet_client_files,
    split_sans,
    tls_paths,
)

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


def ensure_tls(tls_dir: str, sans: list[str]) -> TLSFiles:
    """Create or reuse the CA and serving certificate in `tls_dir`.

    The serving certificate always covers 127.0.0.1, ::1, localhost and this
    host's name, plus `sans` (IP literals become IP SANs, the rest DNS SANs).
    """
    ips, names = split_sans(default_sans() + list(sans))
    os.makedirs(tls_dir, mode=0o700, exist_ok=True)
    files = tls_paths(tls_dir)
    with _locked(tls_dir):
        ca_cert, ca_key = _ensure_ca(files)
        _ensure_server_cert(files, ca_cert, ca_key, ips, names)
        with open(files.ca_cert, "rb") as f:
            ca_pem = f.read()
    return TLSFiles(files.dir, files.ca_cert, files.ca_key, files.server_cert,
                    files.server_key, ca_pem)


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
    files = tls_paths(tls_dir)
    if not (os.path.exists(files.ca_cert) and os.path.exists(files.ca_key)):
        raise FileNotFoundError(
            f"no CA in {tls_dir} (ca.crt and ca.key): start the API server once "
            "with this TLS directory to create it"
        )
    ca_cert, ca_key = _load_ca(files)
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    cert = _leaf(x509.Name(attrs), public_key, ca_cert, ca_key, validity,
                 ExtendedKeyUsageOID.CLIENT_AUTH)
    log.info("issued client certificate cn=%s o=%s", common_name, ",".join(organizations))
    return cert.public_bytes(serialization.Encoding.PEM)

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
    san = x509.SubjectAlternativeName(
        [x509.DNSName(n) for n in names] + [x509.IPAddress(ip) for ip in ips]
    )
    cert = _leaf(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_COMMON_NAME)]),
                 key.public_key(), ca_cert, ca_key, SERVER_VALIDITY, ExtendedKeyUsageOID.SERVER_AUTH, san)
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


def _leaf(
    subject: x509.Name, public_key: ec.EllipticCurvePublicKey, ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey, validity: datetime.timedelta, usage: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None = None,
) -> x509.Certificate:
    """A certificate signed by the CA for `usage` (server or client auth), never outliving the CA."""
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca_key, hashes.SHA256())


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


# --- the API server's kubelet client and the node agent's serving certificate ---

AGENT_SERVING_VALIDITY = datetime.timedelta(days=365)


def ensure_kubelet_client_cert(tls_dir: str) -> tuple[str, str]:
    """The API server's client certificate for node agents (logs, exec, attach),
    reissued when missing, near expiry or signed by an earlier CA."""
    cert, key = kubelet_client_files(tls_dir)
    try:
        c = x509.load_pem_x509_certificate(_read(cert))
        ca = x509.load_pem_x509_certificate(_read(tls_paths(tls_dir).ca_cert))
        # A certificate of an earlier CA (the directory's CA was replaced) would be refused.
        c.verify_directly_issued_by(ca)
        if os.path.exists(key) and c.not_valid_after_utc - _now() > RENEW_BEFORE:
            return cert, key
    except (OSError, ValueError, TypeError, InvalidSignature):
        pass
    pem, key_pem = issue_client_cert(tls_dir, KUBELET_CLIENT_CN, KUBELET_CLIENT_GROUPS)
    _write(key, key_pem, 0o600)
    _write(cert, pem, 0o600)
    return cert, key


def ensure_agent_serving_cert(pki_dir: str, node_ip: str, hostname: str) -> tuple[str, str]:
    """(cert, key) paths of a self-signed serving certificate in `pki_dir`,
    made anew when missing, near expiry or not naming `node_ip`/`hostname`.

    Like a kubelet without a configured certificate, the agent signs its own;
    the API server does not verify it (upstream's default without
    --kubelet-certificate-authority)."""
    os.makedirs(pki_dir, mode=0o700, exist_ok=True)
    cert_path, key_path = agent_serving_files(pki_dir)
    ips = {str(ipaddress.ip_address(i)) for i in ({"127.0.0.1", node_ip} if node_ip else {"127.0.0.1"})}
    names = {hostname.lower(), "localhost"} - {""}
    if _agent_cert_usable(cert_path, key_path, ips, names):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{hostname}@{int(now.timestamp())}")])
    san = x509.SubjectAlternativeName([x509.DNSName(n) for n in sorted(names)]
                                      + [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(ips)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + AGENT_SERVING_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(san, critical=False)
            .sign(key, hashes.SHA256()))
    _write(key_path, _key_pem(key), 0o600)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info("agent serving certificate made path=%s ips=%s names=%s", cert_path,
             ",".join(sorted(ips)), ",".join(sorted(names)))
    return cert_path, key_path


def _agent_cert_usable(cert_path: str, key_path: str, ips: set[str], names: set[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(_read(cert_path))
        if not os.path.exists(key_path):
            return False
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    have_ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    have_names = set(san.get_values_for_type(x509.DNSName))
    fresh = cert.not_valid_after_utc - _now() > RENEW_BEFORE
    return fresh and ips <= have_ips and names <= have_names


USAGE = ("usage: python -m timonel.api.pki apiserver TLS_DIR [SAN...]\n"
         "       python -m timonel.api.pki agent-serving PKI_DIR NODE_IP HOSTNAME\n"
         "       python -m timonel.api.pki sign-csr TLS_DIR CN [GROUP...] < CSR > CERT")


def main(argv: list[str]) -> int:
    """The child that `tls.ensure_apiserver_files`, `tls.ensure_agent_serving_cert` and
    `tls.sign_client_csr` run: exit 0 once done; else the reason on stderr's last line."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if len(argv) >= 2 and argv[0] == "apiserver":
            ensure_tls(argv[1], argv[2:])
            ensure_kubelet_client_cert(argv[1])
        elif len(argv) == 4 and argv[0] == "agent-serving":
            ensure_agent_serving_cert(argv[1], argv[2], argv[3])
        elif len(argv) >= 3 and argv[0] == "sign-csr":
            sys.stdout.buffer.write(sign_client_csr(argv[1], sys.stdin.buffer.read(), argv[2], argv[3:]))
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except ValueError as e:
        print(str(e), file=sys.stderr)
        return PKI_EXIT_BAD_INPUT
    except OSError as e:
        print(str(e), file=sys.stderr)
        return PKI_EXIT_FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
