"""Request authentication: bearer tokens, client certificates, anonymous access."""

from __future__ import annotations

import os
import time

import pytest
from multidict import CIMultiDict

from timonel.api.auth import tokens
from timonel.api.auth.authn import (
    Authenticator,
    TokenStore,
    UserInfo,
    anonymous,
    bearer_token,
    unauthorized_status,
    user_info_dict,
)
from timonel.api.auth.tokens import TokenFileError


def _peer(cn: str, *orgs: str) -> dict:
    # The shape ssl.SSLSocket.getpeercert() returns for a verified certificate.
    subject = (*((("organizationName", o),) for o in orgs), (("commonName", cn),))
    return {"subject": subject, "issuer": ((("commonName", "timonel-ca"),),)}


@pytest.fixture
def data_dir(tmp_path):
    return str(tmp_path)


def test_admin_bearer_token_authenticates(data_dir):
    token = tokens.ensure_admin_token(data_dir)
    auth = Authenticator(tokens.token_file(data_dir))
    user = auth.authenticate({"Authorization": f"Bearer {token}"}, None)
    assert user is not None
    assert user.name == "admin"
    assert user.groups == ("system:masters", "system:authenticated")
    assert user.uid


def test_header_lookup_is_case_insensitive_as_in_http(data_dir):
    token = tokens.ensure_admin_token(data_dir)
    auth = Authenticator(tokens.token_file(data_dir))
    assert auth.authenticate(CIMultiDict({"AUTHORIZATION": f"bearer {token}"}), None) is not None
    assert auth.authenticate({"authorization": f"Bearer {token}"}, None) is not None


def test_wrong_or_malformed_token_is_rejected(data_dir):
    token = tokens.ensure_admin_token(data_dir)
    auth = Authenticator(tokens.token_file(data_dir))
    # The token is random: its first character may itself be "x".
    other_first = "y" if token[0] == "x" else "x"
    for header in (f"Bearer {token[:-1]}", f"Bearer {token}x", f"Bearer {other_first}{token[1:]}",
                   f"Bearer  {token}", "Bearer wrong"):
        assert auth.authenticate({"Authorization": header}, None) is None, header
    assert auth.authenticate({}, None) is None


def test_wrong_token_fails_even_with_anonymous_enabled(data_dir):
    tokens.ensure_admin_token(data_dir)
    auth = Authenticator(tokens.token_file(data_dir), allow_anonymous=True)
    # Offered and wrong: 401, as upstream's union does (no silent downgrade).
    assert auth.authenticate({"Authorization": "Bearer nope"}, None) is None
    # Offered nothing: anonymous.
    assert auth.authenticate({}, None) == anonymous()
    # A non-bearer scheme counts as no credentials, as upstream.
    assert auth.authenticate({"Authorization": "Basic YTpi"}, None) == anonymous()


def test_anonymous_identity():
    a = anonymous()
    assert a == UserInfo("system:anonymous", "", ("system:unauthenticated",))
    assert "system:authenticated" not in a.groups


def test_client_certificate_wins_over_token(data_dir):
    token = tokens.ensure_admin_token(data_dir)
    auth = Authenticator(tokens.token_file(data_dir))
    user = auth.authenticate({"Authorization": f"Bearer {token}"},
                             _peer("system:node:n1", "system:nodes"))
    assert user == UserInfo("system:node:n1", "", ("system:nodes", "system:authenticated"))


def test_certificate_without_cn_falls_back_to_token(data_dir):
    token = tokens.ensure_admin_token(data_dir)
    auth = Authenticator(tokens.token_file(data_dir))
    peer = {"subject": ((("organizationName", "x"),),)}
    user = auth.authenticate({"Authorization": f"Bearer {token}"}, peer)
    assert user is not None and user.name == "admin"
    # An empty dict is what ssl gives when no certificate was verified.
    assert auth.authenticate({}, {}) is None


