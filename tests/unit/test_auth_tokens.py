"""The static token file: upstream format, admin token, appending tokens."""

from __future__ import annotations

import os
import stat

import pytest

from timonel.api.auth import tokens
from timonel.api.auth.tokens import TokenEntry, TokenFileError


def test_parses_upstream_format_with_quoted_groups():
    text = (
        'tok1,alice,uid-1,"group1,group2"\n'
        "tok2,bob,uid-2\n"
        "\n"
        'tok3,"carol, the admin",uid-3,system:masters,ignored-extra-column\n'
    )
    entries = {e.token: e for e in tokens.parse_tokens(text)}
    assert entries["tok1"] == TokenEntry("tok1", "alice", "uid-1", ("group1", "group2"))
    assert entries["tok2"].groups == ()
    assert entries["tok3"].user == "carol, the admin"
    assert entries["tok3"].groups == ("system:masters",)


def test_round_trip_through_the_file_format():
    originals = [
        TokenEntry("a" * 43, "alice", "u1", ("g1", "g2", "system:masters")),
        TokenEntry("b" * 43, "bob", "", ()),
        TokenEntry("c" * 43, 'quote"and,comma', "u3", ("only",)),
    ]
    text = "".join(tokens.format_token(e) for e in originals)
    assert '"g1,g2,system:masters"' in text  # a multi-group column is quoted as upstream
    assert tokens.parse_tokens(text) == originals


def test_later_record_wins_and_empty_token_is_skipped():
    entries = tokens.parse_tokens("t,alice,1\n,nobody,2\nt,bob,3\n")
    assert entries == [TokenEntry("t", "bob", "3", ())]


@pytest.mark.parametrize(("text", "message"), [
    ("tok,alice\n", r"tokens\.csv:1: .*at least 3 columns"),
    ("ok,a,1\ntok,,uid\n", r"tokens\.csv:2: the user name"),
    ('tok,alice,uid,"unterminated\n', r"tokens\.csv:\d+: not valid CSV"),
])
def test_errors_name_file_line_and_fix(text, message):
    with pytest.raises(TokenFileError, match=message):
        tokens.parse_tokens(text, "tokens.csv")


def test_admin_token_created_once_and_reused(tmp_path):
    d = str(tmp_path / "data")
    first = tokens.ensure_admin_token(d)
    assert len(first) >= 40
    assert tokens.ensure_admin_token(d) == first
    [entry] = tokens.read_tokens(tokens.token_file(d))
    assert entry.user == "admin" and entry.groups == ("system:masters",) and entry.uid
    assert stat.S_IMODE(os.stat(tokens.token_file(d)).st_mode) == 0o600


def test_add_token_appends_and_keeps_existing(tmp_path):
    d = str(tmp_path)
    path = tokens.token_file(d)
    with open(path, "w") as f:
        f.write('handwritten,ops,uid-ops,"ops,viewers"')  # no final newline
    admin = tokens.ensure_admin_token(d)
    node = tokens.add_token(d, "system:node:n1", "uid-n1", ["system:nodes"])
    chosen = tokens.add_token(d, "joiner", "uid-j", [], token="abcdef.0123456789abcdef")
    assert chosen == "abcdef.0123456789abcdef"
    by_token = {e.token: e for e in tokens.read_tokens(path)}
    assert by_token["handwritten"].groups == ("ops", "viewers")
    assert by_token[admin].user == "admin"
    assert by_token[node] == TokenEntry(node, "system:node:n1", "uid-n1", ("system:nodes",))
    assert by_token[chosen].user == "joiner"
    assert len({admin, node}) == 2


def test_add_token_rejects_what_the_format_cannot_hold(tmp_path):
    with pytest.raises(ValueError, match="commas"):
        tokens.add_token(str(tmp_path), "u", "1", ["a,b"])
    with pytest.raises(ValueError, match="line break"):
        tokens.add_token(str(tmp_path), "u\nv", "1", [])
    with pytest.raises(ValueError, match="empty"):
        tokens.add_token(str(tmp_path), "u", "1", [], token="")


def test_add_token_refuses_to_extend_a_broken_file(tmp_path):
    path = tokens.token_file(str(tmp_path))
    with open(path, "w") as f:
        f.write("only-two,columns\n")
    with pytest.raises(TokenFileError, match=":1:"):
        tokens.add_token(str(tmp_path), "u", "1", [])
    with open(path) as f:
        assert f.read() == "only-two,columns\n"
