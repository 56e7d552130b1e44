"""Kubeconfig files: written by the server for its admin, read by every client.

Only the parts timonel uses are understood: clusters with `server` and
`certificate-authority(-data)` or `insecure-skip-tls-verify`, users with
`token`/`tokenFile` or client certificates, and contexts with a namespace.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

import yaml

from timonel.api.fileutil import write_atomic


class KubeconfigError(ValueError):
    pass


@dataclass(frozen=True)
class ClusterConfig:
    server: str
    ca_pem: bytes | None = None
    insecure: bool = False
    token: str | None = None
    client_cert_pem: bytes | None = None
    client_key_pem: bytes | None = None
    namespace: str = "default"
    context: str = ""
    # Reach `server` through this unix socket (plain HTTP) instead of TCP: the API
    # server's own loopback (api/server/loopback_socket.py). Never from a kubeconfig.
    unix_socket: str | None = None


def write_kubeconfig(path: str, server: str, ca_pem: bytes, *, token: str | None = None,
                     client_cert_pem: bytes | None = None, client_key_pem: bytes | None = None,
                     context: str = "timonel", user: str = "admin") -> None:
    """Write a kubeconfig with one cluster, one user and one context (mode 0600)."""
    user_entry: dict[str, Any] = {}
    if token:
        user_entry["token"] = token
    if client_cert_pem and client_key_pem:
        user_entry["client-certificate-data"] = base64.b64encode(client_cert_pem).decode()
        user_entry["client-key-data"] = base64.b64encode(client_key_pem).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {
            "server": server,
            "certificate-authority-data": base64.b64encode(ca_pem).decode(),
        }}],
        "users": [{"name": f"{context}-{user}", "user": user_entry}],
        "contexts": [{"name": context, "context": {
            "cluster": context, "user": f"{context}-{user}", "namespace": "default"}}],
        "current-context": context,
        "preferences": {},
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_atomic(path, yaml.safe_dump(doc, sort_keys=False).encode(), 0o600)


def _named(items: Any, name: str, what: str, path: str) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item.get(what) or {}
    raise KubeconfigError(f"{path}: no {what} named {name!r}")


def _data(entry: dict[str, Any], key: str, base_dir: str) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        p = entry[key]
        with open(p if os.path.isabs(p) else os.path.join(base_dir, p), "rb") as f:
            return f.read()
    return None


def load_kubeconfig(path: str | None = None, context: str | None = None) -> ClusterConfig:
    """Read a kubeconfig (default: $KUBECONFIG, then ~/.kube/config)."""
    path = path or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or \
        os.path.expanduser("~/.kube/config")
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except OSError as e:
        raise KubeconfigError(f"cannot read kubeconfig {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise KubeconfigError(f"{path} is not valid YAML: {e}") from None
    name = context or doc.get("current-context")
    if not name:
        raise KubeconfigError(f"{path}: no current-context set and no context given")
    ctx = _named(doc.get("contexts"), name, "context", path)
    cluster = _named(doc.get("clusters"), ctx.get("cluster", ""), "cluster", path)
    user = _named(doc.get("users"), ctx.get("user", ""), "user", path) if ctx.get("user") else {}
    base = os.path.dirname(os.path.abspath(path))
    token = user.get("token")
    if not token and user.get("tokenFile"):
        with open(user["tokenFile"]) as f:
            token = f.read().strip()
    if not cluster.get("server"):
        raise KubeconfigError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    return ClusterConfig(
        server=cluster["server"].rstrip("/"),
        ca_pem=_data(cluster, "certificate-authority", base),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token=token,
        client_cert_pem=_data(user, "client-certificate", base),
        client_key_pem=_data(user, "client-key", base),
        namespace=ctx.get("namespace") or "default",
        context=name,
    )
