"""Preemption (upstream's DefaultPreemption PostFilter), the decision part.

When no node fits a pod, look for a node where evicting pods of lower
priority would make it fit: on each node whose rejection was not
unresolvable, remove every lower-priority pod, check the pod fits, then
give back ("reprieve") as many of them as possible, most important first.
Of the candidate nodes pick the one whose victims matter least (lowest
highest-priority victim, then lowest priority sum, then fewest victims,
then the most recently started). The scheduler then deletes the victims
and records the node in the pod's status.nominatedNodeName.
"""

from __future__ import annotations

from dataclasses import dataclass

from timonel.scheduler import algorithm
from timonel.scheduler.framework import (
    UNSCHEDULABLE,
    Diagnosis,
    FitError,
    Profile,
    Status,
    fit_error_message,
)
from timonel.scheduler.nodeinfo import NodeInfo, Snapshot
from timonel.scheduler.podinfo import PodInfo

NEVER = "Never"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


@dataclass
class Candidate:
    node: str
    victims: list[PodInfo]


def _start_time(p: PodInfo) -> str:
    return str((p.pod.get("status") or {}).get("startTime") or
               (p.pod.get("metadata") or {}).get("creationTimestamp") or "")


def not_eligible(pod: PodInfo, policy: str, snap: Snapshot) -> str:
    """Why `pod` may not preempt ("" when it may)."""
    if policy == NEVER:
        return "not eligible due to preemptionPolicy=Never."
    nominated = str((pod.pod.get("status") or {}).get("nominatedNodeName") or "")
    node = snap.by_name.get(nominated) if nominated else None
    if node is not None:
        # Victims chosen earlier are still leaving: wait for them.
        for p in node.pods.values():
            if p.terminating and p.priority < pod.priority:
                return "not eligible due to a terminating pod on the nominated node."
    return ""


def _fits(profile: Profile, snap: Snapshot, pod: PodInfo, node: NodeInfo,
          removed: list[PodInfo]) -> tuple[bool, algorithm.Prepared, NodeInfo]:
    prep = algorithm.pre_filter(profile, snap, pod)
    clone = node.clone()
    for v in removed:
        clone.remove_pod(v.key)
        for p in prep.filters:
            if p.remove_pod is not None:
                p.remove_pod(prep.state, pod, v, clone)
    return algorithm.run_filters(prep, clone) is None, prep, clone


def select_victims(profile: Profile, snap: Snapshot, pod: PodInfo,
                   node: NodeInfo) -> list[PodInfo] | None:
    """The fewest, least important lower-priority pods to remove from
    `node` so that `pod` fits; None if even removing all does not help."""
    lower = [p for p in node.pods.values() if p.priority < pod.priority]
    if not lower:
        return None
    try:
        ok, prep, clone = _fits(profile, snap, pod, node, lower)
    except FitError:
        return None
    if not ok:
        return None
    # Most important first: they get the first chance to stay.
    lower.sort(key=lambda p: (-p.priority, _start_time(p)))
    victims = []
    for p in lower:
        clone.add_pod(p)
        for pl in prep.filters:
            if pl.add_pod is not None:
                pl.add_pod(prep.state, pod, p, clone)
        if algorithm.run_filters(prep, clone) is not None:
            clone.remove_pod(p.key)
            for pl in prep.filters:
                if pl.remove_pod is not None:
                    pl.remove_pod(prep.state, pod, p, clone)
            victims.append(p)
    return victims


def _rank(c: Candidate) -> tuple[int, int, int]:
    if not c.victims:
        return (-(2 ** 63), 0, 0)
    return (max(v.priority for v in c.victims), sum(v.priority for v in c.victims),
            len(c.victims))


def _top_start(c: Candidate) -> str:
    if not c.victims:
        return "\U0010ffff"
    top = max(v.priority for v in c.victims)
    return min(_start_time(v) for v in c.victims if v.priority == top)


def pick(candidates: list[Candidate]) -> Candidate:
    """upstream pickOneNodeForPreemption, without PodDisruptionBudgets."""
    best = min(_rank(c) for c in candidates)
    ties = [c for c in candidates if _rank(c) == best]
    # The most important victims that started last lose the least work.
    return max(ties, key=_top_start)


def find_candidate(profile: Profile, snap: Snapshot, err: FitError,
                   policy: str) -> tuple[Candidate | None, str]:
    """The node and victims to preempt for the pod of `err`, or None with
    the post-filter message explaining why not."""
    pod = err.pod
    why = not_eligible(pod, policy, snap)
    if why:
        return None, why
    statuses: dict[str, Status] = {}
    candidates: list[Candidate] = []
    for name, st in err.diagnosis.node_statuses.items():
        node = snap.by_name.get(name)
        if node is None:
            continue
        if st.code != UNSCHEDULABLE:
            statuses[name] = Status(st.code, [NOT_HELPFUL])
            continue
        victims = select_victims(profile, snap, pod, node)
        if victims is None:
            statuses[name] = Status(UNSCHEDULABLE, [NO_VICTIMS])
        else:
            candidates.append(Candidate(name, victims))
    if not candidates:
        msg = fit_error_message(len(statuses), Diagnosis(node_statuses=statuses))
        return None, "preemption: " + msg
    return pick(candidates), ""
