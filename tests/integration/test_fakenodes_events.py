"""The test helpers other control-plane tests build on: fake nodes and events."""

from __future__ import annotations

import asyncio

from tests.integration.conftest import ApiServer
from tests.integration.fakenodes import PODS, FakeNodes
from timonel.api.client import Client
from timonel.api.client.events import EventRecorder


async def wait_for(fn, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fn()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


async def test_fake_nodes_run_pods_and_finish_deletes(api_server: ApiServer, namespace: str) -> None:
    async with Client.from_kubeconfig(api_server.kubeconfig) as client, FakeNodes(client, ["fake-a"]):
        node = await client.get(("v1", "Node"), "", "fake-a")
        assert node["status"]["allocatable"]["cpu"] == "4"
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
               "spec": {"nodeName": "fake-a", "containers": [{"name": "c", "image": "x"}]}}
        await client.create(PODS, pod, namespace=namespace)

        async def running():  # type: ignore[no-untyped-def]
            p = await client.get(PODS, namespace, "p")
            return p["status"].get("phase") == "Running" and p

        p = await wait_for(running)
        assert [c["type"] for c in p["status"]["conditions"] if c["status"] == "True"] == [
            "PodScheduled", "Initialized", "ContainersReady", "Ready"]
        lease = await wait_for(lambda: client.get(("coordination.k8s.io/v1", "Lease"),
                                                  "kube-node-lease", "fake-a"))
        assert lease["spec"]["holderIdentity"] == "fake-a"
        await client.delete(PODS, namespace, "p")

        async def gone():  # type: ignore[no-untyped-def]
            lst = await client.list(PODS, namespace)
            return not lst["items"]

        await wait_for(gone)


async def test_event_recorder_counts_repeats(api_server: ApiServer, namespace: str) -> None:
    async with Client.from_kubeconfig(api_server.kubeconfig) as client:
        cm = await client.create(("v1", "ConfigMap"), {"apiVersion": "v1", "kind": "ConfigMap",
                                                       "metadata": {"name": "c"}, "data": {}},
                                 namespace=namespace)
        rec = EventRecorder(client, "test-controller")
        for _ in range(3):
            await rec.event(cm, "Normal", "Poked", "poked the config map")
        await rec.event(cm, "Warning", "Broken", "something else")
        events = (await client.list(("v1", "Event"), namespace))["items"]
        by_reason = {e["reason"]: e for e in events}
        assert by_reason["Poked"]["count"] == 3 and by_reason["Broken"]["count"] == 1
        assert by_reason["Poked"]["involvedObject"]["uid"] == cm["metadata"]["uid"]
        assert by_reason["Poked"]["source"]["component"] == "test-controller"
