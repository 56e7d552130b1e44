"""Shared pieces of the node lifecycle, Job, DaemonSet and StatefulSet
controller tests: a private API server, a ControllerContext, controllers
run as tasks, polling, and a trivial binder standing in for the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from tests.integration.conftest import ApiServer, start_server
from tests.integration.fakenodes import NODES, PODS
from timonel.api import meta
from timonel.api.client import Client, InformerFactory
from timonel.api.client.events import EventRecorder
from timonel.api.errors import ApiError
from timonel.controller.context import Controller, ControllerContext, ControllerOptions
from timonel.controller.node_lifecycle import taints as tt

log = logging.getLogger(__name__)
EVENTS = ("v1", "Event")


@pytest.fixture(scope="module")
def private_server() -> Iterator[ApiServer]:
    """A server of its own (embedded etcd): tests that add nodes must not
    see, nor be seen by, other tests' nodes."""
    d = tempfile.mkdtemp(prefix="timonel-ctrl-")
    server = start_server(d)
    yield server
    server.stop()
    shutil.rmtree(d, ignore_errors=True)


def make_context(client: Client, component: str = "controller-manager",
                 **options: Any) -> ControllerContext:
    extra = options.pop("extra", {})
    opts = ControllerOptions(**options)
    opts.extra.update(extra)
    return ControllerContext(client=client, informers=InformerFactory(client),
                             recorder=EventRecorder(client, component), options=opts)


@contextlib.asynccontextmanager
async def running(ctx: ControllerContext, *controllers: Controller) -> AsyncIterator[
        list[asyncio.Task[None]]]:
    """Run controllers until the block ends; a controller that crashes
    fails the test when the block ends."""
    tasks = [asyncio.create_task(c(ctx), name=f"controller {i}") for i, c in enumerate(controllers)]
    try:
        yield tasks
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await ctx.informers.stop()


