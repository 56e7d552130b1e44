"""The node's pod-network firewall rules, in chains of their own.

``TIMONEL-FORWARD`` accepts traffic from and to the bridge: a host whose FORWARD
policy is DROP (Docker sets that, with bridge-nf-call-iptables=1 so even bridged
pod-to-pod traffic is filtered) would otherwise drop pod traffic.
``TIMONEL-POSTROUTING`` masquerades what pods send outside the cluster's pod
networks.  Each chain is rewritten whole in one iptables-restore call and entered
by one jump from the built-in chain, added only when missing.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
from collections.abc import Iterator

from . import iptables
from .config import NetworkConfig
from .iptables import Dump

log = logging.getLogger(__name__)

FORWARD_CHAIN = "TIMONEL-FORWARD"
POSTROUTING_CHAIN = "TIMONEL-POSTROUTING"
# table -> (built-in chain, our chain)
_JUMPS = {"filter": ("FORWARD", FORWARD_CHAIN), "nat": ("POSTROUTING", POSTROUTING_CHAIN)}


def firewall_rules(config: NetworkConfig, dump: Dump) -> str:
    """iptables-restore input that rewrites our chains and adds the jumps ``dump`` lacks."""
    br, pods = config.bridge, str(config.network)
    out = [
        "*filter",
        f":{FORWARD_CHAIN} - [0:0]",
        f'-A {FORWARD_CHAIN} -i {br} -m comment --comment "timonel: from pods" -j ACCEPT',
        f'-A {FORWARD_CHAIN} -o {br} -m comment --comment "timonel: to pods" -j ACCEPT',
    ]
    out += _missing_jump(dump, "filter")
    out += ["COMMIT", "*nat", f":{POSTROUTING_CHAIN} - [0:0]"]
    for cidr in (*config.no_masquerade_cidrs, "224.0.0.0/4"):
        out.append(f"-A {POSTROUTING_CHAIN} -s {pods} -d {cidr} -j RETURN")
    out.append(
        f'-A {POSTROUTING_CHAIN} -s {pods} -m comment --comment "timonel: pods leaving the cluster network" -j MASQUERADE'
    )
    out += _missing_jump(dump, "nat")
    out.append("COMMIT")
    return "\n".join(out) + "\n"


def removal_rules(dump: Dump) -> str:
    """iptables-restore input deleting our jumps and chains from ``dump``; '' if none are there."""
    out: list[str] = []
    for table, (builtin, ours) in _JUMPS.items():
        jumps = [r for r in dump.rules.get(table, []) if _is_jump(r, builtin, ours)]
        has_chain = ours in dump.chains.get(table, set())
        if not jumps and not has_chain:
            continue
        out.append(f"*{table}")
        out += ["-D" + r[2:] for r in jumps]
        # Other chains may jump to ours too (a later Service proxy): drop those references.
        out += [
            "-D" + r[2:]
            for r in dump.rules.get(table, [])
            if re.search(rf"-j {re.escape(ours)}(\s|$)", r) and not _is_jump(r, builtin, ours)
        ]
        if has_chain:
            out += [f"-F {ours}", f"-X {ours}"]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def ensure_firewall(config: NetworkConfig) -> str:
    """Install or refresh the rules; returns the iptables backend used ("nft"/"legacy")."""
    with _lock(config):
        if config.iptables == "auto":
            backend, dump = iptables.detect(config.node_netns)
        else:
            backend, dump = config.iptables, iptables.save(config.iptables, config.node_netns)
        iptables.restore(backend, firewall_rules(config, dump), config.node_netns)
    log.info("backend=%s bridge=%s pod_cidr=%s msg=pod firewall rules in place", backend, config.bridge, config.pod_cidr)
    return backend


def remove_firewall(config: NetworkConfig) -> bool:
    """Remove our chains and jumps from every backend that has them; False if none had."""
    removed = False
    with _lock(config):
        for dump in iptables.dumps_with_rules(config.node_netns):
            text = removal_rules(dump)
            if text:
                iptables.restore(dump.backend, text, config.node_netns)
                removed = True
    return removed


def _missing_jump(dump: Dump, table: str) -> list[str]:
    builtin, ours = _JUMPS[table]
    if any(_is_jump(r, builtin, ours) for r in dump.rules.get(table, [])):
        return []
    return [f'-I {builtin} 1 -m comment --comment "timonel: pod network" -j {ours}']


def _is_jump(rule: str, builtin: str, ours: str) -> bool:
    return rule.startswith(f"-A {builtin} ") and bool(re.search(rf"-j {re.escape(ours)}(\s|$)", rule))


@contextlib.contextmanager
def _lock(config: NetworkConfig) -> Iterator[None]:
    # Two agents (or an agent and a cleanup) must not both see "jump missing" and add two.
    os.makedirs(config.state_dir, mode=0o700, exist_ok=True)
    fd = os.open(os.path.join(config.state_dir, "firewall.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
