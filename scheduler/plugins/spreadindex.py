"""Pods matching a spread selector, counted per topology domain and kept
current as pods come and go, so PodTopologySpread does not recount every
pod in the cluster on every cycle (O(1) per node instead of O(pods)).

An entry is (namespace, selector, topologyKey, keys a node must carry to
count); it is built on first use from the snapshot and updated by the
snapshot's pod watcher. Changes to the node set or node labels rebuild
entries lazily. `hist` counts domains per match count, so the minimum over
domains (the skew baseline) is found without scanning thousands of
hostname domains.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from timonel.api.selectors import LabelSelector, matches
from timonel.scheduler.nodeinfo import NodeInfo, Snapshot
from timonel.scheduler.podinfo import PodInfo

EXTRA = "PodTopologySpread/index"
MAX_ENTRIES = 64

EntryKey = tuple[str, LabelSelector, str, tuple[str, ...]]


@dataclass(slots=True)
class Entry:
    namespace: str
    selector: LabelSelector
    key: str
    required: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)
    domains: dict[str, int] = field(default_factory=dict)  # value -> eligible nodes
    hist: dict[int, int] = field(default_factory=dict)  # match count -> domains

    def minimum(self) -> int:
        return min(self.hist) if self.hist else 0

    def counts_pod(self, pod: PodInfo) -> bool:
        return (pod.namespace == self.namespace and not pod.terminating
                and matches(self.selector, pod.labels))

    def eligible(self, node: NodeInfo) -> bool:
        labels = node.labels
        return all(k in labels for k in self.required)

    def bump(self, value: str, by: int) -> None:
        c = self.counts.get(value, 0)
        h = self.hist
        left = h.get(c, 0) - 1
        if left > 0:
            h[c] = left
        else:
            h.pop(c, None)
        c += by
        self.counts[value] = c
        h[c] = h.get(c, 0) + 1


def count_matching(pods: Mapping[Any, PodInfo], namespace: str, selector: LabelSelector) -> int:
    """upstream countPodsMatchSelector: same namespace, not terminating, selected."""
    n = 0
    for p in pods.values():
        if p.namespace == namespace and not p.terminating and matches(selector, p.labels):
            n += 1
    return n


class SpreadIndex:
    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.entries: OrderedDict[EntryKey, Entry] = OrderedDict()
        self.generation = snap.node_generation
        snap.pod_watchers.append(self.on_pod)

    def on_pod(self, pod: PodInfo, node: NodeInfo, sign: int) -> None:
        if pod.terminating:
            return
        if self.generation != self.snap.node_generation:
            self.entries.clear()  # rebuilt on next use
            self.generation = self.snap.node_generation
            return
        for e in self.entries.values():
            if e.namespace == pod.namespace and e.eligible(node) and matches(e.selector, pod.labels):
                e.bump(node.labels[e.key], sign)

    def entry(self, namespace: str, selector: LabelSelector, key: str,
              required: tuple[str, ...]) -> Entry:
        if self.generation != self.snap.node_generation:
            self.entries.clear()
            self.generation = self.snap.node_generation
        k = (namespace, selector, key, required)
        e = self.entries.get(k)
        if e is not None:
            self.entries.move_to_end(k)
            return e
        e = Entry(namespace, selector, key, required)
        for node in self.snap.nodes:
            if not e.eligible(node):
                continue
            v = node.labels[key]
            e.domains[v] = e.domains.get(v, 0) + 1
            n = count_matching(node.pods, namespace, selector)
            if n:
                e.counts[v] = e.counts.get(v, 0) + n
        for v in e.domains:
            c = e.counts.get(v, 0)
            e.hist[c] = e.hist.get(c, 0) + 1
        self.entries[k] = e
        if len(self.entries) > MAX_ENTRIES:
            self.entries.popitem(last=False)
        return e


def index_of(snap: Snapshot) -> SpreadIndex:
    idx = snap.extras.get(EXTRA)
    if idx is None:
        idx = snap.extras[EXTRA] = SpreadIndex(snap)
    return idx  # type: ignore[no-any-return]