async def eventually(fn: Callable[[], Any], timeout: float = 30.0, what: str = "",
                     interval: float = 0.1) -> Any:
    """Poll until `fn()` (plain or async) returns something truthy; return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
            if inspect.isawaitable(last):
                last = await last
        except (ApiError, ConnectionError) as e:
            last = e
        else:
            if last:
                return last
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or fn}; "
                                 f"last value: {last!r}")
        await asyncio.sleep(interval)


async def never(fn: Callable[[], Any], seconds: float, what: str = "") -> None:
    """Assert `fn()` stays falsy for `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        value = fn()
        if inspect.isawaitable(value):
            value = await value
        assert not value, f"{what or fn} happened: {value!r}"
        await asyncio.sleep(0.1)


async def events_for(client: Client, namespace: str, name: str) -> list[dict[str, Any]]:
    lst = await client.list(EVENTS, namespace,
                            field_selector=f"involvedObject.name={name}")
    return lst["items"]


def has_event(events: list[dict[str, Any]], reason: str, message_part: str = "") -> bool:
    return any(e.get("reason") == reason and message_part in (e.get("message") or "")
               for e in events)


def pinned_node(pod: dict[str, Any]) -> str:
    """The node a DaemonSet-style pod is pinned to through node affinity
    `metadata.name` matchFields, if any."""
    na = ((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}
    req = na.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in req.get("nodeSelectorTerms") or []:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and f.get("values"):
                return str(f["values"][0])
    return ""


class Binder:
    """A trivial scheduler: binds pending pods through pods/binding, to the
    node their affinity pins them to, else round-robin over Ready nodes
    whose NoSchedule/NoExecute taints they tolerate and whose labels match
    their nodeSelector."""

    def __init__(self, client: Client, nodes: list[str] | None = None,
                 period: float = 0.2) -> None:
        self.client = client
        # Only these nodes (None: any); other tests' nodes may linger.
        self.nodes = nodes
        self.period = period
        self._rr = itertools.count()
        self._task: asyncio.Task[None] | None = None
        self.bound: dict[str, str] = {}

    async def __aenter__(self) -> Binder:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _fits(self, pod: dict[str, Any], node: dict[str, Any]) -> bool:
        ready = [c for c in (node.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Ready"]
        if not ready or ready[0].get("status") != "True":
            return False
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        if tt.untolerated((node.get("spec") or {}).get("taints") or [], tolerations):
            return False
        selector = (pod.get("spec") or {}).get("nodeSelector") or {}
        labels = meta.labels_of(node)
        return all(labels.get(k) == v for k, v in selector.items())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(ApiError, ConnectionError):
                await self.bind_pending()
            await asyncio.sleep(self.period)

    async def bind_pending(self) -> None:
        pods = (await self.client.list(PODS, field_selector="spec.nodeName="))["items"]
        pending = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if not pending:
            return
        nodes = [n for n in (await self.client.list(NODES))["items"]
                 if self.nodes is None or meta.name_of(n) in self.nodes]
        for pod in pending:
            target = pinned_node(pod)
            if not target:
                fits = sorted(meta.name_of(n) for n in nodes if self._fits(pod, n))
                if not fits:
                    continue
                target = fits[next(self._rr) % len(fits)]
            ns, name = meta.namespace_of(pod), meta.name_of(pod)
            body = {"apiVersion": "v1", "kind": "Binding",
                    "metadata": {"name": name, "namespace": ns,
                                 "uid": pod["metadata"]["uid"]},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": target}}
            try:
                await self.client.post_subresource(PODS, ns, name, "binding", body)
                self.bound[f"{ns}/{name}"] = target
            except ApiError as e:
                log.debug("bind failed pod=%s/%s err=%s", ns, name, e)


def is_ready(pod: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions") or [])


class PodLog:
    """Every pod event of a namespace, in order, plus ordering checks made
    at the moment each pod appears."""

    def __init__(self, client: Client, ns: str, set_name: str) -> None:
        self.client, self.ns, self.set_name = client, ns, set_name
        self.pods: dict[str, dict[str, Any]] = {}
        self.log: list[tuple[str, str]] = []   # (event, pod name)
        self.violations: list[str] = []
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> PodLog:
        lst = await self.client.list(PODS, self.ns)
        self.pods = {p["metadata"]["name"]: p for p in lst["items"]}
        self._task = asyncio.create_task(self._run(lst["metadata"]["resourceVersion"]))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _record(self, etype: str, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        old = self.pods.get(name)
        if etype == "DELETED":
            self.pods.pop(name, None)
            self.log.append(("deleted", name))
            return
        self.pods[name] = pod
        if old is None:
            self.log.append(("created", name))
            ordinal = int(name.rsplit("-", 1)[1])
            prev = self.pods.get(f"{self.set_name}-{ordinal - 1}")
            if ordinal > 0 and (prev is None or not is_ready(prev)):
                self.violations.append(f"{name} created while {self.set_name}-{ordinal - 1} "
                                       "was not ready")
        if pod["metadata"].get("deletionTimestamp") and not (
                old and old["metadata"].get("deletionTimestamp")):
            self.log.append(("terminating", name))

    async def _run(self, rv: str) -> None:
        async for etype, obj in self.client.watch(PODS, self.ns, resource_version=rv,
                                                  timeout_seconds=600):
            if etype != "BOOKMARK":
                self._record(etype, obj)

    def first(self, event: str, name: str) -> int:
        return self.log.index((event, name))


async def new_namespace(client: Client, prefix: str) -> str:
    name = f"{prefix}-{meta.generate_name('')}"
    await client.create(("v1", "Namespace"), {"apiVersion": "v1", "kind": "Namespace",
                                              "metadata": {"name": name}})
    return name


async def finish_pod(client: Client, pod: dict[str, Any], exit_code: int = 0) -> None:
    """What a kubelet reports when a pod's containers exited."""
    now = meta.now()
    phase = "Succeeded" if exit_code == 0 else "Failed"
    statuses = [{"name": c["name"], "image": c.get("image", ""), "imageID": "fake://",
                 "containerID": f"fake://{c['name']}", "ready": False, "started": False,
                 "restartCount": 0, "lastState": {},
                 "state": {"terminated": {"exitCode": exit_code,
                                          "reason": "Completed" if exit_code == 0 else "Error",
                                          "startedAt": now, "finishedAt": now}}}
                for c in pod["spec"]["containers"]]
    conds = [c for c in (pod.get("status") or {}).get("conditions") or []
             if c.get("type") not in ("Ready", "ContainersReady")]
    conds += [{"type": t, "status": "False", "lastProbeTime": None, "lastTransitionTime": now,
               "reason": "PodCompleted"} for t in ("ContainersReady", "Ready")]
    await client.patch(PODS, meta.namespace_of(pod), meta.name_of(pod),
                       {"status": {"phase": phase, "containerStatuses": statuses,
                                   "conditions": conds}},
                       patch_type="merge", subresource="status")


async def wait_all(*aws: Awaitable[Any]) -> list[Any]:
    return list(await asyncio.gather(*aws))
