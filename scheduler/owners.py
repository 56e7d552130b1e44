"""The selector PodTopologySpread's system default constraints spread by:
the Services selecting a pod and the ReplicaSet or StatefulSet controlling
it (upstream's helper.DefaultSelector), read from informers."""

from __future__ import annotations

from typing import Any

from timonel.api.client import Informer
from timonel.api.selectors import LabelSelector, Requirement, matches, selector_from_set
from timonel.scheduler.podinfo import PodInfo, label_selector


def _controller(pod: dict[str, Any]) -> dict[str, Any] | None:
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return ref
    return None


class OwnerSelectors:
    def __init__(self, services: Informer, replicasets: Informer, statefulsets: Informer) -> None:
        self.services = services
        self.replicasets = replicasets
        self.statefulsets = statefulsets

    def __call__(self, pod: PodInfo) -> LabelSelector | None:
        labels: dict[str, str] = {}
        for svc in self.services.by_index("namespace", pod.namespace):
            sel = (svc.get("spec") or {}).get("selector")
            if isinstance(sel, dict) and sel and matches(selector_from_set(sel), pod.labels):
                labels.update(sel)
        reqs: list[Requirement] = list(selector_from_set(labels).requirements)
        ref = _controller(pod.pod)
        if ref is not None and str(ref.get("apiVersion", "")).startswith("apps/"):
            inf = {"ReplicaSet": self.replicasets, "StatefulSet": self.statefulsets}.get(
                str(ref.get("kind")))
            owner = inf.get(pod.namespace, str(ref.get("name") or "")) if inf else None
            if owner is not None:
                sel = label_selector((owner.get("spec") or {}).get("selector"))
                if not sel.nothing:
                    reqs.extend(sel.requirements)
        if not reqs:
            return None
        return LabelSelector(tuple(sorted(set(reqs), key=lambda r: (r.key, r.operator, r.values))))
