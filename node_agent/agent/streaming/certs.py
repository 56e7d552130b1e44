"""The TLS rules of the agent's endpoint and its serving certificate.

Like a kubelet without a configured certificate, the agent signs its own
(DATA/pki/agent.crt, covering the node's address and host name, made by
`api/pki.py` in a child process so `cryptography` never stays resident in the
agent); the API server does not verify it (upstream's default without
--kubelet-certificate-authority). Clients must present a certificate of the
cluster CA naming the API server's kubelet client: nobody else may read logs
or run commands in containers.
"""

from __future__ import annotations

import os
import ssl

from timonel.api import tls
from timonel.api.tls import KUBELET_CLIENT_CN, peer_identity


def ensure_serving_cert(data_dir: str, node_ip: str, hostname: str) -> tuple[str, str]:
    """(cert path, key path) of a self-signed serving certificate in DATA/pki,
    made anew when missing, near expiry or not naming `node_ip`/`hostname`."""
    return tls.ensure_agent_serving_cert(os.path.join(data_dir, "pki"), node_ip, hostname)


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
