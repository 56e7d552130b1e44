"""The order in which a StatefulSet creates, deletes and updates its pods
(upstream's updateStatefulSet), as a plan computed from the pods' states.

OrderedReady ("monotonic"): create ordinal i+1 only once i is Running and
Ready (and available for minReadySeconds), delete the highest ordinal first
and one at a time, never while another pod is unhealthy. Parallel: create
and delete all at once. Rolling updates replace pods from the highest
ordinal down to the partition, one at a time, each after its successor is
healthy again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PodState:
    revision: str = ""
    phase: str = "Pending"
    ready: bool = False
    available: bool = False
    terminating: bool = False

    @property
    def finished(self) -> bool:
        return self.phase in ("Failed", "Succeeded")

    @property
    def running_ready(self) -> bool:
        return self.phase == "Running" and self.ready

    @property
    def healthy(self) -> bool:
        return self.running_ready and self.available and not self.terminating


@dataclass(frozen=True)
class Action:
    verb: str          # "create" or "delete"
    ordinal: int
    revision: str = ""  # for create: which revision's template
    why: str = ""       # for delete: "failed", "condemned", "update"


def plan(*, start: int, replicas: int, pods: dict[int, PodState], monotonic: bool,
         current_revision: str, update_revision: str, rolling: bool, partition: int
         ) -> list[Action]:
    """What to do now, in order; the controller does these and syncs again
    when the cluster has moved (an empty plan means wait or done)."""
    actions: list[Action] = []
    wanted = range(start, start + replicas)

    def revision_for(ordinal: int) -> str:
        return current_revision if rolling and ordinal < start + partition else update_revision

    for ordinal in wanted:
        state = pods.get(ordinal)
        if state is None:
            actions.append(Action("create", ordinal, revision_for(ordinal)))
            if monotonic:
                return actions
            continue
        if state.finished and not state.terminating:
            # A pod that exited is replaced under the same name.
            actions.append(Action("delete", ordinal, why="failed"))
            if monotonic:
                return actions
            continue
        if monotonic and not state.healthy:
            return actions
    condemned = sorted((o for o in pods if o not in wanted), reverse=True)
    unhealthy = [o for o in sorted(pods) if o in wanted and not pods[o].healthy] + [
        o for o in sorted(condemned) if not pods[o].healthy]
    first_unhealthy = unhealthy[0] if unhealthy else None
    for ordinal in condemned:
        state = pods[ordinal]
        if state.terminating:
            if monotonic:
                return actions
            continue
        if monotonic and not state.running_ready and ordinal != first_unhealthy:
            return actions
        actions.append(Action("delete", ordinal, why="condemned"))
        if monotonic:
            return actions
    if not rolling or actions:
        return actions
    for ordinal in range(start + replicas - 1, start + partition - 1, -1):
        state = pods.get(ordinal)
        if state is None:
            return actions
        if state.revision != update_revision and not state.terminating:
            actions.append(Action("delete", ordinal, why="update"))
            return actions
        if not state.healthy:
            return actions
    return actions
