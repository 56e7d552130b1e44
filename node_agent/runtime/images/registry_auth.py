"""Registry authentication: credentials, `WWW-Authenticate` challenges, tokens.

The distribution token flow: a request answered 401 with
`WWW-Authenticate: Bearer realm="…",service="…",scope="…"` is retried with
a token fetched from the realm (a GET with basic credentials, or a POST of
an OAuth2 refresh token when the client holds an identity token).
"""

from __future__ import annotations

import base64
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import RegistryError

if TYPE_CHECKING:
    import aiohttp  # imported by the first pull, not by every runtime daemon (see registry.py)

log = logging.getLogger(__name__)

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@dataclass(frozen=True)
class Credentials:
    """What CRI's AuthConfig carries; any subset may be set."""

    username: str = ""
    password: str = ""
    identity_token: str = ""  # OAuth2 refresh token
    registry_token: str = ""  # a bearer token to use as-is

    @classmethod
    def from_auth(cls, auth: str) -> Credentials:
        """From a docker config `auth` field: base64 of `user:password`."""
        try:
            user, sep, pw = base64.b64decode(auth, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            sep = ""
        if not sep:
            raise RegistryError("registry auth is not base64 of 'user:password'; check the credentials")
        return cls(user, pw)

    def basic(self) -> str | None:
        if not self.username and not self.password:
            return None
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class Challenge:
    scheme: str
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a `WWW-Authenticate` value (RFC 7235) into scheme + params."""
    out: list[Challenge] = []
    rest = header.strip()
    while rest:
        m = re.match(r"([A-Za-z][A-Za-z0-9_-]*)\s*", rest)
        if not m:
            break
        scheme = m.group(1).lower()
        rest = rest[m.end():]
        params: dict[str, str] = {}
        while True:
            pm = _PARAM.match(rest)
            if not pm:
                break
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
            rest = rest[pm.end():]
        out.append(Challenge(scheme, params))
        rest = rest.lstrip(", ")
    return out


@dataclass
class _Token:
    value: str
    expires: float


class TokenCache:
    """Bearer tokens by (realm, service, scope); refreshed shortly before expiry."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], _Token] = {}

    def get(self, key: tuple[str, str, str]) -> str | None:
        tok = self._tokens.get(key)
        if tok is None or tok.expires <= time.monotonic():
            return None
        return tok.value

    def clear(self) -> None:
        self._tokens.clear()

    def put(self, key: tuple[str, str, str], value: str, expires_in: float) -> None:
        # Upstream default lifetime is 60 s; keep a margin for slow requests.
        self._tokens[key] = _Token(value, time.monotonic() + max(expires_in - 10, 5))


async def fetch_token(session: aiohttp.ClientSession, challenge: Challenge, scope: str,
                      creds: Credentials | None, cache: TokenCache) -> str:
    import aiohttp

    realm = challenge.params.get("realm")
    if not realm:
        raise RegistryError("registry asked for a bearer token but named no realm in WWW-Authenticate")
    service = challenge.params.get("service", "")
    key = (realm, service, scope)
    cached = cache.get(key)
    if cached:
        return cached
    if creds and creds.registry_token:
        return creds.registry_token
    # One `scope` parameter per scope, as the token spec and Docker do.
    params: list[tuple[str, str]] = [("scope", s) for s in scope.split()]
    if service:
        params.append(("service", service))
    try:
        if creds and creds.identity_token:
            form = [("grant_type", "refresh_token"), ("refresh_token", creds.identity_token),
                    ("client_id", "timonel"), *params]
            resp_cm = session.post(realm, data=form)
        else:
            headers = {}
            basic = creds.basic() if creds else None
            if basic and creds:
                headers["Authorization"] = basic
                params.append(("account", creds.username))
            resp_cm = session.get(realm, params=params, headers=headers)
        async with resp_cm as resp:
            body: Any = await resp.json(content_type=None) if resp.status == 200 else await resp.text()
            if resp.status != 200:
                raise RegistryError(
                    f"token server {realm} refused a token for scope {scope!r} (HTTP {resp.status}): "
                    f"{str(body)[:200]}; check the registry credentials", resp.status)
    except aiohttp.ClientError as e:
        raise RegistryError(f"cannot reach token server {realm}: {e}") from None
    except ValueError:
        raise RegistryError(f"token server {realm} answered with invalid JSON") from None
    token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
    if not token:
        raise RegistryError(f"token server {realm} answered without a token")
    cache.put(key, str(token), float(body.get("expires_in") or 60))
    log.debug("token realm=%s service=%s scope=%s fetched", realm, service, scope)
    return str(token)
