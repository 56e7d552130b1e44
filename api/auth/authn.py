"""Request authentication: client certificates and bearer tokens.

Follows the upstream union: a verified client certificate wins, then the
bearer token. Credentials that are offered but wrong fail the request (401)
even when anonymous access is enabled; only a request that offers none
becomes `system:anonymous`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from timonel.api.auth.tokens import TokenEntry, TokenFileError, read_tokens
from timonel.api.errors import status_object
from timonel.api.tls import peer_identity

log = logging.getLogger(__name__)

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS_USER = "system:anonymous"


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str
    groups: tuple[str, ...]


def anonymous() -> UserInfo:
    return UserInfo(ANONYMOUS_USER, "", (UNAUTHENTICATED,))


def unauthorized_status() -> dict[str, Any]:
    """The body of a 401, as the upstream server sends it."""
    return status_object(401, "Unauthorized", "Unauthorized")


def user_info_dict(user: UserInfo) -> dict[str, Any]:
    """`UserInfo` as in SelfSubjectReview / TokenReview `status.user`."""
    d: dict[str, Any] = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        d["uid"] = user.uid
    return d


def bearer_token(headers: Mapping[str, str]) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None if there is none."""
    value = headers.get("Authorization")
    if value is None:
        value = headers.get("authorization")
    if not value:
        return None
    parts = value.strip().split(" ", 2)
    if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
        return None
    return parts[1]


def with_authenticated(user: UserInfo) -> UserInfo:
    """Add `system:authenticated`, unless the user already carries it or
    `system:unauthenticated` (upstream's AuthenticatedGroupAdder)."""
    if user.name == ANONYMOUS_USER or AUTHENTICATED in user.groups or UNAUTHENTICATED in user.groups:
        return user
    return UserInfo(user.name, user.uid, (*user.groups, AUTHENTICATED))


class TokenStore:
    """The token file, reread when it changes on disk.

    Lookups hash the presented token and index by the digest, then confirm
    with a constant-time comparison, so response time does not reveal how
    much of a guess matched.
    """

    def __init__(self, path: str, recheck_seconds: float = 1.0) -> None:
        self.path = path
        self.recheck_seconds = recheck_seconds
        self._by_digest: dict[bytes, tuple[TokenEntry, UserInfo]] = {}
        self._signature: tuple[int, ...] | None = None
        self._next_check = 0.0
        self._lock = threading.Lock()
        # A broken file at start is an operator error to report now, not a
        # silent "every token is rejected".
        self._reload(raise_errors=True)

    def lookup(self, token: str) -> UserInfo | None:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self.recheck_seconds
            self._reload(raise_errors=False)
        raw = token.encode()
        hit = self._by_digest.get(hashlib.sha256(raw).digest())
        if hit is None or not hmac.compare_digest(hit[0].token.encode(), raw):
            return None
        return hit[1]

    def _reload(self, raise_errors: bool) -> None:
        try:
            st = os.stat(self.path)
            sig: tuple[int, ...] = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except FileNotFoundError:
            sig = ()
        if sig == self._signature:
            return
        with self._lock:
            if sig == self._signature:
                return
            try:
                entries = read_tokens(self.path)
            except TokenFileError as e:
                if raise_errors:
                    raise
                # Keep the tokens we had: locking everyone out over a typo
                # would be worse. Remember the signature to log only once.
                log.error("token file not reloaded, keeping previous tokens: %s", e)
                self._signature = sig
                return
            self._by_digest = {
                hashlib.sha256(e.token.encode()).digest():
                    (e, with_authenticated(UserInfo(e.user, e.uid, e.groups)))
                for e in entries
            }
            if self._signature is not None:
                log.info("token file reloaded path=%s tokens=%d", self.path, len(entries))
            self._signature = sig


class Authenticator:
    def __init__(
        self, token_file: str | None, *, allow_anonymous: bool = False,
        recheck_seconds: float = 1.0,
    ) -> None:
        self.tokens = TokenStore(token_file, recheck_seconds) if token_file else None
        self.allow_anonymous = allow_anonymous

    def authenticate(
        self, headers: Mapping[str, str], peer_cert: dict | None,
    ) -> UserInfo | None:
        """The requesting user, or None when the request must get a 401.

        `peer_cert` is `transport.get_extra_info("peercert")`: the ssl module
        fills it only for a certificate that verified against the cluster CA.
        """
        ident = peer_identity(peer_cert)
        if ident is not None:
            cn, orgs = ident
            return with_authenticated(UserInfo(cn, "", tuple(orgs)))
        token = bearer_token(headers)
        if token is not None:
            user = self.tokens.lookup(token) if self.tokens is not None else None
            if user is None:
                log.info("authentication failed reason=invalid-bearer-token")
            return user
        if self.allow_anonymous:
            return anonymous()
        return None
