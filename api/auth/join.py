"""The node join token: `DIR/node-token`, like k3s's.

`K10<sha256 of the CA certificate, hex>::node:<secret>`. The hash lets an
agent that has nothing but the token trust the server: it fetches the CA
from `/cacerts` over an unverified connection and accepts it only if its
hash matches. The secret is good for one thing only, exchanging a CSR for a
node client certificate (`system:node:<name>` in `system:nodes`); it never
authenticates any other request, so a leaked join token cannot read Secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass

from timonel.api.fileutil import locked, write_atomic

JOIN_TOKEN_FILE = "node-token"
CA_PATH = "/cacerts"
CREDENTIALS_PATH = "/v1-timonel/node-credentials"
PREFIX = "K10"
JOIN_USER = "node"
NODE_USER_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"


class JoinTokenError(ValueError):
    """Not a join token; the message says what the right shape is."""


@dataclass(frozen=True)
class JoinToken:
    ca_hash: str  # hex sha256 of the CA certificate PEM, as written in ca.crt
    secret: str

    def text(self) -> str:
        return f"{PREFIX}{self.ca_hash}::{JOIN_USER}:{self.secret}"

    def secret_matches(self, offered: str) -> bool:
        return hmac.compare_digest(self.secret.encode(), offered.encode())


def ca_hash(ca_pem: bytes) -> str:
    return hashlib.sha256(ca_pem).hexdigest()


def looks_like_join_token(text: str) -> bool:
    return text.startswith(PREFIX) and "::" in text


def parse_join_token(text: str) -> JoinToken:
    text = text.strip()
    if not looks_like_join_token(text):
        raise JoinTokenError("a join token looks like K10<64 hex digits>::node:<secret> "
                             "(the server writes it to DATA_DIR/node-token)")
    digest, _, rest = text[len(PREFIX):].partition("::")
    user, _, secret = rest.partition(":")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise JoinTokenError("the join token's CA hash must be 64 lowercase hex digits")
    if user != JOIN_USER or not secret:
        raise JoinTokenError(f"the join token must end in ::{JOIN_USER}:<secret>")
    return JoinToken(digest, secret)


def join_token_file(data_dir: str) -> str:
    return os.path.join(data_dir, JOIN_TOKEN_FILE)


def ensure_join_token(data_dir: str, ca_pem: bytes) -> JoinToken:
    """The server's join token, created on first start; rewritten if the CA changed
    (the secret is kept, so only the hash part of old copies goes stale)."""
    path = join_token_file(data_dir)
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    with locked(os.path.join(data_dir, ".node-token.lock")):
        try:
            with open(path, encoding="utf-8") as f:
                token = parse_join_token(f.read())
        except (FileNotFoundError, JoinTokenError):
            token = JoinToken(ca_hash(ca_pem), secrets.token_urlsafe(32))
        if token.ca_hash != ca_hash(ca_pem):
            token = JoinToken(ca_hash(ca_pem), token.secret)
        write_atomic(path, (token.text() + "\n").encode(), 0o600)
    return token


def node_user(node_name: str) -> str:
    return NODE_USER_PREFIX + node_name
