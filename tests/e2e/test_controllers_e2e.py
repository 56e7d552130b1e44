"""The controllers end to end on `timonel up`, with real containers.

The same behaviour tests/integration/controller/ checks with fake nodes, here
with the real scheduler, controllers, node agent and runtime, driven by the
real kubectl: Deployments scale, roll out within maxSurge/maxUnavailable at
every pod event and roll back; a deleted pod is replaced; the three cascading
deletion modes; a node that stops heartbeating has its pods recreated on the
real node; a deleted namespace leaves nothing in the API nor on the host; a
failing Job stops at its backoffLimit; a StatefulSet starts and stops in
ordinal order. "Running" always means a running container in the runtime
too, not only a status in the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from tests.e2e.conftest import UpCluster
from tests.integration.controller import helpers
from tests.integration.controller.helpers import (
    DEPLOYMENTS,
    PODS,
    REPLICASETS,
    Bounds,
    PodWatch,
    deployment_done,
    gone,
    names,
)
from tests.integration.controller.workload_helpers import (
    PodLog,
    eventually,
    is_ready,
    never,
    new_namespace,
)
from tests.integration.fakenodes import NODES, FakeNodes
from timonel.api import meta
from timonel.api.client import Client
from timonel.api.errors import ApiError
from timonel.api.resources import RESOURCES
from timonel.node_agent.agent.containers import POD_NAMESPACE, POD_UID
from timonel.node_agent.runtime.api import runtime_pb2 as pb
from timonel.node_agent.runtime.client import RuntimeClient

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root: timonel up runs the "
                                 "runtime, which creates namespaces, cgroups and mounts"),
              pytest.mark.timeout(600)]

REVISION = "deployment.kubernetes.io/revision"
HASH = "pod-template-hash"
STS = ("apps/v1", "StatefulSet")
JOBS = ("batch/v1", "Job")
# Generous: a loaded two-core CI machine starting real containers.
TIMEOUT = 150.0


# ---- objects ----------------------------------------------------------------

def pod_spec(command: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """busybox from DIR/images (never pulled); a 1 s grace period keeps
    terminations, and so the suite, short."""
    return {"terminationGracePeriodSeconds": 1,
            "containers": [{"name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                            "command": command or ["sleep", "3600"]}],
            **extra}


def web_pod() -> dict[str, Any]:
    """busybox httpd, Ready only once its readiness probe gets a page: the
    rollout's availability is then the agent's probing, not just a start."""
    spec = pod_spec(["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && "
                                 "exec httpd -f -p 8080 -h /www"])
    spec["containers"][0]["readinessProbe"] = {
        "httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1}
    return spec


def deployment(name: str, namespace: str, replicas: int, pod: dict[str, Any] | None = None,
               **spec: Any) -> dict[str, Any]:
    """helpers.deployment (as the fake-node tests use it) in `namespace`,
    running `pod` (default: sleep)."""
    d = helpers.deployment(name, replicas, **spec)
    d["metadata"]["namespace"] = namespace
    d["spec"]["template"]["spec"] = pod or pod_spec()
    return d


# ---- the cluster, the host, kubectl -----------------------------------------

class Host:
    """What really runs on the node, as the runtime reports it."""

    def __init__(self, socket: str) -> None:
        self.rt = RuntimeClient(socket, timeout=30)

    def containers(self, namespace: str) -> list[pb.Container]:
        return self.rt.list_containers(pb.ContainerFilter(label_selector={POD_NAMESPACE: namespace}))

    def sandboxes(self, namespace: str) -> list[pb.PodSandbox]:
        return self.rt.list_sandboxes(pb.PodSandboxFilter(label_selector={POD_NAMESPACE: namespace}))

    def running_uids(self, namespace: str) -> set[str]:
        return {c.labels[POD_UID] for c in self.containers(namespace)
                if c.state == pb.CONTAINER_RUNNING}

    def uids(self, namespace: str) -> set[str]:
        """Pods that still have anything on the host: a container or a sandbox."""
        return {c.labels[POD_UID] for c in self.containers(namespace)} | \
            {s.labels[POD_UID] for s in self.sandboxes(namespace)}


@pytest.fixture(scope="module")
def host(up_cluster: UpCluster) -> Iterator[Host]:
    h = Host(up_cluster.runtime_socket)
    yield h
    h.rt.close()


@pytest.fixture
async def client(up_cluster: UpCluster) -> AsyncIterator[Client]:
    async with Client.from_kubeconfig(up_cluster.kubeconfig) as c:
        yield c


async def kubectl(up: UpCluster, *args: str, obj: dict[str, Any] | list[dict[str, Any]] | None = None,
                  timeout: float = TIMEOUT + 30) -> str:
    """The real kubectl, in a thread: the watches checking invariants keep
    reading meanwhile. Returns its standard output; fails the test on error."""
    stdin = None
    if obj is not None:
        items = obj if isinstance(obj, list) else [obj]
        stdin = "\n---\n".join(json.dumps(o) for o in items)
    r: subprocess.CompletedProcess[str] = await asyncio.to_thread(
        up.kubectl, *args, input=stdin, check=False, timeout=timeout)
    assert r.returncode == 0, f"kubectl {' '.join(args)} failed ({r.returncode}): {r.stderr}"
    return r.stdout


async def really_running(client: Client, host: Host, namespace: str, selector: str, count: int,
                         node: str = "") -> list[dict[str, Any]] | None:
    """Exactly `count` live pods matching `selector`, each Running and Ready in
    the API and with a running container in the runtime (on `node`, if given)."""
    pods = [p for p in (await client.list(PODS, namespace, label_selector=selector))["items"]
            if not p["metadata"].get("deletionTimestamp")]
    if len(pods) != count:
        return None
    running = host.running_uids(namespace)
    for p in pods:
        if (p.get("status") or {}).get("phase") != "Running" or not is_ready(p):
            return None
        if p["metadata"]["uid"] not in running or (node and p["spec"].get("nodeName") != node):
            return None
    return pods


async def host_matches_api(client: Client, host: Host, namespace: str) -> bool:
    """Nothing on the host for a pod the API no longer has (terminations done)."""
    uids = {p["metadata"]["uid"] for p in (await client.list(PODS, namespace))["items"]}
    return host.uids(namespace) <= uids


# ---- Deployments --------------------------------------------------------------

async def test_deployment_scales_rolls_out_within_bounds_and_undoes(
        up_cluster: UpCluster, host: Host, client: Client) -> None:
    up = up_cluster
    ns = await new_namespace(client, "e2e-deploy")
    bounds = Bounds()
    async with PodWatch(client, ns, bounds) as watch:
        await kubectl(up, "apply", "-f", "-",
                      obj=deployment("web", ns, 3, web_pod(), max_surge=1, max_unavailable=1))
        out = await kubectl(up, "-n", ns, "rollout", "status", "deployment/web", "--timeout=150s")
        assert 'deployment "web" successfully rolled out' in out, out
        await eventually(lambda: deployment_done(client, ns, "web", 3), TIMEOUT, "3 available")
        await eventually(lambda: really_running(client, host, ns, "app=web", 3), TIMEOUT,
                         "3 pods running in the runtime")
        (rs1,) = (await client.list(REPLICASETS, ns))["items"]

        # Scale to 10 and back.
        await kubectl(up, "-n", ns, "scale", "deployment/web", "--replicas=10")
        await eventually(lambda: deployment_done(client, ns, "web", 10), TIMEOUT, "10 available")
        await eventually(lambda: really_running(client, host, ns, "app=web", 10), TIMEOUT,
                         "10 pods running in the runtime")
        await kubectl(up, "-n", ns, "scale", "deployment/web", "--replicas=3")
        await eventually(lambda: deployment_done(client, ns, "web", 3), TIMEOUT, "back to 3")
        await eventually(lambda: really_running(client, host, ns, "app=web", 3), TIMEOUT,
                         "3 pods running in the runtime")
        await eventually(lambda: host_matches_api(client, host, ns), TIMEOUT,
                         "the 7 scaled-down pods gone from the host")
        assert len(watch.created) == 10

        # A template change: never under 3-1 available nor over 3+1 pods.
        bounds.arm(lo=2, hi=4)
        await kubectl(up, "-n", ns, "set", "env", "deployment/web", "ROUND=2")
        out = await kubectl(up, "-n", ns, "rollout", "status", "deployment/web", "--timeout=150s")
        assert "successfully rolled out" in out, out
        await eventually(lambda: really_running(client, host, ns, "app=web", 3), TIMEOUT,
                         "3 new pods running in the runtime")
        assert not watch.errors, watch.errors
        assert bounds.seen_hi >= 3 and bounds.seen_lo <= 3, "the bounds were checked"
        assert len(watch.created) == 13
        d = await client.get(DEPLOYMENTS, ns, "web")
        assert d["metadata"]["annotations"][REVISION] == "2"
        for p in await really_running(client, host, ns, "app=web", 3) or []:
            assert p["metadata"]["labels"][HASH] != rs1["metadata"]["labels"][HASH]
            assert p["spec"]["containers"][0]["env"] == [{"name": "ROUND", "value": "2"}]

        # Undo: the first ReplicaSet again (revision 3), within the same bounds.
        out = await kubectl(up, "-n", ns, "rollout", "undo", "deployment/web")
        assert "rolled back" in out, out
        out = await kubectl(up, "-n", ns, "rollout", "status", "deployment/web", "--timeout=150s")
        assert "successfully rolled out" in out, out

        async def first_template_only() -> list[dict[str, Any]] | None:
            pods = await really_running(client, host, ns, "app=web", 3)
            if not pods or any(p["metadata"]["labels"][HASH] != rs1["metadata"]["labels"][HASH]
                               for p in pods):
                return None
            return pods if await host_matches_api(client, host, ns) else None

        await eventually(first_template_only, TIMEOUT, "only pods of the first ReplicaSet")
        assert not watch.errors, watch.errors
        assert len(watch.created) == 16
        d = await client.get(DEPLOYMENTS, ns, "web")
        assert d["metadata"]["annotations"][REVISION] == "3"
        rss = {r["metadata"]["name"]: r for r in (await client.list(REPLICASETS, ns))["items"]}
        assert len(rss) == 2, "undo reuses the first ReplicaSet"
        assert rss[rs1["metadata"]["name"]]["spec"]["replicas"] == 3


async def test_deleted_pod_is_replaced(up_cluster: UpCluster, host: Host, client: Client) -> None:
    up = up_cluster
    ns = await new_namespace(client, "e2e-replace")
    await kubectl(up, "apply", "-f", "-", obj=deployment("web", ns, 2))
    first = await eventually(lambda: really_running(client, host, ns, "app=web", 2), TIMEOUT,
                             "2 pods running")
    victim = first[0]["metadata"]
    await kubectl(up, "-n", ns, "delete", "pod", victim["name"])

    async def replaced() -> list[dict[str, Any]] | None:
        pods = await really_running(client, host, ns, "app=web", 2)
        if not pods or victim["name"] in {p["metadata"]["name"] for p in pods}:
            return None
        return pods if victim["uid"] not in host.uids(ns) else None

    pods = await eventually(replaced, TIMEOUT, "a replacement running, the deleted pod gone")
    assert first[1]["metadata"]["uid"] in {p["metadata"]["uid"] for p in pods}


# ---- cascading deletion ---------------------------------------------------------

async def test_cascading_deletion_background_foreground_orphan(
        up_cluster: UpCluster, host: Host, client: Client) -> None:
    up = up_cluster
    ns = await new_namespace(client, "e2e-cascade")
    await kubectl(up, "apply", "-f", "-",
                  obj=[deployment(n, ns, 2) for n in ("bg", "fg", "orph")])
    await eventually(lambda: really_running(client, host, ns, "app in (bg,fg,orph)", 6),
                     TIMEOUT, "2 pods of each running")

    # Background: the Deployment goes at once, then its ReplicaSet and pods,
    # and their containers.
    await kubectl(up, "-n", ns, "delete", "deployment", "bg", "--cascade=background",
                  "--wait=false")
    assert await gone(client, DEPLOYMENTS, ns, "bg")

    async def bg_collected() -> bool:
        return not await names(client, REPLICASETS, ns, "app=bg") and \
            not await names(client, PODS, ns, "app=bg") and \
            await host_matches_api(client, host, ns)

    await eventually(bg_collected, TIMEOUT, "bg's ReplicaSet, pods and containers collected")

    # Foreground: the Deployment stays, marked, until its pods and then its
    # ReplicaSet are gone.
    order: list[str] = []
    marked: list[dict[str, Any]] = []

    async def watch_foreground() -> None:
        while True:
            if not marked:
                with contextlib.suppress(ApiError):
                    d = await client.get(DEPLOYMENTS, ns, "fg")
                    if d["metadata"].get("deletionTimestamp"):
                        marked.append(d)
            if "pods" not in order and not await names(client, PODS, ns, "app=fg"):
                order.append("pods")
            if "replicaset" not in order and not await names(client, REPLICASETS, ns, "app=fg"):
                order.append("replicaset")
            if await gone(client, DEPLOYMENTS, ns, "fg"):
                order.append("deployment")
                return
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch_foreground())
    await kubectl(up, "-n", ns, "delete", "deployment", "fg", "--cascade=foreground",
                  "--wait=false")
    await asyncio.wait_for(watcher, TIMEOUT)
    assert order == ["pods", "replicaset", "deployment"], order
    assert marked, "the Deployment was never seen marked for deletion"
    assert "foregroundDeletion" in marked[0]["metadata"]["finalizers"], marked[0]["metadata"]
    await eventually(lambda: host_matches_api(client, host, ns), TIMEOUT,
                     "fg's containers gone from the host")

    # Orphan: the ReplicaSet lives on, unowned, its pods still running.
    before = await really_running(client, host, ns, "app=orph", 2)
    assert before
    (rs,) = (await client.list(REPLICASETS, ns, label_selector="app=orph"))["items"]
    await kubectl(up, "-n", ns, "delete", "deployment", "orph", "--cascade=orphan")
    assert await gone(client, DEPLOYMENTS, ns, "orph")

    async def orphaned() -> dict[str, Any] | None:
        cur = await client.get(REPLICASETS, ns, rs["metadata"]["name"])
        return None if cur["metadata"].get("ownerReferences") else cur

    await eventually(orphaned, TIMEOUT, "the ReplicaSet orphaned")
    # Orphan the pods too: the ReplicaSet goes, the pods keep running, unowned.
    await kubectl(up, "-n", ns, "delete", "replicaset", rs["metadata"]["name"],
                  "--cascade=orphan")
    assert await gone(client, REPLICASETS, ns, rs["metadata"]["name"])
    kept = {p["metadata"]["uid"] for p in before}

    async def disturbed() -> str:
        after = await really_running(client, host, ns, "app=orph", 2)
        if not after or {p["metadata"]["uid"] for p in after} != kept:
            return f"orphaned pods not all running: {after}"
        owned = [p["metadata"]["name"] for p in after if p["metadata"].get("ownerReferences")]
        return f"still owned: {owned}" if owned else ""

    await never(disturbed, 2.0, "an orphaned pod collected, replaced or still owned")


# ---- a node that dies ---------------------------------------------------------------

async def test_dead_node_pods_are_recreated_on_the_real_node(
        up_cluster: UpCluster, host: Host, client: Client) -> None:
    """A kwok-like fake node next to the real one: its pods run there until
    its heartbeat stops, then come back as real containers on the real node."""
    up = up_cluster
    ns = await new_namespace(client, "e2e-deadnode")
    fake = f"e2e-fake-{os.urandom(3).hex()}"
    short = [{"key": f"node.kubernetes.io/{k}", "operator": "Exists", "effect": "NoExecute",
              "tolerationSeconds": 1} for k in ("not-ready", "unreachable")]
    both = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [fake, up.node]}]}]}}}
    async with FakeNodes(client, [fake], heartbeat_seconds=1) as fakes:
        try:
            # The real node cordoned while the pods are placed: they all land on the fake one.
            await kubectl(up, "cordon", up.node)
            try:
                await kubectl(up, "apply", "-f", "-", obj=deployment(
                    "moved", ns, 2, pod=pod_spec(tolerations=short, affinity=both)))

                async def on_fake() -> list[dict[str, Any]] | None:
                    pods = (await client.list(PODS, ns, label_selector="app=moved"))["items"]
                    ok = [p for p in pods if p["spec"].get("nodeName") == fake and
                          (p.get("status") or {}).get("phase") == "Running"]
                    return ok if len(ok) == 2 else None

                first = await eventually(on_fake, TIMEOUT, "2 pods running on the fake node")
            finally:
                await kubectl(up, "uncordon", up.node)
            await fakes.stop_heartbeat(fake)

            async def not_ready() -> dict[str, Any] | None:
                node = await client.get(NODES, "", fake)
                cond = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
                return node if cond["status"] != "True" else None

            # The node monitor grace period (40 s upstream) runs first.
            node = await eventually(not_ready, TIMEOUT, "the fake node NotReady")
            cond = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
            assert cond["status"] == "Unknown" and cond["reason"] == "NodeStatusUnknown", cond
            out = await kubectl(up, "get", "node", fake, "--no-headers")
            assert out.split()[1] == "NotReady", out
            moved = await eventually(
                lambda: really_running(client, host, ns, "app=moved", 2, node=up.node), TIMEOUT,
                "2 replacements running as containers on the real node")
            assert not {p["metadata"]["name"] for p in moved} & \
                {p["metadata"]["name"] for p in first}
            for p in first:
                old = await client.get(PODS, ns, p["metadata"]["name"])
                assert old["metadata"].get("deletionTimestamp"), "evicted, left on the dead node"
            taints = (await client.get(NODES, "", fake))["spec"].get("taints") or []
            assert {"node.kubernetes.io/unreachable"} <= \
                {t["key"] for t in taints if t["effect"] == "NoExecute"}, taints
        finally:
            # Its pods go with it (force-deleted: no kubelet will finish them).
            try:
                await client.delete(NODES, "", fake)
            except ApiError as e:
                if e.code != 404:
                    raise


# ---- namespaces ----------------------------------------------------------------------

async def test_namespace_deletion_leaves_nothing_behind(
        up_cluster: UpCluster, host: Host, client: Client) -> None:
    up = up_cluster
    ns = await new_namespace(client, "e2e-nsdel")
    await kubectl(up, "apply", "-f", "-", obj=[
        deployment("web", ns, 2),
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bare", "namespace": ns,
                                                         "labels": {"app": "bare"}},
         "spec": pod_spec()},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": ns},
         "data": {"k": "v"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": ns},
         "stringData": {"k": "v"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": ns},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
    ])
    await eventually(lambda: really_running(client, host, ns, "app in (web,bare)", 3), TIMEOUT,
                     "3 pods running")
    assert len(host.sandboxes(ns)) == 3

    await kubectl(up, "delete", "namespace", ns, "--timeout=150s")
    assert await gone(client, ("v1", "Namespace"), "", ns)
    left: dict[str, list[Any]] = {}

    async def nothing_left() -> bool:
        # Events written after the controller's last pass go a moment after the namespace does.
        left.clear()
        for rt in RESOURCES:
            if rt.namespaced:
                items = (await client.list(rt, ns))["items"]
                if items:
                    left[rt.plural] = items
        return not left

    with contextlib.suppress(AssertionError):
        await eventually(nothing_left, 5, "nothing left")
    assert left == {}, f"left behind in {ns}: {left}"

    async def host_empty() -> bool:
        return not host.containers(ns) and not host.sandboxes(ns)

    await eventually(host_empty, 30, f"no container nor sandbox of {ns} on the host")


# ---- Jobs -------------------------------------------------------------------------------

async def test_job_fails_after_backoff_limit(up_cluster: UpCluster, host: Host,
                                             client: Client) -> None:
    up = up_cluster
    ns = await new_namespace(client, "e2e-job")
    # backoffLimit 1: one retry, after the controller's 10 s back-off.
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "fails", "namespace": ns},
           "spec": {"backoffLimit": 1, "template": {"spec": pod_spec(
               ["sh", "-c", "exit 3"], restartPolicy="Never")}}}
    await kubectl(up, "apply", "-f", "-", obj=job)
    await kubectl(up, "-n", ns, "wait", "--for=condition=Failed", "job/fails", "--timeout=150s")
    j = await client.get(JOBS, ns, "fails")
    failed = next(c for c in j["status"]["conditions"] if c["type"] == "Failed")
    assert failed["status"] == "True" and failed["reason"] == "BackoffLimitExceeded", failed
    assert j["status"]["failed"] == 2 and not j["status"].get("succeeded")
    pods = (await client.list(PODS, ns, label_selector="job-name=fails"))["items"]
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    first, second = sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"])
    # The retry waited out the back-off after the first failure (1 s timestamps).
    waited = (meta.parse_time(second["metadata"]["creationTimestamp"]) - meta.parse_time(
        first["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]))
    assert waited.total_seconds() >= 8, waited
    for p in pods:
        assert p["status"]["phase"] == "Failed", p["status"]
        (cs,) = p["status"]["containerStatuses"]
        assert cs["state"]["terminated"]["exitCode"] == 3, cs
        assert cs["containerID"], "ran as a real container"
    await never(lambda: _more_than(names(client, PODS, ns, "job-name=fails"), 2), 2.0,
                "a third attempt")


# ---- StatefulSets ---------------------------------------------------------------------

async def test_statefulset_starts_and_stops_in_ordinal_order(
        up_cluster: UpCluster, host: Host, client: Client) -> None:
    up = up_cluster
    ns = await new_namespace(client, "e2e-sts")
    labels = {"app": "db"}
    objs = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": ns},
         "spec": {"clusterIP": "None", "selector": labels, "ports": [{"port": 8080}]}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": ns},
         "spec": {"replicas": 3, "serviceName": "db", "podManagementPolicy": "OrderedReady",
                  "selector": {"matchLabels": labels},
                  # Ready by probe: OrderedReady must wait for each one's probe.
                  "template": {"metadata": {"labels": labels}, "spec": web_pod()}}},
    ]
    async with PodLog(client, ns, "db") as plog:
        await kubectl(up, "apply", "-f", "-", obj=objs)
        out = await kubectl(up, "-n", ns, "rollout", "status", "statefulset/db",
                            "--timeout=150s")
        assert "roll out complete" in out or "rolling update complete" in out, out
        await eventually(lambda: really_running(client, host, ns, "app=db", 3), TIMEOUT,
                         "3 pods running")
        assert not plog.violations, plog.violations
        assert [n for e, n in plog.log if e == "created"] == ["db-0", "db-1", "db-2"]

        # Down to one: the highest ordinal first, each gone before the next goes.
        await kubectl(up, "-n", ns, "scale", "statefulset/db", "--replicas=1")

        async def one_left() -> list[dict[str, Any]] | None:
            if await names(client, PODS, ns) != ["db-0"]:
                return None
            return await really_running(client, host, ns, "app=db", 1)

        await eventually(one_left, TIMEOUT, "only db-0 left")
        assert plog.first("terminating", "db-2") < plog.first("terminating", "db-1")
        assert plog.first("deleted", "db-2") < plog.first("terminating", "db-1")
        await eventually(lambda: host_matches_api(client, host, ns), TIMEOUT,
                         "db-1 and db-2 gone from the host")


async def _more_than(aw: Any, n: int) -> bool:
    return len(await aw) > n
