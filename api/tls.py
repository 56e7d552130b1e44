"""TLS for timonel's processes: where the cluster's certificates live, the
`ssl` contexts both sides of a connection use, and who a peer certificate names.

Nothing here imports `cryptography`: making and checking certificates is
`pki.py`'s job, and long-running processes (API server, node agent) have it
done by a short-lived child (`ensure_apiserver_files`, `ensure_agent_serving_cert`)
so the library's ~10 MB never stays resident in them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
import socket
import ssl
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from timonel.api.fileutil import write_atomic

log = logging.getLogger(__name__)

# The identity node agents let in for logs, exec and attach (the API server's kubelet client).
KUBELET_CLIENT_CN = "timonel:apiserver-kubelet-client"
KUBELET_CLIENT_GROUPS = ["system:masters"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# How a `python -m timonel.api.pki` child ends (its reason on stderr's last line).
PKI_EXIT_BAD_INPUT = 1  # the request is wrong (a malformed CSR)
PKI_EXIT_FAILED = 3  # the files are (missing CA, permissions)


@dataclass(frozen=True)
class TLSFiles:
    dir: str
    ca_cert: str
    ca_key: str
    server_cert: str
    server_key: str
    ca_pem: bytes


def tls_paths(tls_dir: str) -> TLSFiles:
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
    return _read(tls_paths(tls_dir).ca_cert)


def ensure_apiserver_files(tls_dir: str, sans: list[str]) -> TLSFiles:
    """The CA, serving certificate (covering `sans` and this host) and kubelet
    client certificate in `tls_dir`, made or renewed by a child process.

    The API server lives for months; the `cryptography` modules that checking
    and signing take would stay resident in it for nothing."""
    split_sans(sans)  # a bad --tls-san is a ValueError here, before any child
    _pki_child(["apiserver", tls_dir, *sans])
    files = tls_paths(tls_dir)
    return dataclasses.replace(files, ca_pem=_read(files.ca_cert))


def kubelet_client_files(tls_dir: str) -> tuple[str, str]:
    """(cert, key) paths of the API server's client certificate for node agents."""
    return os.path.join(tls_dir, "kubelet-client.crt"), os.path.join(tls_dir, "kubelet-client.key")


def ensure_agent_serving_cert(pki_dir: str, node_ip: str, hostname: str) -> tuple[str, str]:
    """(cert, key) paths of the node agent's self-signed serving certificate
    in `pki_dir`, made anew by a child process when missing, near expiry or not
    naming `node_ip`/`hostname`."""
    _pki_child(["agent-serving", pki_dir, node_ip, hostname])
    return agent_serving_files(pki_dir)


def agent_serving_files(pki_dir: str) -> tuple[str, str]:
    """(cert, key) paths of the node agent's serving certificate."""
    return os.path.join(pki_dir, "agent.crt"), os.path.join(pki_dir, "agent.key")


async def sign_client_csr(tls_dir: str, csr_pem: bytes, common_name: str,
                          organizations: list[str]) -> bytes:
    """`pki.sign_client_csr` in a child process (a node joining is rare; the API
    server need not keep `cryptography` for it). ValueError: the CSR is unusable."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "timonel.api.pki", "sign-csr", tls_dir, common_name, *organizations,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    cert, err = await proc.communicate(csr_pem)
    _check_child(["sign-csr", tls_dir], proc.returncode or 0, err.decode(errors="replace"))
    return cert


def _pki_child(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "timonel.api.pki", *args], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, check=False)
    _check_child(args, proc.returncode, proc.stderr)


def _check_child(args: list[str], code: int, stderr: str) -> None:
    lines = stderr.strip().splitlines()
    for line in lines[:-1] if code else lines:
        log.info("pki: %s", line)
    if code == 0:
        return
    reason = lines[-1] if lines else f"exit {code}"
    if code == PKI_EXIT_BAD_INPUT:
        raise ValueError(reason)
    raise OSError(f"certificates in {args[1]}: {reason}")


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


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write(path: str, data: bytes, mode: int) -> None:
    write_atomic(path, data, mode)


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
