"""The static token file: `tokens.csv` in the data directory.

Same format as the upstream `--token-auth-file`, so a file written for a real
API server works here and the other way round: one CSV record per token,
`token,user,uid[,"group1,group2"]`; further columns are ignored.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from timonel.api.fileutil import locked, write_atomic

log = logging.getLogger(__name__)

TOKEN_FILE = "tokens.csv"
ADMIN_USER = "admin"
ADMIN_GROUP = "system:masters"


class TokenFileError(ValueError):
    """The token file cannot be parsed; the message names file and line."""


@dataclass(frozen=True)
class TokenEntry:
    token: str
    user: str
    uid: str
    groups: tuple[str, ...]


def token_file(data_dir: str) -> str:
    return os.path.join(data_dir, TOKEN_FILE)


def parse_tokens(text: str, path: str = TOKEN_FILE) -> list[TokenEntry]:
    """Parse token file content; later records win for a repeated token, as upstream."""
    entries: dict[str, TokenEntry] = {}
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")), strict=True)
    try:
        for record in reader:
            if not record or record == [""]:
                continue
            line = reader.line_num
            if len(record) < 3:
                raise TokenFileError(
                    f"{path}:{line}: a token record needs at least 3 columns "
                    f"(token,user,uid[,\"group1,group2\"]), found {len(record)}"
                )
            token, user, uid = record[0], record[1], record[2]
            if not token:
                log.warning("empty token skipped path=%s line=%d", path, line)
                continue
            if not user:
                raise TokenFileError(f"{path}:{line}: the user name (column 2) is empty")
            groups: tuple[str, ...] = ()
            if len(record) >= 4:
                groups = tuple(g.strip() for g in record[3].split(",") if g.strip())
            if token in entries:
                log.warning("duplicate token path=%s line=%d: the later record wins", path, line)
            entries[token] = TokenEntry(token, user, uid, groups)
    except csv.Error as e:
        raise TokenFileError(
            f"{path}:{reader.line_num}: not valid CSV ({e}); quote a field that holds "
            "commas, e.g. token,user,uid,\"group1,group2\""
        ) from None
    return list(entries.values())


def read_tokens(path: str) -> list[TokenEntry]:
    """Entries of the token file at `path`; a missing file has none."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
    except FileNotFoundError:
        return []
    except UnicodeDecodeError as e:
        raise TokenFileError(f"{path}: not UTF-8 text ({e})") from None
    return parse_tokens(text, path)


def format_token(entry: TokenEntry) -> str:
    """One CSV record; a group list with commas is quoted, as upstream expects."""
    buf = io.StringIO()
    row = [entry.token, entry.user, entry.uid]
    if entry.groups:
        row.append(",".join(entry.groups))
    csv.writer(buf, lineterminator="\n").writerow(row)
    return buf.getvalue()


def add_token(
    data_dir: str, user: str, uid: str, groups: list[str], token: str | None = None,
) -> str:
    """Append a token for `user` to the token file and return it.

    A fresh random token is made unless one is given (e.g. a node join token
    chosen by the operator).
    """
    _check_field("user", user)
    _check_field("uid", uid)
    for g in groups:
        _check_field("group", g)
        if "," in g or g != g.strip() or not g:
            raise ValueError(f"group {g!r}: group names cannot be empty, contain commas "
                             "or start/end with spaces in the token file format")
    if token is None:
        token = new_token()
    else:
        _check_field("token", token)
        if not token or token != token.strip():
            raise ValueError("a token cannot be empty or start/end with spaces")
    with _locked(data_dir):
        _append(data_dir, TokenEntry(token, user, uid, tuple(groups)))
    return token


def ensure_admin_token(data_dir: str) -> str:
    """The token of user `admin` in `system:masters`, created on first start."""
    with _locked(data_dir):
        for e in reversed(read_tokens(token_file(data_dir))):
            if e.user == ADMIN_USER and ADMIN_GROUP in e.groups:
                return e.token
        entry = TokenEntry(new_token(), ADMIN_USER, str(uuid.uuid4()), (ADMIN_GROUP,))
        _append(data_dir, entry)
        return entry.token


def new_token() -> str:
    # 256 bits, URL-safe alphabet: nothing that needs quoting in CSV or headers.
    return secrets.token_urlsafe(32)


def _append(data_dir: str, entry: TokenEntry) -> None:
    """Append under the caller's lock."""
    path = token_file(data_dir)
    existing = _read_text(path)
    parse_tokens(existing, path)  # refuse to append to a file we could not read back
    if existing and not existing.endswith("\n"):
        existing += "\n"
    _write_private(path, existing + format_token(entry))
    log.info("token added user=%s uid=%s groups=%s path=%s",
             entry.user, entry.uid, ",".join(entry.groups), path)


def _check_field(what: str, value: str) -> None:
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"{what} {value!r} contains a line break or NUL, which the "
                         "token file cannot hold")


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def _write_private(path: str, text: str) -> None:
    write_atomic(path, text.encode("utf-8"), 0o600)


@contextlib.contextmanager
def _locked(data_dir: str) -> Iterator[None]:
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    with locked(os.path.join(data_dir, ".tokens.lock")):
        yield
