"""Talking to whichever iptables backend the node already uses.

Rules in the legacy (x_tables) and the nf_tables backend are separate worlds: a
rule added through the wrong one is silently ignored by everything else (Docker,
kube-proxy, the admin).  We pick the backend the way Kubernetes' iptables-wrapper
does, by where the existing rules are, and fall back to what plain ``iptables``
on PATH is (Debian 12: nf_tables), i.e. what Docker would use.  Whole chains are
written with one ``iptables-restore --noflush`` call, not one exec per rule.

Every function takes ``netns``: the path of a namespace to run in (``None``: the
calling thread's), see :mod:`.nsrun`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass

from .config import NetworkError
from .nsrun import run_in_netns

log = logging.getLogger(__name__)

BACKENDS = ("nft", "legacy")
_TIMEOUT = 60.0


@dataclass(frozen=True)
class Dump:
    """``iptables-save`` output: per table, its chains, rule lines (``-A ...``) and policies."""

    backend: str
    chains: dict[str, set[str]]
    rules: dict[str, list[str]]
    policies: dict[tuple[str, str], str]

    def rule_count(self) -> int:
        """Rules plus built-in chains whose policy is not ACCEPT: both mean "in use"."""
        return sum(len(r) for r in self.rules.values()) + sum(
            1 for p in self.policies.values() if p != "ACCEPT"
        )


def parse_save(backend: str, text: str) -> Dump:
    chains: dict[str, set[str]] = {}
    rules: dict[str, list[str]] = {}
    policies: dict[tuple[str, str], str] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line[1:].strip()
            chains.setdefault(table, set())
            rules.setdefault(table, [])
        elif line.startswith(":") and table:
            name, policy = [*line[1:].split(), "-"][:2]
            chains[table].add(name)
            if policy != "-":
                policies[(table, name)] = policy
        elif line.startswith("-A ") and table:
            rules[table].append(line.strip())
    return Dump(backend=backend, chains=chains, rules=rules, policies=policies)


def choose_backend(legacy_rules: int, nft_rules: int, default: str) -> str:
    """Where rules already are wins; with none anywhere, the system default."""
    if legacy_rules > nft_rules:
        return "legacy"
    if nft_rules > legacy_rules:
        return "nft"
    return default


def save(backend: str, netns: str | None = None) -> Dump:
    return run_in_netns(netns, _save, backend)


def restore(backend: str, text: str, netns: str | None = None) -> None:
    """Apply ``text`` (iptables-restore format) without flushing anything not named in it."""
    run_in_netns(netns, _restore, backend, text)


def detect(netns: str | None = None) -> tuple[str, Dump]:
    """The backend in use in the namespace, with its current rules (saves a second exec)."""
    return run_in_netns(netns, _detect)


def dumps_with_rules(netns: str | None = None) -> list[Dump]:
    """The rules of every backend that has tables in the namespace."""
    return run_in_netns(netns, _all_dumps)


def _detect() -> tuple[str, Dump]:
    nft = _save("nft") if _tool("nft", "save", required=False) else None
    legacy = _save("legacy") if _legacy_tables_exist() and _tool("legacy", "save", required=False) else None
    lc, nc = (legacy.rule_count() if legacy else 0), (nft.rule_count() if nft else 0)
    backend = choose_backend(lc, nc, default=_system_default() if lc == nc else "nft")
    dump = {"nft": nft, "legacy": legacy}[backend] or _save(backend)
    log.debug("backend=%s msg=iptables backend detected", backend)
    return backend, dump


def _all_dumps() -> list[Dump]:
    out = []
    if _tool("nft", "save", required=False):
        out.append(_save("nft"))
    if _legacy_tables_exist() and _tool("legacy", "save", required=False):
        out.append(_save("legacy"))
    return out


def _legacy_tables_exist() -> bool:
    # Asking iptables-legacy-save would itself instantiate legacy tables here, which is
    # exactly the mixing of backends we must avoid; /proc only lists existing ones.
    try:
        with open("/proc/thread-self/net/ip_tables_names") as f:
            return bool(f.read().strip())
    except FileNotFoundError:
        return False


def _save(backend: str) -> Dump:
    proc = _exec([_tool(backend, "save")], None)
    return parse_save(backend, proc)


def _restore(backend: str, text: str) -> None:
    argv = [_tool(backend, "restore"), "--noflush"]
    if backend == "legacy":
        argv += ["-w", "10"]  # the x_tables lock; nf_tables has transactions instead
    _exec(argv, text)


def _exec(argv: list[str], stdin: str | None) -> str:
    try:
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NetworkError(f"cannot run {argv[0]}: {e}") from e
    if proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip()
        where = f"\ninput was:\n{stdin}" if stdin else ""
        raise NetworkError(f"{' '.join(argv)} failed (exit {proc.returncode}): {detail}{where}")
    return proc.stdout


_VARIANT = re.compile(r"\((nf_tables|legacy)\)")


def _system_default() -> str:
    plain = shutil.which("iptables")
    if plain:
        try:
            out = subprocess.run([plain, "--version"], capture_output=True, text=True, timeout=_TIMEOUT).stdout
        except (OSError, subprocess.TimeoutExpired):
            out = ""
        m = _VARIANT.search(out)
        if m:
            return "nft" if m.group(1) == "nf_tables" else "legacy"
    return "nft" if _tool("nft", "save", required=False) else "legacy"


def _tool(backend: str, action: str, required: bool = True) -> str:
    """``iptables-nft-save`` and friends; a plain ``iptables-save`` only if it is that backend."""
    path = shutil.which(f"iptables-{backend}-{action}")
    if path:
        return path
    # Before iptables 1.8 there were no -nft/-legacy names and everything was legacy.
    plain = shutil.which(f"iptables-{action}")
    if plain and ("nft" in os.path.basename(os.path.realpath(plain))) == (backend == "nft"):
        return plain
    if required:
        raise NetworkError(
            f"iptables-{backend}-{action} not found: install the iptables package "
            f"(Debian: apt-get install iptables), or choose the other backend in the node's network settings"
        )
    return ""
