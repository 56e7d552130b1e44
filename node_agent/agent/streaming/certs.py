"""The agent's serving certificate and the TLS rules of its endpoint.

Like a kubelet without a configured certificate, the agent signs its own
(DATA/pki/agent.crt, covering the node's address and host name); the API
server does not verify it (upstream's default without
--kubelet-certificate-authority). Clients must present a certificate of the
cluster CA naming the API server's kubelet client: nobody else may read logs
or run commands in containers.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from timonel.api.fileutil import write_atomic
from timonel.api.server.proxy import KUBELET_CLIENT_CN
from timonel.api.tls import peer_identity

log = logging.getLogger(__name__)

VALIDITY = datetime.timedelta(days=365)
RENEW_BEFORE = datetime.timedelta(days=30)


def _names(node_ip: str, hostname: str) -> tuple[set[str], set[str]]:
    ips = {"127.0.0.1", node_ip} if node_ip else {"127.0.0.1"}
    return {str(ipaddress.ip_address(i)) for i in ips}, {hostname.lower(), "localhost"} - {""}


def _usable(cert_path: str, key_path: str, ips: set[str], names: set[str]) -> bool:
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        if not os.path.exists(key_path):
            return False
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    have_ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    have_names = set(san.get_values_for_type(x509.DNSName))
    fresh = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > RENEW_BEFORE
    return fresh and ips <= have_ips and names <= have_names


def ensure_serving_cert(data_dir: str, node_ip: str, hostname: str) -> tuple[str, str]:
    """(cert path, key path) of a self-signed serving certificate in DATA/pki,
    made anew when missing, near expiry or not naming `node_ip`/`hostname`."""
    pki = os.path.join(data_dir, "pki")
    os.makedirs(pki, mode=0o700, exist_ok=True)
    cert_path, key_path = os.path.join(pki, "agent.crt"), os.path.join(pki, "agent.key")
    ips, names = _names(node_ip, hostname)
    if _usable(cert_path, key_path, ips, names):
        return cert_path, key_path
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{hostname}@{int(now.timestamp())}")])
    san = x509.SubjectAlternativeName([x509.DNSName(n) for n in sorted(names)]
                                      + [x509.IPAddress(ipaddress.ip_address(i)) for i in sorted(ips)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(san, critical=False)
            .sign(key, hashes.SHA256()))
    write_atomic(key_path, key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()), 0o600)
    write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info("agent serving certificate made path=%s ips=%s names=%s", cert_path,
             ",".join(sorted(ips)), ",".join(sorted(names)))
    return cert_path, key_path


def server_context(cert_path: str, key_path: str, client_ca_pem: bytes | None) -> ssl.SSLContext:
    """Serving context asking for a client certificate of `client_ca_pem`.

    Optional at the TLS level so a caller without one gets a 401 that says
    why rather than a failed handshake. Without a CA nobody is let in."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_path, key_path)
    ctx.set_alpn_protocols(["http/1.1"])
    if client_ca_pem:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cadata=client_ca_pem.decode())
    return ctx


def check_caller(peer_cert: dict | None) -> tuple[int, str] | None:  # type: ignore[type-arg]
    """None when the verified peer may call the agent; else (HTTP code, why)."""
    who = peer_identity(peer_cert)
    if who is None:
        return 401, ("Unauthorized: the node agent accepts only the API server's client "
                     "certificate (signed by the cluster CA)")
    cn, groups = who
    if cn != KUBELET_CLIENT_CN:
        return 403, (f'Forbidden: user "{cn}" (groups {groups}) may not use the node agent\'s '
                     f"endpoint; only {KUBELET_CLIENT_CN} may (use the API server's pods/log, "
                     "pods/exec, pods/attach)")
    return None
