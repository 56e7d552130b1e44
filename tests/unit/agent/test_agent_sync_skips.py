"""The agent's two ways of not syncing a pod again for news it made itself.

A burst of pod starts paid a second full sync per pod: for the watch's echo of
the status the agent had just written, and for the containers its own sync had
just started. Both skips must stay narrow: any other change still syncs.
"""

from __future__ import annotations

import copy
from typing import Any

from timonel.node_agent.agent.agent import _own_status_echo
from timonel.node_agent.agent.pods import runtime_print
from timonel.node_agent.agent.status import PodRuntimeState
from timonel.node_agent.runtime.api import runtime_pb2 as pb

Obj = dict[str, Any]


def _pod(status: Obj, rv: str = "1") -> Obj:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": rv,
                         "labels": {"app": "a"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": status}


RUNNING = {"phase": "Running", "podIP": "10.0.0.2",
           "conditions": [{"type": "Ready", "status": "True"}]}


def test_echo_of_our_own_status_is_skipped() -> None:
    old = _pod({"phase": "Pending"}, rv="1")
    new = _pod(copy.deepcopy(RUNNING), rv="2")
    new["metadata"]["managedFields"] = [{"manager": "timonel-agent"}]
    assert _own_status_echo(old, new, {"u1": copy.deepcopy(RUNNING)})


def test_any_other_update_syncs() -> None:
    written = {"u1": copy.deepcopy(RUNNING)}
    old = _pod({"phase": "Pending"})
    # a status someone else wrote (or ours not yet recorded)
    assert not _own_status_echo(old, _pod({"phase": "Running", "podIP": "10.0.0.9"}, "2"), written)
    assert not _own_status_echo(old, _pod(copy.deepcopy(RUNNING), "2"), {})
    # our status, but the spec, labels or deletion changed in the same update
    for change in (lambda p: p["spec"]["containers"][0].update(image="other"),
                   lambda p: p["metadata"]["labels"].update(app="b"),
                   lambda p: p["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z")):
        new = _pod(copy.deepcopy(RUNNING), "2")
        change(new)
        assert not _own_status_echo(old, new, written), new
    # a terminal phase syncs even when it is ours: that pass stops the sandbox
    done = {"phase": "Succeeded"}
    assert not _own_status_echo(old, _pod(dict(done), "2"), {"u1": dict(done)})


def _status(cid: str, name: str, state: int, attempt: int = 0) -> pb.ContainerStatus:
    return pb.ContainerStatus(id=cid, state=state,  # type: ignore[arg-type]
                              metadata=pb.ContainerMetadata(name=name, attempt=attempt))


def test_runtime_print_matches_the_sync_pass_fingerprint() -> None:
    # The pass fingerprints a pod as the sorted (id, state) pairs of its sandboxes and
    # containers from ListPodSandbox/ListContainers; the print must be the same tuple.
    state = PodRuntimeState(sandbox_ready=True, sandbox_ip="10.0.0.2")
    state.containers = {"c": [_status("c2", "c", pb.CONTAINER_RUNNING, 1), _status("c1", "c", pb.CONTAINER_EXITED)],
                        "d": [_status("d1", "d", pb.CONTAINER_RUNNING)]}
    listed = [("sb1", pb.SANDBOX_READY), ("d1", pb.CONTAINER_RUNNING), ("c1", pb.CONTAINER_EXITED),
              ("c2", pb.CONTAINER_RUNNING)]
    assert runtime_print("sb1", state) == tuple(sorted(listed))
    # a sandbox that is not ready, or a container in another state, is another print
    assert runtime_print("sb1", PodRuntimeState(sandbox_ready=False)) == (("sb1", pb.SANDBOX_NOTREADY),)
    state.containers["d"] = [_status("d1", "d", pb.CONTAINER_EXITED)]
    assert runtime_print("sb1", state) != tuple(sorted(listed))
