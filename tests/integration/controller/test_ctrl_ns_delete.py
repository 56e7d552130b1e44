"""Namespace deletion empties the namespace and then finalizes it; every
namespace gets (and keeps) a default ServiceAccount."""

from __future__ import annotations

import functools
from typing import Any

from tests.integration.conftest import ApiServer
from tests.integration.controller.helpers import (
    DEPLOYMENTS,
    Binder,
    controller_manager,
    deployment,
    deployment_done,
    kubectl,
    node_names,
    wait_for,
)
from tests.integration.fakenodes import FakeNodes
from timonel.api.client import Client
from timonel.api.errors import ApiError
from timonel.api.resources import RESOURCES

NAMESPACES = ("v1", "Namespace")
SERVICE_ACCOUNTS = ("v1", "ServiceAccount")
CONFIGMAPS = ("v1", "ConfigMap")
HOLD = "example.com/hold"
EVENTS = ("v1", "Event")


async def test_namespace_deletion_leaves_nothing_behind(api_server: ApiServer,
                                                        namespace: str) -> None:
    nodes = node_names(2)
    async with Client.from_kubeconfig(api_server.kubeconfig) as client, \
            FakeNodes(client, nodes), Binder(client, namespace, nodes), \
            controller_manager(client, ["replicaset", "deployment", "garbagecollector",
                                        "namespace", "serviceaccount"]):
        await wait_for(lambda: _get(client, SERVICE_ACCOUNTS, namespace, "default"),
                       what="the default ServiceAccount")
        await client.create(DEPLOYMENTS, deployment("web", 3), namespace=namespace)
        await wait_for(lambda: deployment_done(client, namespace, "web", 3), what="3 running")
        await client.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": "held", "finalizers": [HOLD]}},
                            namespace=namespace)
        await client.create(("v1", "Secret"), {"apiVersion": "v1", "kind": "Secret",
                                               "metadata": {"name": "s"},
                                               "stringData": {"k": "v"}}, namespace=namespace)
        rc, _, err = await kubectl(api_server.kubeconfig, "delete", "namespace", namespace,
                                   "--wait=false")
        assert rc == 0, err

        async def held_by_finalizer() -> dict[str, Any] | None:
            ns = await client.get(NAMESPACES, "", namespace)
            conds = {c["type"]: c for c in (ns.get("status") or {}).get("conditions") or []}
            fin = conds.get("NamespaceFinalizersRemaining", {})
            rem = conds.get("NamespaceContentRemaining", {})
            if fin.get("status") == "True" and rem.get("message") == \
                    "Some resources are remaining: configmaps has 1 resource instances":
                return ns
            return None

        ns = await wait_for(held_by_finalizer, what="only the held ConfigMap left")
        assert ns["status"]["phase"] == "Terminating"
        conds = {c["type"]: c for c in ns["status"]["conditions"]}
        assert conds["NamespaceFinalizersRemaining"]["message"] == \
            f"Some content in the namespace has finalizers remaining: {HOLD} in 1 resource instances"
        assert conds["NamespaceDeletionContentFailure"]["status"] == "False"

        # Its owner lets go: the namespace goes.
        await client.patch(CONFIGMAPS, namespace, "held", {"metadata": {"finalizers": None}})

        async def namespace_gone() -> bool:
            return await _get(client, NAMESPACES, "", namespace) is None

        await wait_for(namespace_gone, what="the namespace deleted")
        for rt in RESOURCES:
            if rt.namespaced:
                items = (await client.list(rt, namespace))["items"]
                assert items == [], f"{rt.plural} left behind: {items}"
        # No controller brought anything back into the deleted namespace.
        rc, out, err = await kubectl(api_server.kubeconfig, "get", "namespace", namespace)
        assert rc != 0 and "NotFound" in err, (out, err)


async def test_default_service_account_is_recreated(api_server: ApiServer,
                                                    namespace: str) -> None:
    async with Client.from_kubeconfig(api_server.kubeconfig) as client, \
            controller_manager(client, ["serviceaccount"]):
        first = await wait_for(lambda: _get(client, SERVICE_ACCOUNTS, namespace, "default"),
                               what="the default ServiceAccount")
        await client.delete(SERVICE_ACCOUNTS, namespace, "default")

        async def recreated() -> dict[str, Any] | None:
            sa = await _get(client, SERVICE_ACCOUNTS, namespace, "default")
            return sa if sa and sa["metadata"]["uid"] != first["metadata"]["uid"] else None

        await wait_for(recreated, what="a new default ServiceAccount")
        # The system namespaces have one too.
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            await wait_for(functools.partial(_get, client, SERVICE_ACCOUNTS, ns, "default"),
                           what=f"default ServiceAccount in {ns}")


async def _get(client: Client, rtype: tuple[str, str], namespace: str,
               name: str) -> dict[str, Any] | None:
    try:
        return await client.get(rtype, namespace, name)
    except ApiError as e:
        if e.code == 404:
            return None
        raise


class LateEventClient(Client):
    """Writes an event into the namespace just before the controller finalizes it: a node
    agent's held event arriving after the controller's last pass over the content."""

    async def put_subresource(self, rtype: Any, namespace: str, name: str, subresource: str,
                              body: dict[str, Any], params: dict[str, Any] | None = None) -> dict[str, Any]:
        if subresource == "finalize":
            await self.create(EVENTS, {
                "apiVersion": "v1", "kind": "Event", "metadata": {"name": "late.1"},
                "involvedObject": {"kind": "Pod", "namespace": name, "name": "p"},
                "reason": "Killing", "message": "Stopping container c", "type": "Normal"}, namespace=name)
        return await super().put_subresource(rtype, namespace, name, subresource, body, params)


async def test_events_written_after_the_last_pass_go_with_the_namespace(api_server: ApiServer,
                                                                        namespace: str) -> None:
    async with Client.from_kubeconfig(api_server.kubeconfig) as client, \
            LateEventClient.from_kubeconfig(api_server.kubeconfig) as late, \
            controller_manager(late, ["namespace"]):
        await client.delete(NAMESPACES, "", namespace)

        async def namespace_gone() -> bool:
            return await _get(client, NAMESPACES, "", namespace) is None

        await wait_for(namespace_gone, what="the namespace deleted")

        async def no_events() -> bool:
            return (await client.list(EVENTS, namespace))["items"] == []

        # The sweep follows the finalize at once; the namespace's own deletion is what is awaited.
        await wait_for(no_events, what="the late event swept", timeout=5)
