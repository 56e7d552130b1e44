"""Per-node results reused across pods that look alike to node-local plugins.

Most plugins read only the pod and the one node in front of them (requests,
taints, node affinity, ports...). Pods of one workload are identical in all
of that, and between two of their cycles only the node that took the last
pod has changed. So filter verdicts and raw scores of node-local plugins
are kept per (profile, pod signature) and per node, tagged with the
node's generation, and recomputed only for nodes that changed. Upstream
keeps a comparable pod signature for its batching; plugins that look at
other pods (InterPodAffinity, PodTopologySpread) or cluster-wide facts
(ImageLocality) are never cached.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

from timonel.scheduler.framework import Status
from timonel.scheduler.podinfo import PodInfo

MAX_SIGNATURES = 32
EXTRA = "sigcache"

# node name -> (node generation, filter verdict, raw local scores or None)
Entries = dict[str, list[Any]]


def pod_signature(pi: PodInfo) -> str:
    """What node-local plugins read from a pod, as one string."""
    sig = pi.signature
    if sig is None:
        spec = pi.pod.get("spec") or {}
        r = pi.requests
        sig = json.dumps([
            r.milli_cpu, r.memory, r.ephemeral, sorted(r.scalar.items()), pi.non_zero_cpu,
            pi.non_zero_mem, pi.ports, pi.tolerations, pi.node_name,
            spec.get("nodeSelector"), (spec.get("affinity") or {}).get("nodeAffinity"),
        ], sort_keys=True, separators=(",", ":"), default=str)
        pi.signature = sig
    return sig


class SignatureCache:
    def __init__(self) -> None:
        self._by_sig: OrderedDict[tuple[int, str], Entries] = OrderedDict()

    def entries(self, profile_id: int, pod: PodInfo) -> Entries:
        key = (profile_id, pod_signature(pod))
        e = self._by_sig.get(key)
        if e is None:
            e = self._by_sig[key] = {}
            if len(self._by_sig) > MAX_SIGNATURES:
                self._by_sig.popitem(last=False)
        else:
            self._by_sig.move_to_end(key)
        return e

    def clear(self) -> None:
        self._by_sig.clear()


def verdict(entry: list[Any]) -> Status | None:
    return entry[1]  # type: ignore[no-any-return]
