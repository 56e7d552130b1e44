"""The pod row: READY, the STATUS reason logic and RESTARTS, as kube-apiserver prints them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from timonel.api.server.tables.common import (
    AGE,
    CORE,
    NAME,
    Column,
    Obj,
    Printer,
    age,
    items,
    meta,
    name,
    num,
    parse_time,
    since,
    sub,
    text,
)

COLUMNS = (
    NAME,
    Column("Ready", doc="The aggregate readiness state of this pod for accepting traffic."),
    Column("Status", doc="The aggregate status of the containers in this pod."),
    Column("Restarts", doc="The number of times the containers in this pod have been restarted "
                           "and when the last container in this pod has restarted."),
    AGE,
    Column("IP", priority=1, doc=CORE + "PodStatus#podIP"),
    Column("Node", priority=1, doc=CORE + "PodSpec#nodeName"),
    Column("Nominated Node", priority=1, doc=CORE + "PodStatus#nominatedNodeName"),
    Column("Readiness Gates", priority=1, doc=CORE + "PodSpec#readinessGates"),
)

# Set by the node lifecycle controller on pods of a node that stopped answering.
NODE_UNREACHABLE_POD_REASON = "NodeLost"


def _restartable(container: Obj | None) -> bool:
    """A sidecar: an init container with restartPolicy Always."""
    return container is not None and container.get("restartPolicy") == "Always"


def _last_termination(cs: Obj) -> datetime | None:
    term = sub(cs, "lastState").get("terminated")
    return parse_time(term.get("finishedAt")) if isinstance(term, dict) else None


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if b is None:
        return a
    return b if a is None or a < b else a


def _condition_true(status: Obj, ctype: str) -> bool:
    for c in items(status, "conditions"):
        if c.get("type") == ctype:
            return c.get("status") == "True"
    return False


def _has_ready_condition(status: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in items(status, "conditions"))


def _terminated_reason(term: Obj, prefix: str) -> str:
    if text(term.get("reason")):
        return prefix + term["reason"]
    if num(term.get("signal")):
        return f"{prefix}Signal:{num(term.get('signal'))}"
    return f"{prefix}ExitCode:{num(term.get('exitCode'))}"


def pod_status(pod: Obj, now: datetime) -> tuple[int, int, str, str]:
    """(ready containers, total containers, STATUS, RESTARTS) of one pod."""
    spec = sub(pod, "spec")
    status = sub(pod, "status")
    init_specs = items(spec, "initContainers")
    init_by_name = {text(c.get("name")): c for c in init_specs}
    total = len(items(spec, "containers")) + sum(1 for c in init_specs if _restartable(c))
    ready = 0
    phase = text(status.get("phase"))
    reason = text(status.get("reason")) or phase
    for c in items(status, "conditions"):
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    restarts = sidecar_restarts = 0
    last_restart: datetime | None = None
    last_sidecar_restart: datetime | None = None
    initializing = False
    for i, cs in enumerate(items(status, "initContainerStatuses")):
        count = num(cs.get("restartCount"))
        restarts += count
        last_restart = _later(last_restart, _last_termination(cs))
        sidecar = _restartable(init_by_name.get(text(cs.get("name"))))
        if sidecar:
            sidecar_restarts += count
            last_sidecar_restart = _later(last_sidecar_restart, _last_termination(cs))
        state = sub(cs, "state")
        term, waiting = state.get("terminated"), state.get("waiting")
        if isinstance(term, dict) and num(term.get("exitCode")) == 0:
            continue
        if sidecar and cs.get("started") is True:
            if cs.get("ready") is True:
                ready += 1
            continue
        if isinstance(term, dict):
            reason = _terminated_reason(term, "Init:")
        elif (isinstance(waiting, dict) and text(waiting.get("reason"))
              and waiting["reason"] != "PodInitializing"):
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _condition_true(status, "Initialized"):
        restarts = sidecar_restarts
        last_restart = last_sidecar_restart
        has_running = False
        # Walked backwards so the first container's state wins, as upstream.
        for cs in reversed(items(status, "containerStatuses")):
            restarts += num(cs.get("restartCount"))
            last_restart = _later(last_restart, _last_termination(cs))
            state = sub(cs, "state")
            term, waiting = state.get("terminated"), state.get("waiting")
            if isinstance(waiting, dict) and text(waiting.get("reason")):
                reason = waiting["reason"]
            elif isinstance(term, dict):
                reason = _terminated_reason(term, "")
            elif cs.get("ready") is True and isinstance(state.get("running"), dict):
                has_running = True
                ready += 1
        # A container still running makes a "Completed" pod Running again.
        if reason == "Completed" and has_running:
            reason = "Running" if _has_ready_condition(status) else "NotReady"

    if meta(pod).get("deletionTimestamp"):
        if status.get("reason") == NODE_UNREACHABLE_POD_REASON:
            reason = "Unknown"
        elif phase not in ("Failed", "Succeeded"):
            reason = "Terminating"

    restarts_text = str(restarts)
    if restarts != 0 and last_restart is not None:
        restarts_text = f"{restarts} ({since(last_restart, now)} ago)"
    return ready, total, reason, restarts_text


def _pod_ip(status: Obj) -> str:
    # The internal type keeps podIPs, filled from podIP when that is set.
    ip = text(status.get("podIP"))
    if not ip:
        ips = items(status, "podIPs")
        ip = text(ips[0].get("ip")) if ips else ""
    return ip


def _readiness_gates(spec: Obj, status: Obj) -> str:
    gates = items(spec, "readinessGates")
    if not gates:
        return "<none>"
    conditions = items(status, "conditions")
    true = 0
    for gate in gates:
        for c in conditions:
            if c.get("type") == gate.get("conditionType"):
                true += c.get("status") == "True"
                break
    return f"{true}/{len(gates)}"


def cells(pod: Obj, now: datetime) -> list[Any]:
    ready, total, reason, restarts = pod_status(pod, now)
    spec = sub(pod, "spec")
    status = sub(pod, "status")
    return [name(pod), f"{ready}/{total}", reason, restarts, age(pod, now),
            _pod_ip(status) or "<none>", text(spec.get("nodeName")) or "<none>",
            text(status.get("nominatedNodeName")) or "<none>", _readiness_gates(spec, status)]


def conditions(pod: Obj) -> list[dict[str, str]] | None:
    phase = sub(pod, "status").get("phase")
    if phase == "Succeeded":
        return [{"type": "Completed", "status": "True", "reason": "Succeeded",
                 "message": "The pod has completed successfully."}]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed",
                 "message": "The pod failed."}]
    return None


PRINTERS = {("", "Pod"): Printer(COLUMNS, cells, conditions)}
