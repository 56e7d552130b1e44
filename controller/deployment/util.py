"""The Deployment controller's pure parts, as upstream's deployment/util:
rolling-update arithmetic, the pod-template hash, template equality,
revisions and the annotations a Deployment copies onto its ReplicaSets.

Nothing here talks to the API server, so all of it is unit-tested.
"""

from __future__ import annotations

import copy
import json
import math
import struct
from collections.abc import Iterable
from typing import Any

from timonel.api import meta

Obj = dict[str, Any]

POD_TEMPLATE_HASH = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
# The extensions/v1beta1 rollback request, kept as an annotation by upstream.
ROLLBACK_TO = "deprecated.deployment.rollback.to"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

# Deployment annotations that are not copied to its ReplicaSets (and not
# copied back by a rollback).
ANNOTATIONS_TO_SKIP = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS,
                                 MAX_REPLICAS, ROLLBACK_TO})
# Upstream's limit on the revision-history annotation.
REVISION_HISTORY_LIMIT_CHARS = 2000

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# -- int or percent ------------------------------------------------------------------


def scaled_value(value: int | str | None, total: int, round_up: bool) -> int:
    """An IntOrString as a count of `total` (upstream's
    GetScaledValueFromIntOrPercent): ints as they are, "25%" rounded up or
    down. Raises ValueError for anything else."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"invalid value for IntOrString: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        try:
            percent = int(value[:-1])
        except ValueError:
            raise ValueError(f"invalid value for IntOrString: invalid value {value!r}") from None
        scaled = percent * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    raise ValueError(f"invalid value for IntOrString: invalid type: string {value!r} is not a "
                     "percentage")


def replicas(obj: Obj) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def is_rolling_update(d: Obj) -> bool:
    return ((d.get("spec") or {}).get("strategy") or {}).get("type", "RollingUpdate") == \
        "RollingUpdate"


def _rolling(d: Obj) -> Obj:
    return (((d.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {})


def resolve_fenceposts(max_surge: int | str | None, max_unavailable: int | str | None,
                       desired: int) -> tuple[int, int]:
    """(surge, unavailable) for `desired` replicas; both zero is not allowed,
    so unavailable becomes 1 (upstream's ResolveFenceposts)."""
    surge = scaled_value(max_surge, desired, True)
    unavailable = scaled_value(max_unavailable, desired, False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def max_surge(d: Obj) -> int:
    if not is_rolling_update(d):
        return 0
    ru = _rolling(d)
    surge, _ = resolve_fenceposts(ru.get("maxSurge"), ru.get("maxUnavailable"), replicas(d))
    return surge


def max_unavailable(d: Obj) -> int:
    if not is_rolling_update(d) or replicas(d) == 0:
        return 0
    ru = _rolling(d)
    _, unavailable = resolve_fenceposts(ru.get("maxSurge"), ru.get("maxUnavailable"),
                                        replicas(d))
    return min(unavailable, replicas(d))


# -- ReplicaSet counts -----------------------------------------------------------------


def _status(rs: Obj) -> Obj:
    return rs.get("status") or {}


def spec_replicas_sum(rss: Iterable[Obj | None]) -> int:
    return sum(replicas(rs) for rs in rss if rs is not None)


def actual_replicas_sum(rss: Iterable[Obj | None]) -> int:
    return sum(int(_status(rs).get("replicas") or 0) for rs in rss if rs is not None)


def ready_replicas_sum(rss: Iterable[Obj | None]) -> int:
    return sum(int(_status(rs).get("readyReplicas") or 0) for rs in rss if rs is not None)


def available_replicas_sum(rss: Iterable[Obj | None]) -> int:
    return sum(int(_status(rs).get("availableReplicas") or 0) for rs in rss if rs is not None)


def pods_upper_bound(rs: Obj) -> int:
    """How many running pods a ReplicaSet may have right now: its size, or
    more while a scale-down is not yet reflected in its status. Surge is
    counted with this (upstream counts spec.replicas alone), so a lagging
    scale-down never lets the total exceed replicas + maxSurge."""
    return max(replicas(rs), int(_status(rs).get("replicas") or 0))


def available_lower_bound(rs: Obj) -> int:
    """Available pods a ReplicaSet keeps: never more than its size, even
    while its status still counts pods it is about to delete. Upstream sums
    status.availableReplicas, which a lagging status inflates."""
    return min(replicas(rs), int(_status(rs).get("availableReplicas") or 0))


def new_rs_new_replicas(d: Obj, all_rss: Iterable[Obj | None], new_rs: Obj) -> int:
    """The size the new ReplicaSet may grow to now (upstream's NewRSNewReplicas)."""
    if not is_rolling_update(d):
        return replicas(d)
    surge = scaled_value(_rolling(d).get("maxSurge"), replicas(d), True)
    current = sum(pods_upper_bound(rs) for rs in all_rss if rs is not None)
    max_total = replicas(d) + surge
    if current >= max_total:
        return replicas(new_rs)
    scale_up = min(max_total - current, replicas(d) - replicas(new_rs))
    return replicas(new_rs) + max(scale_up, 0)


def is_saturated(d: Obj, rs: Obj | None) -> bool:
    """The ReplicaSet alone runs the whole Deployment, all available."""
    if rs is None:
        return False
    desired = desired_replicas_annotation(rs)
    return desired == replicas(d) and replicas(rs) == replicas(d) and \
        int(_status(rs).get("availableReplicas") or 0) == replicas(d)


def deployment_complete(d: Obj, status: Obj) -> bool:
    want = replicas(d)
    return (int(status.get("updatedReplicas") or 0) == want
            and int(status.get("replicas") or 0) == want
            and int(status.get("availableReplicas") or 0) == want
            and int(status.get("observedGeneration") or 0) >=
            int((d.get("metadata") or {}).get("generation") or 0))


def deployment_progressing(d: Obj, new: Obj) -> bool:
    """Any step forward since the status last written (upstream's DeploymentProgressing)."""
    old = d.get("status") or {}

    def n(st: Obj, key: str) -> int:
        return int(st.get(key) or 0)

    old_old = n(old, "replicas") - n(old, "updatedReplicas")
    new_old = n(new, "replicas") - n(new, "updatedReplicas")
    return (n(new, "updatedReplicas") > n(old, "updatedReplicas") or new_old < old_old
            or n(new, "readyReplicas") > n(old, "readyReplicas")
            or n(new, "availableReplicas") > n(old, "availableReplicas"))


# -- proportional scaling ------------------------------------------------------------------


def round_half_away(x: float) -> int:
    """Go's math.Round (halves away from zero), unlike Python's round()."""
    return math.floor(abs(x) + 0.5) * (1 if x >= 0 else -1)


def _int_annotation(rs: Obj, key: str) -> int | None:
    raw = ((rs.get("metadata") or {}).get("annotations") or {}).get(key)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


def desired_replicas_annotation(rs: Obj) -> int | None:
    return _int_annotation(rs, DESIRED_REPLICAS)


def replica_set_fraction(rs: Obj, d: Obj) -> int:
    """How much `rs` should grow (or shrink) when the Deployment is resized
    mid-rollout, in proportion to its share (upstream's getReplicaSetFraction)."""
    if replicas(d) == 0:
        return -replicas(rs)
    deployment_max = replicas(d) + max_surge(d)
    before = _int_annotation(rs, MAX_REPLICAS)
    if not before:
        before = int(((d.get("status") or {}).get("replicas")) or 0)
    if not before:
        return 0
    return round_half_away(replicas(rs) * deployment_max / before) - replicas(rs)


def proportion(rs: Obj | None, d: Obj, to_add: int, added: int) -> int:
    if rs is None or replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction = replica_set_fraction(rs, d)
    allowed = to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


# -- template hash and equality --------------------------------------------------------------


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(s: str) -> str:
    """Upstream's rand.SafeEncodeString: no vowels, no look-alikes."""
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in s)


def compute_hash(template: Obj, collision_count: int | None = None) -> str:
    """The pod-template-hash of a template, as upstream's ComputeHash: FNV-32a
    of the template, then the collision count as 8 little-endian bytes, the
    decimal result spelled in the safe alphabet. Upstream hashes Go's dump of
    its in-memory struct; here it is canonical JSON, so the values differ
    from a real cluster's for the same template (they never meet)."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count is not None:
        data += struct.pack("<I", collision_count & 0xFFFFFFFF) + b"\0\0\0\0"
    return safe_encode(str(fnv32a(data)))


def _normalized(value: Any) -> Any:
    """Drop null and empty values, as Go's semantic equality treats nil and
    empty maps and lists alike."""
    if isinstance(value, dict):
        out = {k: _normalized(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [])}
    if isinstance(value, list):
        return [_normalized(v) for v in value]
    return value


def without_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template or {})
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(POD_TEMPLATE_HASH, None)
    return t


def equal_ignore_hash(t1: Obj | None, t2: Obj | None) -> bool:
    return _normalized(without_hash(t1 or {})) == _normalized(without_hash(t2 or {}))


def template_of(obj: Obj) -> Obj:
    return (obj.get("spec") or {}).get("template") or {}


# -- revisions and annotations -----------------------------------------------------------------


def revision(rs: Obj) -> int:
    """The revision annotation; 0 when unset, -1 when not a number."""
    raw = ((rs.get("metadata") or {}).get("annotations") or {}).get(REVISION)
    if raw is None:
        return 0
    try:
        return int(raw)
    except ValueError:
        return -1


def max_revision(rss: Iterable[Obj | None]) -> int:
    """The highest revision; unparsable ones are skipped."""
    return max([0, *(revision(rs) for rs in rss if rs is not None)])


def last_revision(rss: Iterable[Obj | None]) -> int:
    """The second highest revision: what "undo" goes back to."""
    top, second = 0, 0
    for rs in rss:
        if rs is None:
            continue
        v = revision(rs)
        if v >= top:
            top, second = v, top
        elif v > second:
            second = v
    return second


def by_creation(rss: Iterable[Obj]) -> list[Obj]:
    """Oldest first, names breaking ties (upstream's ReplicaSetsByCreationTimestamp)."""
    return sorted(rss, key=lambda rs: ((rs.get("metadata") or {}).get("creationTimestamp") or "",
                                       meta.name_of(rs)))


def by_revision(rss: Iterable[Obj]) -> list[Obj]:
    return sorted(by_creation(rss), key=revision)


def find_new_replica_set(d: Obj, rss: Iterable[Obj]) -> Obj | None:
    """The oldest ReplicaSet whose template is the Deployment's."""
    for rs in by_creation(rss):
        if equal_ignore_hash(template_of(rs), template_of(d)):
            return rs
    return None


def find_old_replica_sets(d: Obj, rss: Iterable[Obj]) -> list[Obj]:
    new = find_new_replica_set(d, rss)
    return [rs for rs in rss if new is None or
            (rs.get("metadata") or {}).get("uid") != (new.get("metadata") or {}).get("uid")]


def active_replica_sets(rss: Iterable[Obj | None]) -> list[Obj]:
    return [rs for rs in rss if rs is not None and replicas(rs) > 0]


def set_replicas_annotations(rs: Obj, desired: int, maximum: int) -> bool:
    annotations = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(maximum))):
        if annotations.get(key) != value:
            annotations[key] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, maximum: int) -> bool:
    annotations = (rs.get("metadata") or {}).get("annotations") or {}
    return annotations.get(DESIRED_REPLICAS) != str(desired) or \
        annotations.get(MAX_REPLICAS) != str(maximum)


