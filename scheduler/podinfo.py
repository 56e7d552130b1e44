"""A pod as the scheduler sees it: the object plus everything plugins read
from it, worked out once (requests, ports, affinity terms, tolerations),
because the same pod is looked at against hundreds of nodes per cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from timonel.api.errors import ApiError
from timonel.api.selectors import LabelSelector, from_label_selector_dict, matches
from timonel.scheduler.resources import Resources, pod_requests

Key = tuple[str, str]  # (namespace, name)


@dataclass(slots=True)
class AffinityTerm:
    """A PodAffinityTerm resolved: the namespaces it names, its namespace
    selector (None when it has none) and its pod label selector."""

    namespaces: frozenset[str]
    selector: LabelSelector
    topology_key: str
    namespace_selector: LabelSelector | None = None
    weight: int = 0

    def matches(self, pod: PodInfo, ns_labels: dict[str, dict[str, str]]) -> bool:
        if pod.namespace not in self.namespaces:
            sel = self.namespace_selector
            if sel is None or not matches(sel, ns_labels.get(pod.namespace)):
                return False
        return matches(self.selector, pod.labels)


def label_selector(sel: Any) -> LabelSelector:
    """A metav1.LabelSelector as a selector; an invalid one matches nothing."""
    try:
        return from_label_selector_dict(sel)
    except ApiError:
        # Validation keeps bad selectors out; a stored one matches nothing.
        return from_label_selector_dict(None)


def affinity_terms(namespace: str, terms: Any, weighted: bool = False) -> list[AffinityTerm]:
    out: list[AffinityTerm] = []
    for t in terms or []:
        if not isinstance(t, dict):
            continue
        weight = 0
        if weighted:
            weight = int(t.get("weight") or 0)
            t = t.get("podAffinityTerm") or {}
        names = t.get("namespaces") or []
        ns_sel = t.get("namespaceSelector")
        if not names and ns_sel is None:
            namespaces = frozenset([namespace])
        else:
            namespaces = frozenset(n for n in names if isinstance(n, str))
        selector = label_selector(t.get("labelSelector"))
        nss = None if ns_sel is None else label_selector(ns_sel)
        if nss is not None and nss.nothing:
            nss = None
        out.append(AffinityTerm(namespaces, selector, str(t.get("topologyKey") or ""), nss,
                                weight))
    return out


@dataclass(slots=True)
class PodInfo:
    pod: dict[str, Any]
    key: Key
    uid: str
    namespace: str
    name: str
    labels: dict[str, str]
    node_name: str
    priority: int
    requests: Resources
    non_zero_cpu: int
    non_zero_mem: int
    # (protocol, hostIP, hostPort) of every container port with a hostPort.
    ports: list[tuple[str, str, int]]
    tolerations: list[dict[str, Any]]
    required_affinity: list[AffinityTerm]
    required_anti_affinity: list[AffinityTerm]
    preferred_affinity: list[AffinityTerm]
    preferred_anti_affinity: list[AffinityTerm]
    terminating: bool
    images: list[str]
    # Set by the queue: plugins that rejected the pod in its last attempt.
    unschedulable_plugins: set[str] = field(default_factory=set)
    # sigcache.pod_signature, worked out on first use.
    signature: str | None = None

    @property
    def has_affinity(self) -> bool:
        return bool(self.required_affinity or self.required_anti_affinity
                    or self.preferred_affinity or self.preferred_anti_affinity)


def pod_key(pod: dict[str, Any]) -> Key:
    md = pod.get("metadata") or {}
    return str(md.get("namespace") or ""), str(md.get("name") or "")


def new_pod_info(pod: dict[str, Any], priority: int | None = None) -> PodInfo:
    md = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    ns = str(md.get("namespace") or "")
    reqs, nz_cpu, nz_mem = pod_requests(spec)
    ports: list[tuple[str, str, int]] = []
    images: list[str] = []
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            if not isinstance(c, dict):
                continue
            if isinstance(c.get("image"), str):
                images.append(c["image"])
            if group == "initContainers" and c.get("restartPolicy") != "Always":
                continue
            for p in c.get("ports") or []:
                if isinstance(p, dict) and isinstance(p.get("hostPort"), int) and p["hostPort"] > 0:
                    ports.append((str(p.get("protocol") or "TCP"), str(p.get("hostIP") or "0.0.0.0"),
                                  p["hostPort"]))
    aff = spec.get("affinity") or {}
    pa = aff.get("podAffinity") or {}
    paa = aff.get("podAntiAffinity") or {}
    if priority is None:
        p = spec.get("priority")
        priority = p if isinstance(p, int) and not isinstance(p, bool) else 0
    tolerations = [t for t in spec.get("tolerations") or [] if isinstance(t, dict)]
    return PodInfo(
        pod=pod, key=(ns, str(md.get("name") or "")), uid=str(md.get("uid") or ""), namespace=ns,
        name=str(md.get("name") or ""), labels=md.get("labels") or {},
        node_name=str(spec.get("nodeName") or ""), priority=priority, requests=reqs,
        non_zero_cpu=nz_cpu, non_zero_mem=nz_mem, ports=ports, tolerations=tolerations,
        required_affinity=affinity_terms(ns, pa.get("requiredDuringSchedulingIgnoredDuringExecution")),
        required_anti_affinity=affinity_terms(
            ns, paa.get("requiredDuringSchedulingIgnoredDuringExecution")),
        preferred_affinity=affinity_terms(
            ns, pa.get("preferredDuringSchedulingIgnoredDuringExecution"), weighted=True),
        preferred_anti_affinity=affinity_terms(
            ns, paa.get("preferredDuringSchedulingIgnoredDuringExecution"), weighted=True),
        terminating=bool(md.get("deletionTimestamp")), images=images)

