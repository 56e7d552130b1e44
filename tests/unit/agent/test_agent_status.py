"""Pod status from runtime state: phase rules, container states, and the
upstream schema as the official Python client reads it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client as k8s

from timonel.node_agent.agent.status import PodRuntimeState, Waiting, pod_status
from timonel.node_agent.runtime.api import runtime_pb2 as pb

NOW = time.time_ns()


def pod(containers: list[str], inits: list[str] | None = None, policy: str = "Always") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
            "spec": {"restartPolicy": policy, "nodeName": "n1",
                     "containers": [{"name": n, "image": "busybox:latest"} for n in containers],
                     **({"initContainers": [{"name": n, "image": "busybox:latest"} for n in inits]}
                        if inits else {})},
            "status": {"phase": "Pending"}}


def cs(name: str, state: int, attempt: int = 0, exit_code: int = 0, reason: str = "") -> pb.ContainerStatus:
    st = pb.ContainerStatus(id=f"{name}-{attempt}", metadata=pb.ContainerMetadata(name=name, attempt=attempt),
                            state=state, created_at=NOW - 5_000_000_000, image_ref="sha256:abc")
    if state in (pb.CONTAINER_RUNNING, pb.CONTAINER_EXITED):
        st.started_at = NOW - 4_000_000_000
    if state == pb.CONTAINER_EXITED:
        st.finished_at = NOW - 1_000_000_000
        st.exit_code = exit_code
        st.reason = reason or ("Completed" if exit_code == 0 else "Error")
    return st


def validate(status: dict[str, Any], p: dict[str, Any]) -> Any:
    # The official client's deserializer rejects anything off the upstream schema.
    return k8s.ApiClient()._ApiClient__deserialize({**p, "status": status}, "V1Pod")  # type: ignore[attr-defined]


def test_running_pod() -> None:
    p = pod(["a", "b"])
    rt = PodRuntimeState(sandbox_ip="10.1.0.2", sandbox_ready=True,
                         containers={"a": [cs("a", pb.CONTAINER_RUNNING)], "b": [cs("b", pb.CONTAINER_RUNNING)]})
    st = pod_status(p, rt, "192.0.2.1")
    assert st["phase"] == "Running" and st["qosClass"] == "BestEffort"
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {"PodScheduled": "True", "Initialized": "True", "ContainersReady": "True",
                     "Ready": "True", "PodReadyToStartContainers": "True"}
    v1 = validate(st, p)
    assert v1.status.pod_ip == "10.1.0.2" and v1.status.host_ip == "192.0.2.1"
    a = v1.status.container_statuses[0]
    assert a.ready and a.started and a.container_id == "timonel://a-0" and a.image_id == "sha256:abc"
    assert a.state.running.started_at is not None


def test_conditions_keep_transition_times() -> None:
    p = pod(["a"])
    rt = PodRuntimeState(sandbox_ready=True, containers={"a": [cs("a", pb.CONTAINER_RUNNING)]})
    first = pod_status(p, rt, "h")
    for c in first["conditions"]:
        c["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    again = pod_status({**p, "status": first}, rt, "h")
    assert all(c["lastTransitionTime"] == "2020-01-01T00:00:00Z" for c in again["conditions"])
    assert again == first


def test_crash_loop_back_off_keeps_last_state() -> None:
    p = pod(["a"])
    rt = PodRuntimeState(sandbox_ready=True, containers={
        "a": [cs("a", pb.CONTAINER_EXITED, attempt=1, exit_code=1), cs("a", pb.CONTAINER_EXITED, 0, 1)]},
        waiting={"a": Waiting("CrashLoopBackOff", "back-off 10s restarting failed container=a")})
    st = pod_status(p, rt, "h")
    a = st["containerStatuses"][0]
    assert a["state"] == {"waiting": {"reason": "CrashLoopBackOff",
                                      "message": "back-off 10s restarting failed container=a"}}
    assert a["lastState"]["terminated"]["exitCode"] == 1 and a["restartCount"] == 1
    assert st["phase"] == "Running"  # restarting under Always
    assert {c["type"]: c.get("reason") for c in st["conditions"]}["Ready"] == "ContainersNotReady"
    validate(st, p)


@pytest.mark.parametrize(("policy", "codes", "phase"), [
    ("Never", [0, 0], "Succeeded"), ("Never", [0, 1], "Failed"), ("OnFailure", [0, 0], "Succeeded"),
    ("OnFailure", [0, 1], "Running"), ("Always", [0, 0], "Running"),
])
def test_phase_of_finished_containers(policy: str, codes: list[int], phase: str) -> None:
    p = pod(["a", "b"], policy=policy)
    rt = PodRuntimeState(containers={n: [cs(n, pb.CONTAINER_EXITED, exit_code=c)]
                                     for n, c in zip(["a", "b"], codes, strict=True)})
    st = pod_status(p, rt, "h")
    assert st["phase"] == phase
    validate(st, p)


def test_init_containers_gate_the_others() -> None:
    p = pod(["main"], inits=["one", "two"])
    rt = PodRuntimeState(sandbox_ready=True, containers={"one": [cs("one", pb.CONTAINER_EXITED)],
                                                         "two": [cs("two", pb.CONTAINER_RUNNING)]})
    st = pod_status(p, rt, "h")
    assert st["phase"] == "Pending"
    init = {s["name"]: s for s in st["initContainerStatuses"]}
    assert init["one"]["state"]["terminated"]["reason"] == "Completed" and init["one"]["ready"]
    assert "running" in init["two"]["state"]
    main = st["containerStatuses"][0]
    assert main["state"] == {"waiting": {"reason": "PodInitializing"}} and main["imageID"] == ""
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Initialized"]["status"] == "False"
    assert conds["Initialized"]["message"] == "containers with incomplete status: [two]"
    validate(st, p)


def test_failed_init_container_fails_a_never_pod() -> None:
    p = pod(["main"], inits=["one"], policy="Never")
    rt = PodRuntimeState(containers={"one": [cs("one", pb.CONTAINER_EXITED, exit_code=3)]})
    assert pod_status(p, rt, "h")["phase"] == "Failed"


def test_terminal_phase_is_kept() -> None:
    p = pod(["a"], policy="Never")
    p["status"] = {"phase": "Succeeded"}
    assert pod_status(p, PodRuntimeState(), "h")["phase"] == "Succeeded"


def test_waiting_reason_without_container() -> None:
    p = pod(["a"])
    rt = PodRuntimeState(waiting={"a": Waiting("CreateContainerConfigError", 'secret "s" not found')})
    st = pod_status(p, rt, "h")
    assert st["containerStatuses"][0]["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    assert st["phase"] == "Pending"
    validate(st, p)


def test_host_network_pod_has_the_node_address() -> None:
    p = pod(["a"])
    p["spec"]["hostNetwork"] = True
    rt = PodRuntimeState(sandbox_ready=True, containers={"a": [cs("a", pb.CONTAINER_RUNNING)]})
    st = pod_status(p, rt, "192.0.2.9")
    assert st["podIP"] == "192.0.2.9" and st["podIPs"] == [{"ip": "192.0.2.9"}]
