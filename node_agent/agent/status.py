"""Pod status from what the runtime reports, in the upstream schema.

Pure functions: `pod_status` takes the pod, the runtime's containers of each
name (newest first) and the reasons the agent holds containers back
(CrashLoopBackOff, CreateContainerConfigError...) and returns `status`.
The phase follows the kubelet's getPhase.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from timonel.api import meta
from timonel.node_agent.runtime.api import runtime_pb2 as pb

from .containers import qos_class

Obj = dict[str, Any]
ID_PREFIX = "timonel://"


@dataclass
class Waiting:
    reason: str
    message: str = ""


@dataclass
class PodRuntimeState:
    sandbox_ip: str = ""
    sandbox_ready: bool = False
    # container name -> its runtime statuses, newest attempt first
    containers: dict[str, list[pb.ContainerStatus]] = field(default_factory=dict)
    waiting: dict[str, Waiting] = field(default_factory=dict)
    # From the probes of running containers (absent: no probe, so started and ready).
    started: dict[str, bool] = field(default_factory=dict)
    ready: dict[str, bool] = field(default_factory=dict)
    started_ids: list[str] = field(default_factory=list)  # containers this sync started, in order


def rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _terminated(st: pb.ContainerStatus) -> Obj:
    t: Obj = {"exitCode": int(st.exit_code), "reason": st.reason or
              ("Completed" if st.exit_code == 0 else "Error"), "containerID": ID_PREFIX + st.id}
    # A container that never ran has no times; null would be dropped by the merge patch anyway.
    if st.started_at:
        t["startedAt"] = rfc3339(st.started_at)
    if st.finished_at:
        t["finishedAt"] = rfc3339(st.finished_at)
    if st.message:
        t["message"] = st.message
    return {"terminated": t}


def container_status(c: Obj, history: list[pb.ContainerStatus], waiting: Waiting | None,
                     default_waiting: str, started: bool = True, ready: bool = True) -> Obj:
    out: Obj = {"name": str(c["name"]), "image": str(c.get("image", "")), "imageID": "",
                "ready": False, "restartCount": 0, "started": False, "state": {}, "lastState": {}}
    if not history:
        w = waiting or Waiting(default_waiting)
        out["state"] = {"waiting": {"reason": w.reason, **({"message": w.message} if w.message else {})}}
        return out
    latest = history[0]
    out["restartCount"] = int(latest.metadata.attempt)
    out["containerID"] = ID_PREFIX + latest.id
    out["imageID"] = latest.image_ref or latest.image_id
    previous = history[1] if len(history) > 1 else None
    if previous is not None and previous.state == pb.CONTAINER_EXITED:
        out["lastState"] = _terminated(previous)
    if latest.state == pb.CONTAINER_RUNNING:
        out["state"] = {"running": {"startedAt": rfc3339(latest.started_at)}}
        out["started"] = started
        out["ready"] = started and ready
    elif latest.state == pb.CONTAINER_EXITED:
        if waiting is not None:
            # Waiting to be restarted: the run that ended is the last state.
            out["state"] = {"waiting": {"reason": waiting.reason,
                                        **({"message": waiting.message} if waiting.message else {})}}
            out["lastState"] = _terminated(latest)
        else:
            out["state"] = _terminated(latest)
    else:
        out["state"] = {"waiting": {"reason": waiting.reason if waiting else "ContainerCreating"}}
    return out


def _phase(pod: Obj, init_statuses: list[Obj], statuses: list[Obj]) -> str:
    policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
    for s in init_statuses:
        term = s["state"].get("terminated")
        if term and term["exitCode"] == 0:
            continue
        if policy == "Never" and term:
            return "Failed"
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for s in statuses:
        state = s["state"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"]["exitCode"] == 0
        elif s["lastState"].get("terminated"):
            stopped += 1
            succeeded += s["lastState"]["terminated"]["exitCode"] == 0
        else:
            waiting += 1
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped > 0:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"
    return "Pending"


def _condition(old: list[Obj], ctype: str, ok: bool, reason: str = "", message: str = "") -> Obj:
    prev = next((c for c in old if c.get("type") == ctype), None)
    status = "True" if ok else "False"
    changed = prev is None or prev.get("status") != status
    cond: Obj = {"type": ctype, "status": status,
                 "lastTransitionTime": meta.now() if changed else prev.get("lastTransitionTime")}  # type: ignore[union-attr]
    if not ok and reason:
        cond["reason"] = reason
        if message:
            cond["message"] = message
    return cond


def pod_status(pod: Obj, rt: PodRuntimeState, host_ip: str) -> Obj:
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    inits = spec.get("initContainers") or []
    init_statuses = [container_status(c, rt.containers.get(c["name"], []), rt.waiting.get(c["name"]),
                                      "PodInitializing") for c in inits]
    for s in init_statuses:
        # An init container that finished is never "ready" (upstream).
        if "terminated" in s["state"]:
            s["ready"] = s["state"]["terminated"]["exitCode"] == 0
    init_pending = [s["name"] for s in init_statuses
                    if (s["state"].get("terminated") or {}).get("exitCode", 1) != 0]
    default = "PodInitializing" if init_pending else "ContainerCreating"
    statuses = [container_status(c, rt.containers.get(c["name"], []), rt.waiting.get(c["name"]),
                                 default, rt.started.get(c["name"], True), rt.ready.get(c["name"], True))
                for c in spec.get("containers") or []]
    phase = old.get("phase") if old.get("phase") in ("Succeeded", "Failed") else \
        _phase(pod, init_statuses, statuses)
    unready = [s["name"] for s in statuses if not s["ready"]]
    old_conds = old.get("conditions") or []
    conds = [
        _condition(old_conds, "PodReadyToStartContainers", rt.sandbox_ready),
        _condition(old_conds, "Initialized", not init_pending, "ContainersNotInitialized",
                   f"containers with incomplete status: [{' '.join(init_pending)}]"),
        _condition(old_conds, "Ready", not unready, "ContainersNotReady",
                   f"containers with unready status: [{' '.join(unready)}]"),
        _condition(old_conds, "ContainersReady", not unready, "ContainersNotReady",
                   f"containers with unready status: [{' '.join(unready)}]"),
        _condition(old_conds, "PodScheduled", True),
    ]
    status: Obj = {
        "phase": phase, "conditions": conds, "hostIP": host_ip, "hostIPs": [{"ip": host_ip}],
        "startTime": old.get("startTime") or meta.now(), "qosClass": qos_class(pod),
        "containerStatuses": statuses,
    }
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    # A pod on the node's network has the node's address (upstream).
    pod_ip = host_ip if spec.get("hostNetwork") else rt.sandbox_ip
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    return status

