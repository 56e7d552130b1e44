"""Joining a cluster with the server's join token (`timonel agent --token K10...`).

The agent trusts nothing but the token: it fetches the CA from `/cacerts`
without verification, accepts it only when its sha256 equals the token's
hash, then sends a CSR for `system:node:<name>` over a connection verified
with that CA. The signed certificate and the key (made here, never sent) go
into `DIR/node.kubeconfig`, which later starts reuse: the join token is
needed once per node, and the agent never holds the admin's credentials.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import ssl
import urllib.error
import urllib.request

from timonel.api import tls
from timonel.api.auth.join import (
    CA_PATH,
    CREDENTIALS_PATH,
    NODES_GROUP,
    ca_hash,
    node_user,
    parse_join_token,
)
from timonel.api.kubeconfig import ClusterConfig, KubeconfigError, load_kubeconfig, write_kubeconfig

log = logging.getLogger(__name__)

NODE_KUBECONFIG = "node.kubeconfig"
# Ask again for a certificate this long before the old one expires.
RENEW_BEFORE = datetime.timedelta(days=30)
TIMEOUT = 30.0


class JoinError(Exception):
    """Joining failed; the message says why and what to check."""


def node_kubeconfig_path(data_dir: str) -> str:
    return os.path.join(data_dir, NODE_KUBECONFIG)


def join(server: str, join_token: str, node_name: str, data_dir: str) -> ClusterConfig:
    """Credentials of this node: the saved ones if still good for `server` and
    `node_name`, otherwise new ones obtained with `join_token`."""
    path = node_kubeconfig_path(data_dir)
    token = parse_join_token(join_token)
    saved = _saved(path, server, node_name, token.ca_hash)
    if saved is not None:
        return saved
    ca = _fetch_ca(server, token.ca_hash)
    from timonel.api import pki  # cryptography (~10 MB) only for agents that join by token

    csr, key = pki.new_client_csr(node_user(node_name), [NODES_GROUP])
    body = json.dumps({"nodeName": node_name, "csr": csr.decode()}).encode()
    req = urllib.request.Request(server.rstrip("/") + CREDENTIALS_PATH, data=body, method="POST",
                                 headers={"Authorization": f"Bearer {token.secret}",
                                          "Content-Type": "application/json"})
    try:
        with _opener(tls.client_ssl_context(ca)).open(req, timeout=TIMEOUT) as resp:
            answer = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        detail = e.read().decode(errors="replace")[:300]
        if e.code == 401:
            raise JoinError(f"the server at {server} refused the join token: {detail}") from None
        raise JoinError(f"the server at {server} refused to issue node credentials "
                        f"(HTTP {e.code}): {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise JoinError(f"cannot reach the API server at {server}: {e}") from None
    cert = str(answer.get("certificate", "")).encode()
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    write_kubeconfig(path, server, ca, client_cert_pem=cert, client_key_pem=key,
                     user=node_user(node_name))
    log.info("joined the cluster server=%s node=%s kubeconfig=%s", server, node_name, path)
    return ClusterConfig(server=server, ca_pem=ca, client_cert_pem=cert, client_key_pem=key)


def _saved(path: str, server: str, node_name: str, want_ca_hash: str) -> ClusterConfig | None:
    if not os.path.exists(path):
        return None
    try:
        config = load_kubeconfig(path)
    except (KubeconfigError, OSError) as e:
        log.warning("saved node credentials unusable path=%s err=%s; joining again", path, e)
        return None
    if config.server != server or not config.ca_pem or ca_hash(config.ca_pem) != want_ca_hash \
            or not config.client_cert_pem:
        return None
    from cryptography import x509  # see join()

    cert = x509.load_pem_x509_certificate(config.client_cert_pem)
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    if not cn or cn[0].value != node_user(node_name):
        return None
    if cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC) < RENEW_BEFORE:
        log.info("node certificate expires soon path=%s; joining again", path)
        return None
    return config


def _fetch_ca(server: str, want_hash: str) -> bytes:
    # Unverified on purpose: the hash in the token is what makes this CA trusted.
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    try:
        with _opener(insecure).open(server.rstrip("/") + CA_PATH, timeout=TIMEOUT) as resp:
            ca = bytes(resp.read())
    except (urllib.error.URLError, OSError) as e:
        raise JoinError(f"cannot fetch the cluster CA from {server}{CA_PATH}: {e}") from None
    if ca_hash(ca) != want_hash:
        raise JoinError(f"the CA served by {server} does not match the join token's hash: "
                        "wrong server, or the token belongs to another cluster")
    return ca


def _opener(ctx: ssl.SSLContext) -> urllib.request.OpenerDirector:
    # No proxies from the environment: the API server is reached directly.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                       urllib.request.HTTPSHandler(context=ctx))
