"""Docker-style user strings resolved against the image's own /etc/passwd and /etc/group.

Runs inside the container (after pivot_root, or after joining its mount
namespace for exec), so the image's files are the ones read, as with runc.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


class UserError(ValueError):
    pass


@dataclass
class Resolved:
    uid: int
    gid: int
    groups: list[int]
    home: str


def _entries(path: str) -> list[list[str]]:
    try:
        with open(path) as f:
            return [ln.rstrip("\n").split(":") for ln in f if ln.strip() and not ln.startswith("#")]
    except FileNotFoundError:
        return []


def resolve(user: str, extra_gids: list[int], root: str = "/") -> Resolved:
    """`name`, `uid`, `name:group`, `uid:gid` (any mix) to ids, supplementary groups and home."""
    name, _, group = user.partition(":")
    passwd = [e for e in _entries(os.path.join(root, "etc/passwd")) if len(e) >= 7]
    groups = [e for e in _entries(os.path.join(root, "etc/group")) if len(e) >= 4]
    entry = next((e for e in passwd if (e[2] if name.isdigit() else e[0]) == name), None)
    if entry is None and not name.isdigit():
        raise UserError(f"user {name!r} not found in the image's /etc/passwd; use a numeric uid or add the user")
    uid = int(name) if name.isdigit() else int(entry[2])  # type: ignore[index]
    gid = int(entry[3]) if entry else 0
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = next((e for e in groups if e[0] == group), None)
            if g is None:
                raise UserError(f"group {group!r} not found in the image's /etc/group")
            gid = int(g[2])
    supplementary = []
    if entry is not None:  # like initgroups(3): every group that lists the user
        supplementary = [int(e[2]) for e in groups if entry[0] in e[3].split(",") and int(e[2]) != gid]
    extra = [g for g in extra_gids if g not in supplementary]
    return Resolved(uid, gid, supplementary + extra, entry[5] if entry and entry[5] else "/")