def test_token_file_change_is_picked_up(data_dir):
    path = tokens.token_file(data_dir)
    admin = tokens.ensure_admin_token(data_dir)
    auth = Authenticator(path, recheck_seconds=0)
    new = tokens.add_token(data_dir, "alice", "uid-a", ["devs"])
    user = auth.authenticate({"Authorization": f"Bearer {new}"}, None)
    assert user == UserInfo("alice", "uid-a", ("devs", "system:authenticated"))

    # Revocation: rewrite the file without the admin token, in place.
    kept = [e for e in tokens.read_tokens(path) if e.token != admin]
    with open(path, "w") as f:
        f.write("".join(tokens.format_token(e) for e in kept))
    assert auth.authenticate({"Authorization": f"Bearer {admin}"}, None) is None
    assert auth.authenticate({"Authorization": f"Bearer {new}"}, None) is not None


def test_default_recheck_interval_picks_up_changes_within_seconds(data_dir):
    path = tokens.token_file(data_dir)
    tokens.ensure_admin_token(data_dir)
    store = TokenStore(path)  # default: looks at the file at most once a second
    new = tokens.add_token(data_dir, "bob", "uid-b", [])
    deadline = time.monotonic() + 30
    while store.lookup(new) is None:
        assert time.monotonic() < deadline, "token file change not picked up"
        time.sleep(0.05)


def test_broken_file_at_start_is_an_error_later_keeps_previous(data_dir):
    path = tokens.token_file(data_dir)
    with open(path, "w") as f:
        f.write("a,b\n")
    with pytest.raises(TokenFileError):
        Authenticator(path)

    os.unlink(path)
    token = tokens.ensure_admin_token(data_dir)
    store = TokenStore(path, recheck_seconds=0)
    with open(path, "a") as f:
        f.write("broken-line\n")
    # A typo while editing must not lock everyone out.
    assert store.lookup(token) is not None


def test_missing_token_file_means_no_tokens(data_dir):
    auth = Authenticator(os.path.join(data_dir, "absent.csv"), recheck_seconds=0)
    assert auth.authenticate({"Authorization": "Bearer x"}, None) is None
    tokens.add_token(data_dir, "later", "1", [], token="created-later")
    auth2 = Authenticator(tokens.token_file(data_dir), recheck_seconds=0)
    assert auth2.authenticate({"Authorization": "Bearer created-later"}, None) is not None


def test_no_token_file_configured_still_accepts_certificates():
    auth = Authenticator(None)
    assert auth.authenticate({"Authorization": "Bearer x"}, None) is None
    user = auth.authenticate({}, _peer("bob"))
    assert user == UserInfo("bob", "", ("system:authenticated",))


def test_token_user_in_authenticated_group_is_not_duplicated(data_dir):
    t = tokens.add_token(data_dir, "u", "1", ["system:authenticated", "g"])
    user = Authenticator(tokens.token_file(data_dir)).authenticate(
        {"Authorization": f"Bearer {t}"}, None)
    assert user is not None and user.groups == ("system:authenticated", "g")


def test_bearer_token_parsing():
    assert bearer_token({"Authorization": "Bearer abc"}) == "abc"
    assert bearer_token({"Authorization": "  Bearer abc  "}) == "abc"
    assert bearer_token({"Authorization": "BEARER abc extra"}) == "abc"
    assert bearer_token({"Authorization": "Bearer"}) is None
    assert bearer_token({"Authorization": "Bearer "}) is None
    assert bearer_token({"Authorization": "Basic abc"}) is None
    assert bearer_token({}) is None


def test_unauthorized_status_matches_upstream():
    assert unauthorized_status() == {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "Unauthorized", "reason": "Unauthorized", "code": 401,
    }


def test_user_info_dict():
    d = user_info_dict(UserInfo("alice", "u1", ("devs", "system:authenticated")))
    assert d == {"username": "alice", "uid": "u1", "groups": ["devs", "system:authenticated"]}
    assert "uid" not in user_info_dict(anonymous())
