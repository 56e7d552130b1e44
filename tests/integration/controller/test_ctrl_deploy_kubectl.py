"""The real kubectl driving Deployments: rollout status, set image, history,
undo, pause/resume, and a rollout that misses its progress deadline."""

from __future__ import annotations

import asyncio
import textwrap

from tests.integration.conftest import ApiServer
from tests.integration.controller.helpers import (
    DEPLOYMENTS,
    REPLICASETS,
    Binder,
    PodWatch,
    controller_manager,
    kubectl,
    node_names,
    wait_for,
)
from tests.integration.fakenodes import FakeNodes
from timonel.api.client import Client

REVISION = "deployment.kubernetes.io/revision"
HASH = "pod-template-hash"

MANIFEST = textwrap.dedent("""
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, namespace: NS}
    spec:
      replicas: 3
      selector: {matchLabels: {app: web}}
      strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 1}}
      template:
        metadata: {labels: {app: web}}
        spec:
          containers: [{name: c, image: "busybox:1"}]
""")


async def test_kubectl_rollout_status_history_undo_pause(api_server: ApiServer,
                                                          namespace: str) -> None:
    kc = api_server.kubeconfig
    nodes = node_names(2)
    async with Client.from_kubeconfig(kc) as client, FakeNodes(client, nodes), \
            Binder(client, namespace, nodes), PodWatch(client, namespace) as watch, \
            controller_manager(client, ["replicaset", "deployment"]):
        rc, out, err = await kubectl(kc, "apply", "-f", "-",
                                     stdin=MANIFEST.replace("NS", namespace))
        assert rc == 0, err
        rc, out, err = await kubectl(kc, "-n", namespace, "rollout", "status", "deployment/web",
                                     "--timeout=90s")
        assert rc == 0 and 'deployment "web" successfully rolled out' in out, (out, err)
        (rs1,) = (await client.list(REPLICASETS, namespace))["items"]

        rc, out, err = await kubectl(kc, "-n", namespace, "set", "image", "deployment/web",
                                     "c=busybox:2")
        assert rc == 0, err
        rc, out, err = await kubectl(kc, "-n", namespace, "rollout", "status", "deployment/web",
                                     "--timeout=90s")
        assert rc == 0 and "successfully rolled out" in out, (out, err)
        rc, out, err = await kubectl(kc, "-n", namespace, "rollout", "history", "deployment/web")
        assert rc == 0, err
        assert [line.split()[0] for line in out.splitlines()[2:] if line.strip()] == ["1", "2"]

        # Undo: back to the first ReplicaSet, which becomes revision 3.
        rc, out, err = await kubectl(kc, "-n", namespace, "rollout", "undo", "deployment/web")
        assert rc == 0 and "rolled back" in out, (out, err)
        rc, out, err = await kubectl(kc, "-n", namespace, "rollout", "status", "deployment/web",
                                     "--timeout=90s")
        assert rc == 0 and "successfully rolled out" in out, (out, err)
        d = await client.get(DEPLOYMENTS, namespace, "web")
        assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "busybox:1"
        assert d["metadata"]["annotations"][REVISION] == "3"
        rss = {r["metadata"]["name"]: r for r in (await client.list(REPLICASETS, namespace))["items"]}
        assert len(rss) == 2, "undo reuses the old ReplicaSet"
        back = rss[rs1["metadata"]["name"]]
        assert back["spec"]["replicas"] == 3
        assert back["metadata"]["annotations"][REVISION] == "3"
        assert back["metadata"]["annotations"]["deployment.kubernetes.io/revision-history"] == "1"

        async def only_first_template() -> bool:
            live = [p for p in watch.live.values() if not p["metadata"].get("deletionTimestamp")]
            return len(live) == 3 and all(p["metadata"]["labels"][HASH] ==
                                          rs1["metadata"]["labels"][HASH] for p in live)

        await wait_for(only_first_template, what="pods of the first ReplicaSet only")
        events = (await client.list(("v1", "Event"), namespace))["items"]
        assert any(e["reason"] == "DeploymentRollback" and "revision 1" in e["message"]
                   for e in events), [e["reason"] for e in events]
        rc, out, err = await kubectl(kc, "-n", namespace, "describe", "deployment", "web")
        assert rc == 0 and "ScalingReplicaSet" in out, (out, err)

        # Paused: a template change starts nothing until resumed.
        rc, _, err = await kubectl(kc, "-n", namespace, "rollout", "pause", "deployment/web")
        assert rc == 0, err
        rc, _, err = await kubectl(kc, "-n", namespace, "set", "image", "deployment/web",
                                   "c=busybox:3")
        assert rc == 0, err

        async def paused_observed() -> bool:
            cur = await client.get(DEPLOYMENTS, namespace, "web")
            conds = {c["type"]: c for c in cur["status"].get("conditions") or []}
            return cur["status"].get("observedGeneration") == cur["metadata"]["generation"] and \
                conds.get("Progressing", {}).get("reason") == "DeploymentPaused"

        await wait_for(paused_observed, what="the pause observed")
        await asyncio.sleep(1)
        assert len((await client.list(REPLICASETS, namespace))["items"]) == 2
        rc, _, err = await kubectl(kc, "-n", namespace, "rollout", "resume", "deployment/web")
        assert rc == 0, err
        rc, out, err = await kubectl(kc, "-n", namespace, "rollout", "status", "deployment/web",
                                     "--timeout=90s")
        assert rc == 0 and "successfully rolled out" in out, (out, err)
        assert len((await client.list(REPLICASETS, namespace))["items"]) == 3


async def test_kubectl_reports_progress_deadline_exceeded(api_server: ApiServer,
                                                          namespace: str) -> None:
    # Pods bound to a node nobody runs never become ready.
    kc = api_server.kubeconfig
    manifest = MANIFEST.replace("NS", namespace).replace("name: web,", "name: stuck,") \
        .replace("replicas: 3", "replicas: 2\n  progressDeadlineSeconds: 2") \
        .replace("containers:", "nodeName: no-such-node\n      containers:")
    async with Client.from_kubeconfig(kc) as client, \
            controller_manager(client, ["replicaset", "deployment"]):
        rc, _, err = await kubectl(kc, "apply", "-f", "-", stdin=manifest)
        assert rc == 0, err
        rc, out, err = await kubectl(kc, "-n", namespace, "rollout", "status", "deployment/stuck",
                                     "--timeout=90s")
        assert rc != 0 and 'deployment "stuck" exceeded its progress deadline' in err, (out, err)
        d = await client.get(DEPLOYMENTS, namespace, "stuck")
        conds = {c["type"]: c for c in d["status"]["conditions"]}
        assert conds["Progressing"]["status"] == "False"
        assert conds["Progressing"]["reason"] == "ProgressDeadlineExceeded"
        assert conds["Available"]["status"] == "False"
