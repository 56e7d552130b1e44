"""What every pod-owning controller shares: pods from templates, owner
references, readiness and availability, and which pods to delete first.

Follows upstream's `controller_utils.go` and `podutil`: a pod made from a
template carries the template's labels, annotations and finalizers, the
owner's controller reference (controller=true, blockOwnerDeletion=true) and
the name prefix `<owner>-`; events `SuccessfulCreate`/`FailedCreate` and
`SuccessfulDelete`/`FailedDelete` go on the owner.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from timonel.api import meta
from timonel.api.client import Client
from timonel.api.client.events import NORMAL, WARNING, EventRecorder
from timonel.api.errors import ApiError

log = logging.getLogger(__name__)

Obj = dict[str, Any]
PODS = ("v1", "Pod")

# Upstream's annotation for choosing which pods a ReplicaSet removes first.
POD_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"

# Phases ranked for deletion; a phase missing here counts as Pending (0),
# like a lookup of a missing key in upstream's Go map.
_PHASE_ORDINAL = {"Pending": 0, "Unknown": 1, "Running": 2}


# -- owner references ----------------------------------------------------------


def controller_ref(owner: Obj) -> Obj:
    """The ownerReference a controller puts on what it creates
    (upstream's metav1.NewControllerRef)."""
    md = owner.get("metadata") or {}
    return {"apiVersion": owner.get("apiVersion", ""), "kind": owner.get("kind", ""),
            "name": md.get("name", ""), "uid": md.get("uid", ""),
            "controller": True, "blockOwnerDeletion": True}


def controller_of(obj: Obj) -> Obj | None:
    """The ownerReference with controller=true, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller") is True:
            return ref
    return None


def is_controlled_by(obj: Obj, owner: Obj) -> bool:
    ref = controller_of(obj)
    return ref is not None and ref.get("uid") == (owner.get("metadata") or {}).get("uid")


# -- pods from templates ---------------------------------------------------------


def pods_prefix(owner_name: str) -> str:
    """generateName for an owner's pods. Upstream drops the dash when the
    result would not be a valid name prefix; names here are DNS subdomains
    already, so the dash always fits."""
    return f"{owner_name}-"


def pod_from_template(template: Obj, owner: Obj, *, name: str = "",
                      generate_name: str | None = None, with_controller_ref: bool = True) -> Obj:
    """A new pod from a PodTemplateSpec (upstream's GetPodFromTemplate)."""
    tmd = template.get("metadata") or {}
    md: Obj = {}
    if name:
        md["name"] = name
    else:
        md["generateName"] = generate_name if generate_name is not None else \
            pods_prefix(meta.name_of(owner))
    namespace = meta.namespace_of(owner)
    if namespace:
        md["namespace"] = namespace
    for key in ("labels", "annotations"):
        if tmd.get(key):
            md[key] = dict(tmd[key])
    if tmd.get("finalizers"):
        md["finalizers"] = list(tmd["finalizers"])
    if with_controller_ref:
        md["ownerReferences"] = [controller_ref(owner)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": copy.deepcopy(template.get("spec") or {})}


def _namespace_terminating(e: ApiError) -> bool:
    # NamespaceLifecycle admission's refusal; upstream records no event for it.
    return e.code == 403 and "being terminated" in e.message


async def create_pod(client: Client, recorder: EventRecorder | None, template: Obj, owner: Obj,
                     *, name: str = "", generate_name: str | None = None,
                     mutate: Callable[[Obj], None] | None = None) -> Obj:
    """Create one pod for `owner` from `template` and record the event.
    `mutate` may adjust the pod before it is sent (node name, hostname...).
    Raises the ApiError of a refused create (after a `FailedCreate` event)."""
    pod = pod_from_template(template, owner, name=name, generate_name=generate_name)
    if not (pod["metadata"].get("labels")):
        # Upstream refuses: a pod without labels could never be selected back.
        raise ApiError(422, f"unable to create pods for {meta.name_of(owner)}: "
                       "no labels in the pod template", "Invalid")
    if mutate is not None:
        mutate(pod)
    try:
        created = await client.create(PODS, pod, namespace=meta.namespace_of(owner))
    except ApiError as e:
        if not _namespace_terminating(e) and recorder is not None:
            await recorder.event(owner, WARNING, "FailedCreate", f"Error creating: {e.message}")
        raise
    log.debug("created pod owner=%s/%s pod=%s", meta.namespace_of(owner), meta.name_of(owner),
              meta.name_of(created))
    if recorder is not None:
        await recorder.event(owner, NORMAL, "SuccessfulCreate",
                             f"Created pod: {meta.name_of(created)}")
    return created


async def delete_pod(client: Client, recorder: EventRecorder | None, pod: Obj,
                     owner: Obj) -> bool:
    """Delete one of `owner`'s pods (gracefully, as the pod asks). False when
    it was already gone; other errors are raised after a `FailedDelete` event."""
    ns, name = meta.namespace_of(pod), meta.name_of(pod)
    uid = (pod.get("metadata") or {}).get("uid")
    try:
        await client.delete(PODS, ns, name, preconditions={"uid": uid} if uid else None)
    except ApiError as e:
        if e.code == 404:
            return False
        if e.code == 409 and uid:
            # Another pod of that name now: ours is gone.
            return False
        if recorder is not None:
            await recorder.event(owner, WARNING, "FailedDelete", f"Error deleting: {e.message}")
        raise
    if recorder is not None:
        await recorder.event(owner, NORMAL, "SuccessfulDelete", f"Deleted pod: {name}")
    return True


async def slow_start_batch(count: int, initial_batch_size: int,
                           fn: Callable[[], Awaitable[Any]]) -> tuple[int, BaseException | None]:
    """Call `fn` `count` times in growing batches (1, 2, 4, ...), stopping at
    the first batch with a failure, so a quota or admission refusal costs one
    failed call instead of hundreds (upstream's slowStartBatch).
    Returns (successes, first error or None)."""
    remaining, successes = count, 0
    batch = min(remaining, initial_batch_size)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for r in errors:
            if isinstance(r, asyncio.CancelledError):
                raise r
        successes += batch - len(errors)
        if errors:
            return successes, errors[0]
        remaining -= batch
        batch = min(2 * batch, remaining)
    return successes, None


# -- readiness and availability -----------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        t = meta.parse_time(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def pod_condition(pod: Obj, ctype: str) -> Obj | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if isinstance(c, dict) and c.get("type") == ctype:
            return c
    return None


def is_pod_ready(pod: Obj) -> bool:
    c = pod_condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def pod_ready_time(pod: Obj) -> datetime | None:
    """When the pod last became Ready (None when not ready or unknown)."""
    if not is_pod_ready(pod):
        return None
    c = pod_condition(pod, "Ready")
    return parse_time((c or {}).get("lastTransitionTime"))


def is_pod_available(pod: Obj, min_ready_seconds: int, now: datetime | None = None) -> bool:
    """Ready for at least `min_ready_seconds` (upstream's IsPodAvailable)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    ready_at = pod_ready_time(pod)
    if ready_at is None:
        return False
    now = now or datetime.now(UTC)
    return (now - ready_at).total_seconds() > min_ready_seconds


def seconds_until_available(pod: Obj, min_ready_seconds: int,
                            now: datetime | None = None) -> float | None:
    """How long until a ready pod counts as available (None: not ready, or
    no wait). Controllers requeue for then: nothing else will tell them."""
    if min_ready_seconds <= 0 or not is_pod_ready(pod):
        return None
    ready_at = pod_ready_time(pod)
    if ready_at is None:
        return None
    left = min_ready_seconds - ((now or datetime.now(UTC)) - ready_at).total_seconds()
    return left if left >= 0 else None


def is_pod_terminating(pod: Obj) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def is_pod_active(pod: Obj) -> bool:
    """Neither finished nor being deleted (upstream's IsPodActive)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not is_pod_terminating(pod)


def filter_active_pods(pods: Iterable[Obj]) -> list[Obj]:
    return [p for p in pods if is_pod_active(p)]


# -- deletion order ------------------------------------------------------------------


def deletion_cost(pod: Obj) -> int:
    """The pod-deletion-cost annotation; unset or not an int32 counts as 0."""
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(POD_DELETION_COST)
    if raw is None:
        return 0
    try:
        value = int(str(raw).strip())
    except ValueError:
        return 0
    return value if -2**31 <= value < 2**31 else 0


def max_container_restarts(pod: Obj) -> int:
    return max((int(c.get("restartCount") or 0)
                for c in (pod.get("status") or {}).get("containerStatuses") or []
                if isinstance(c, dict)), default=0)


def _created(pod: Obj) -> datetime | None:
    return parse_time((pod.get("metadata") or {}).get("creationTimestamp"))


def _after_or_zero(t1: datetime | None, t2: datetime | None) -> bool:
    """t1 sorts first: it is unset, or later than t2 (upstream's afterOrZero)."""
    if t1 is None or t2 is None:
        return t1 is None
    return t1 > t2


def _log_rank(t: datetime, now: datetime) -> int:
    nanos = (now - t).total_seconds() * 1e9
    return int(math.log2(nanos)) if nanos > 0 else -1


def _time_first(t1: datetime | None, t2: datetime | None, now: datetime | None,
                uid1: str, uid2: str) -> bool:
    """Newer first; with `now`, on a logarithmic scale (LogarithmicScaleDown):
    pods that came up within the same power-of-two age are peers, ordered by
    UID so scale-downs do not always hit the very youngest pod."""
    if now is None or t1 is None or t2 is None:
        return _after_or_zero(t1, t2)
    diff = _log_rank(t1, now) - _log_rank(t2, now)
    if diff == 0:
        return uid1 < uid2
    return diff < 0


def _uid(pod: Obj) -> str:
    return str((pod.get("metadata") or {}).get("uid") or "")


def _phase_ordinal(pod: Obj) -> int:
    return _PHASE_ORDINAL.get(str((pod.get("status") or {}).get("phase") or ""), 0)


def _less_common_head(a: Obj, b: Obj) -> bool | None:
    """Rules 1-3 shared by both orders: unassigned, phase, not ready first."""
    na, nb = (a.get("spec") or {}).get("nodeName") or "", (b.get("spec") or {}).get("nodeName") or ""
    if na != nb and (not na or not nb):
        return not na
    pa, pb = _phase_ordinal(a), _phase_ordinal(b)
    if pa != pb:
        return pa < pb
    ra, rb = is_pod_ready(a), is_pod_ready(b)
    if ra != rb:
        return not ra
    return None


def active_pods_less(a: Obj, b: Obj) -> bool:
    """Upstream's ActivePods order: the pod to give up first sorts first
    (unassigned, Pending < Unknown < Running, not ready, ready most
    recently, more restarts, newer)."""
    head = _less_common_head(a, b)
    if head is not None:
        return head
    if is_pod_ready(a) and is_pod_ready(b):
        ta, tb = pod_ready_time(a), pod_ready_time(b)
        if ta != tb:
            return _after_or_zero(ta, tb)
    ca, cb = max_container_restarts(a), max_container_restarts(b)
    if ca != cb:
        return ca > cb
    ta, tb = _created(a), _created(b)
    if ta != tb:
        return _after_or_zero(ta, tb)
    return False


def sort_active_pods(pods: Iterable[Obj]) -> list[Obj]:
    """Pods in upstream's ActivePods order (most expendable first)."""
    return sorted(pods, key=functools.cmp_to_key(_cmp(active_pods_less)))


def _cmp(less: Callable[[Obj, Obj], bool]) -> Callable[[Obj, Obj], int]:
    def cmp(a: Obj, b: Obj) -> int:
        if less(a, b):
            return -1
        if less(b, a):
            return 1
        return 0
    return cmp


def rank_pods_for_deletion(pods: list[Obj], related: Iterable[Obj],
                           now: datetime | None = None) -> list[Obj]:
    """`pods` in the order a ReplicaSet deletes them (upstream's
    ActivePodsWithRanks with LogarithmicScaleDown): unassigned, Pending <
    Unknown < Running, not ready, lower pod-deletion-cost, more active
    `related` pods on the same node ("doubled up"), ready more recently,
    more restarts, newer. `related` is usually every pod of the owner's
    Deployment, so scale-downs spread what stays across nodes."""
    on_node: dict[str, int] = {}
    for p in related:
        if is_pod_active(p):
            node = (p.get("spec") or {}).get("nodeName") or ""
            on_node[node] = on_node.get(node, 0) + 1
    rank = {id(p): on_node.get((p.get("spec") or {}).get("nodeName") or "", 0) for p in pods}
    now = now or datetime.now(UTC)

    def less(a: Obj, b: Obj) -> bool:
        head = _less_common_head(a, b)
        if head is not None:
            return head
        da, db = deletion_cost(a), deletion_cost(b)
        if da != db:
            return da < db
        if rank[id(a)] != rank[id(b)]:
            return rank[id(a)] > rank[id(b)]
        if is_pod_ready(a) and is_pod_ready(b):
            ta, tb = pod_ready_time(a), pod_ready_time(b)
            if ta != tb:
                return _time_first(ta, tb, now, _uid(a), _uid(b))
        ca, cb = max_container_restarts(a), max_container_restarts(b)
        if ca != cb:
            return ca > cb
        ta, tb = _created(a), _created(b)
        if ta != tb:
            return _time_first(ta, tb, now, _uid(a), _uid(b))
        return False

    return sorted(pods, key=functools.cmp_to_key(_cmp(less)))


def pods_to_delete(pods: list[Obj], related: Iterable[Obj], count: int,
                   now: datetime | None = None) -> list[Obj]:
    """The `count` pods to delete first (upstream's getPodsToDelete)."""
    if count >= len(pods):
        return list(pods)
    return rank_pods_for_deletion(pods, related, now)[:count]
