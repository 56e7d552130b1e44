"""Fake nodes for control-plane tests, like kwok: Node objects whose pods are
marked Running and Ready by this helper instead of a real node agent.

    async with FakeNodes(client, ["n1", "n2"], cpu="4", memory="8Gi") as nodes:
        ...                     # pods bound to n1/n2 become Running/Ready
        await nodes.stop_heartbeat("n2")   # its Lease stops being renewed
        nodes.fail_pods = {"web-123"}      # these pods end with exit code 1
        # ...as do Never/OnFailure pods labelled fake/fail: "true"; those
        # labelled fake/complete: "true" end with exit code 0.

Deletion of pods on fake nodes completes like a kubelet would: a pod marked
with deletionTimestamp is finally deleted with grace period 0.

Pod events are handled one at a time unless `parallel=True`: then each gets
its own task, as 100 real kubelets would write at once (bench/controller_perf.py
measures the control plane, not this helper's round trips).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any

from timonel.api import meta
from timonel.api.client import Client
from timonel.api.errors import ApiError

PODS = ("v1", "Pod")
NODES = ("v1", "Node")
LEASES = ("coordination.k8s.io/v1", "Lease")


def node_object(name: str, cpu: str, memory: str, pods: str, labels: dict[str, str] | None,
                taints: list[dict[str, Any]] | None) -> dict[str, Any]:
    now = meta.now()
    cap = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                               "kubernetes.io/os": "linux",
                                               "kubernetes.io/arch": "amd64",
                                               "type": "fake", **(labels or {})}},
        "spec": {"taints": taints or []},
        "status": {
            "capacity": cap, "allocatable": cap,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "fake node is ready", "lastHeartbeatTime": now,
                            "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                          {"type": "Hostname", "address": name}],
            "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux",
                         "kubeletVersion": "v1.37.0-fake", "containerRuntimeVersion": "fake://0",
                         "kernelVersion": "", "osImage": "fake", "kubeProxyVersion": "",
                         "machineID": "", "systemUUID": "", "bootID": ""},
        },
    }


class FakeNodes:
    def __init__(self, client: Client, names: list[str], *, cpu: str = "4", memory: str = "8Gi",
                 pods: str = "110", labels: dict[str, dict[str, str]] | None = None,
                 taints: dict[str, list[dict[str, Any]]] | None = None,
                 heartbeat_seconds: float = 2.0, parallel: bool = False) -> None:
        self.client = client
        self.names = list(names)
        self.spec = (cpu, memory, pods)
        self.labels = labels or {}
        self.taints = taints or {}
        self.heartbeat_seconds = heartbeat_seconds
        self.parallel = parallel
        self._inflight: set[asyncio.Task[None]] = set()
        self.fail_pods: set[str] = set()
        self._heartbeats: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ips = itertools.count(2)

    async def __aenter__(self) -> FakeNodes:
        for name in self.names:
            await self.add_node(name)
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for t in [*self._heartbeats.values(), *([self._task] if self._task else []),
                  *self._inflight]:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._heartbeats.clear()

    async def add_node(self, name: str) -> None:
        cpu, memory, pods = self.spec
        body = node_object(name, cpu, memory, pods, self.labels.get(name), self.taints.get(name))
        try:
            await self.client.create(NODES, body)
        except ApiError as e:
            if e.code != 409:
                raise
        if name not in self.names:
            self.names.append(name)
        self._heartbeats[name] = asyncio.create_task(self._heartbeat(name))

    async def stop_heartbeat(self, name: str) -> None:
        task = self._heartbeats.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def resume_heartbeat(self, name: str) -> None:
        """A kubelet coming back: post Ready=True again, then renew the Lease."""
        node = await self.client.get(NODES, "", name)
        now = meta.now()
        conds = [c for c in (node.get("status") or {}).get("conditions") or []
                 if c.get("type") != "Ready"]
        conds.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                      "message": "fake node is ready", "lastHeartbeatTime": now,
                      "lastTransitionTime": now})
        await self.client.patch(NODES, "", name, {"status": {"conditions": conds}},
                                patch_type="merge", subresource="status")
        if name not in self._heartbeats:
            self._heartbeats[name] = asyncio.create_task(self._heartbeat(name))

    async def _heartbeat(self, name: str) -> None:
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": name, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                          "renewTime": meta.now_micro()}}
        while True:
            try:
                try:
                    await self.client.patch(LEASES, "kube-node-lease", name,
                                            {"spec": {"renewTime": meta.now_micro()}},
                                            patch_type="merge")
                except ApiError as e:
                    if e.code != 404:
                        raise
                    await self.client.create(LEASES, lease, namespace="kube-node-lease")
            except (ApiError, ConnectionError):
                pass
            await asyncio.sleep(self.heartbeat_seconds)

    async def _run(self) -> None:
        async for etype, pod in self._watch_pods():
            node = (pod.get("spec") or {}).get("nodeName")
            if node not in self._heartbeats or etype == "DELETED":
                continue
            if self.parallel:
                task = asyncio.create_task(self._reconcile_quietly(pod))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            else:
                await self._reconcile_quietly(pod)

    async def _reconcile_quietly(self, pod: dict[str, Any]) -> None:
        try:
            await self._reconcile(pod)
        except (ApiError, ConnectionError):
            pass

    async def _watch_pods(self):  # type: ignore[no-untyped-def]
        rv = ""
        while True:
            try:
                if not rv:
                    lst = await self.client.list(PODS)
                    rv = lst["metadata"]["resourceVersion"]
                    for p in lst["items"]:
                        yield "ADDED", p
                async for etype, obj in self.client.watch(PODS, resource_version=rv,
                                                          timeout_seconds=300):
                    if etype == "BOOKMARK":
                        rv = obj["metadata"]["resourceVersion"]
                        continue
                    rv = obj["metadata"]["resourceVersion"]
                    yield etype, obj
            except ApiError as e:
                if e.code == 410:
                    rv = ""
            except ConnectionError:
                await asyncio.sleep(0.5)

    async def _reconcile(self, pod: dict[str, Any]) -> None:
        md, spec = pod["metadata"], pod.get("spec") or {}
        ns, name = md["namespace"], md["name"]
        if md.get("deletionTimestamp"):
            with contextlib.suppress(ApiError):
                await self.client.delete(PODS, ns, name, grace_period_seconds=0)
            return
        status = pod.get("status") or {}
        if status.get("phase") in ("Running", "Succeeded", "Failed"):
            return
        now = meta.now()
        failed = name in self.fail_pods or md.get("labels", {}).get("fake/fail") == "true"
        finishes = spec.get("restartPolicy") in ("Never", "OnFailure") and (
            failed or md.get("labels", {}).get("fake/complete") == "true")
        containers = spec.get("containers") or []
        if finishes:
            phase = "Failed" if failed else "Succeeded"
            state = {"terminated": {"exitCode": 1 if failed else 0,
                                    "reason": "Error" if failed else "Completed",
                                    "startedAt": now, "finishedAt": now}}
            ready = False
        else:
            phase, ready = "Running", True
            state = {"running": {"startedAt": now}}
        cond = "True" if ready else "False"
        new_status = {
            "phase": phase, "hostIP": "127.0.0.1", "podIP": f"10.244.0.{next(self._ips) % 250 + 2}",
            "startTime": now, "qosClass": status.get("qosClass", "BestEffort"),
            "conditions": [
                {"type": t, "status": "True" if t in ("PodScheduled", "Initialized") else cond,
                 "lastProbeTime": None, "lastTransitionTime": now}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [
                {"name": c["name"], "image": c.get("image", ""), "imageID": f"fake://{c.get('image', '')}",
                 "containerID": f"fake://{ns}/{name}/{c['name']}", "ready": ready, "started": ready,
                 "restartCount": 0, "state": state, "lastState": {}}
                for c in containers],
        }
        new_status["podIPs"] = [{"ip": new_status["podIP"]}]
        await self.client.patch(PODS, ns, name, {"status": new_status}, patch_type="merge",
                                subresource="status")