def set_new_replica_set_annotations(d: Obj, rs: Obj, new_revision: int, exists: bool,
                                    limit_chars: int = REVISION_HISTORY_LIMIT_CHARS) -> bool:
    """Copy the Deployment's annotations onto its new ReplicaSet and raise
    the ReplicaSet's revision to `new_revision`, keeping the revisions it had
    in revision-history (a rollback reuses an old ReplicaSet). Returns
    whether anything changed (upstream's SetNewReplicaSetAnnotations)."""
    annotations = rs.setdefault("metadata", {}).setdefault("annotations", {})
    changed = False
    for k, v in ((d.get("metadata") or {}).get("annotations") or {}).items():
        if k in ANNOTATIONS_TO_SKIP or annotations.get(k) == v:
            continue
        annotations[k] = v
        changed = True
    old_raw = annotations.get(REVISION)
    if old_raw is None:
        old = 0
    else:
        try:
            old = int(old_raw)
        except ValueError:
            return False
    if old < new_revision:
        annotations[REVISION] = str(new_revision)
        changed = True
        if old_raw is not None:
            history = annotations.get(REVISION_HISTORY, "")
            if not history:
                annotations[REVISION_HISTORY] = old_raw
            else:
                entries = history.split(",")
                total = len(history) + len(old_raw) + 1
                start = 0
                while total > limit_chars and start < len(entries):
                    total -= len(entries[start]) + 1
                    start += 1
                if total <= limit_chars:
                    annotations[REVISION_HISTORY] = ",".join([*entries[start:], old_raw])
    if not exists and set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)):
        changed = True
    return changed
