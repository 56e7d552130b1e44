"""The StatefulSet controller against a real API server with fake nodes:
OrderedReady creates pod i+1 only after pod i is Ready and scales down from
the highest ordinal one at a time; rolling updates go in reverse ordinal
order and stop at the partition; Parallel creates everything at once."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import ApiServer
from tests.integration.controller.workload_helpers import (
    Binder,
    PodLog,
    events_for,
    eventually,
    has_event,
    make_context,
    never,
    new_namespace,
    private_server,  # noqa: F401 (fixture)
    running,
)
from tests.integration.fakenodes import PODS, FakeNodes
from timonel.api.client import Client
from timonel.controller import statefulset

STS = ("apps/v1", "StatefulSet")
PVCS = ("v1", "PersistentVolumeClaim")
NODE_NAMES = ["sts-n1", "sts-n2"]


def sts_obj(name: str, replicas: int, policy: str = "OrderedReady") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "serviceName": name, "podManagementPolicy": policy,
                     "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "db:1"}]}},
                     "volumeClaimTemplates": [{
                         "metadata": {"name": "data"},
                         "spec": {"accessModes": ["ReadWriteOnce"],
                                  "resources": {"requests": {"storage": "1Gi"}}}}]}}


async def sts_status(client: Client, ns: str, name: str, **want: Any) -> dict[str, Any] | None:
    sts = await client.get(STS, ns, name)
    st = sts.get("status") or {}
    if st.get("observedGeneration") != sts["metadata"]["generation"]:
        return None
    return sts if all(st.get(k, 0) == v for k, v in want.items()) else None


async def test_ordered_ready_scale_and_rolling_update(private_server: ApiServer) -> None:  # noqa: F811
    async with Client.from_kubeconfig(private_server.kubeconfig) as client, \
            FakeNodes(client, NODE_NAMES, heartbeat_seconds=5):
        ns = await new_namespace(client, "sts")
        ctx = make_context(client, "statefulset-controller")
        async with running(ctx, statefulset.run), PodLog(client, ns, "web") as plog:
            await client.create(STS, sts_obj("web", 3), namespace=ns)

            async def pod(name: str) -> dict[str, Any]:
                return await client.get(PODS, ns, name)

            await eventually(lambda: pod("web-0"), what="web-0 created")
            # No scheduler yet: web-0 stays Pending, so web-1 must not appear.
            await never(lambda: "web-1" in plog.pods, 2.0, "web-1 before web-0 was ready")
            async with Binder(client, NODE_NAMES):
                sts = await eventually(lambda: sts_status(client, ns, "web", replicas=3,
                                                          readyReplicas=3, availableReplicas=3),
                                       timeout=60, what="3 ready replicas")
                assert not plog.violations, plog.violations
                assert [e for e in plog.log if e[0] == "created"] == [
                    ("created", "web-0"), ("created", "web-1"), ("created", "web-2")]
                st = sts["status"]
                assert st["currentRevision"] == st["updateRevision"]
                assert st["currentRevision"].startswith("web-")
                assert st["currentReplicas"] == 3 and st["updatedReplicas"] == 3
                p1 = await pod("web-1")
                labels = p1["metadata"]["labels"]
                assert labels["statefulset.kubernetes.io/pod-name"] == "web-1"
                assert labels["apps.kubernetes.io/pod-index"] == "1"
                assert labels["controller-revision-hash"] == st["currentRevision"]
                assert p1["spec"]["hostname"] == "web-1" and p1["spec"]["subdomain"] == "web"
                vol = next(v for v in p1["spec"]["volumes"] if v["name"] == "data")
                assert vol["persistentVolumeClaim"]["claimName"] == "data-web-1"
                claims = {c["metadata"]["name"] for c in (await client.list(PVCS, ns))["items"]}
                assert claims == {"data-web-0", "data-web-1", "data-web-2"}
                assert has_event(await events_for(client, ns, "web"), "SuccessfulCreate",
                                 "create Pod web-2 in StatefulSet web successful")

                # Scale down: highest ordinal first, one at a time.
                await client.patch(STS, ns, "web", {"spec": {"replicas": 1}})
                await eventually(lambda: sts_status(client, ns, "web", replicas=1,
                                                    readyReplicas=1),
                                 timeout=60, what="scaled down to 1")
                assert plog.first("terminating", "web-2") < plog.first("terminating", "web-1")
                assert plog.first("deleted", "web-2") < plog.first("terminating", "web-1")
                claims = {c["metadata"]["name"] for c in (await client.list(PVCS, ns))["items"]}
                assert "data-web-2" in claims  # claims are retained

                await client.patch(STS, ns, "web", {"spec": {"replicas": 3}})
                await eventually(lambda: sts_status(client, ns, "web", replicas=3,
                                                    readyReplicas=3),
                                 timeout=60, what="scaled back to 3")

                # Rolling update: web-2, then web-1, then web-0.
                old_rev = (await client.get(STS, ns, "web"))["status"]["currentRevision"]
                mark = len(plog.log)
                await client.patch(STS, ns, "web", {"spec": {"template": {"spec": {
                    "containers": [{"name": "c", "image": "db:2"}]}}}})

                async def rolled() -> dict[str, Any] | None:
                    s = await sts_status(client, ns, "web", replicas=3, readyReplicas=3,
                                         updatedReplicas=3)
                    return s if s and s["status"]["currentRevision"] != old_rev else None

                sts = await eventually(rolled, timeout=60, what="rolled to db:2")
                order = [n for e, n in plog.log[mark:] if e == "terminating"]
                assert order == ["web-2", "web-1", "web-0"], order
                assert sts["status"]["currentRevision"] == sts["status"]["updateRevision"]
                for n in ("web-0", "web-1", "web-2"):
                    assert (await pod(n))["spec"]["containers"][0]["image"] == "db:2"

                # Partition 2: only web-2 moves to the next template.
                mid_rev = sts["status"]["currentRevision"]
                await client.patch(STS, ns, "web", {"spec": {
                    "updateStrategy": {"rollingUpdate": {"partition": 2}},
                    "template": {"spec": {"containers": [{"name": "c", "image": "db:3"}]}}}})

                async def partitioned() -> dict[str, Any] | None:
                    s = await sts_status(client, ns, "web", replicas=3, readyReplicas=3,
                                         updatedReplicas=1)
                    if s is None:
                        return None
                    img = (await pod("web-2"))["spec"]["containers"][0]["image"]
                    return s if img == "db:3" else None

                sts = await eventually(partitioned, timeout=60, what="web-2 on db:3")
                await never(lambda: _image_of(client, ns, "web-1", "db:3"), 1.5,
                            "web-1 updated below the partition")
                assert (await pod("web-0"))["spec"]["containers"][0]["image"] == "db:2"
                st = sts["status"]
                assert st["currentRevision"] == mid_rev != st["updateRevision"]


async def _image_of(client: Client, ns: str, name: str, image: str) -> bool:
    p = await client.get(PODS, ns, name)
    return p["spec"]["containers"][0]["image"] == image


async def test_parallel_creates_all_at_once(private_server: ApiServer) -> None:  # noqa: F811
    async with Client.from_kubeconfig(private_server.kubeconfig) as client:
        ns = await new_namespace(client, "sts")
        ctx = make_context(client, "statefulset-controller")
        async with running(ctx, statefulset.run):
            await client.create(STS, sts_obj("par", 3, policy="Parallel"), namespace=ns)

            async def all_three() -> bool:
                names = {p["metadata"]["name"] for p in (await client.list(PODS, ns))["items"]}
                return names == {"par-0", "par-1", "par-2"}

            # Nothing binds these pods, so none is ever ready: Parallel does not wait.
            await eventually(all_three, what="all three pods without waiting")
            await eventually(lambda: sts_status(client, ns, "par", replicas=3, readyReplicas=0),
                             what="status of 3 unready replicas")
            await client.patch(STS, ns, "par", {"spec": {"replicas": 0}})

            async def none_left() -> bool:
                return not (await client.list(PODS, ns))["items"]

            await eventually(none_left, what="parallel scale down to 0")
