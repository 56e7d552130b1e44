"""Helpers for controller tests: a controller manager in the test's event
loop, a trivial binder standing in for the scheduler, fake node names that
no other test uses, and waiting that polls instead of sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from timonel.api.client import Client
from timonel.api.errors import ApiError
from timonel.controller.context import ControllerOptions
from timonel.controller.manager import run_controller_manager

PODS = ("v1", "Pod")
DEPLOYMENTS = ("apps/v1", "Deployment")
REPLICASETS = ("apps/v1", "ReplicaSet")

T = TypeVar("T")

# Generous: CI machines are loaded two-core boxes.
TIMEOUT = 60.0


def node_names(count: int, prefix: str = "ctrl") -> list[str]:
    tag = os.urandom(3).hex()
    return [f"{prefix}-{tag}-{i}" for i in range(count)]


async def wait_for(fn: Callable[[], Awaitable[T | None]], timeout: float = TIMEOUT,
                   what: str = "condition") -> T:
    """Poll `fn` until it returns something truthy; fail after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Any = None
    while True:
        last = await fn()
        if last:
            return last  # type: ignore[no-any-return]
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def controller_manager(client: Client, controllers: list[str] | None = None,
                             **options: Any) -> AsyncIterator[asyncio.Task[None]]:
    """Run the real controller manager in this event loop; stopped on exit."""
    opts = ControllerOptions(**options)
    task = asyncio.create_task(run_controller_manager(client, opts, controllers=controllers))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Binder:
    """Binds every unscheduled pod of `namespace` to the given nodes in turn,
    through the binding subresource, as a scheduler would."""

    def __init__(self, client: Client, namespace: str, nodes: list[str]) -> None:
        self.client = client
        self.namespace = namespace
        self.nodes = itertools.cycle(nodes)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Binder:
        self.task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    async def _bind(self, pod: dict[str, Any]) -> None:
        md = pod["metadata"]
        if (pod.get("spec") or {}).get("nodeName") or md.get("deletionTimestamp"):
            return
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": md["name"], "namespace": self.namespace, "uid": md["uid"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": next(self.nodes)}}
        with contextlib.suppress(ApiError):
            await self.client.post_subresource(PODS, self.namespace, md["name"], "binding", body)

    async def _run(self) -> None:
        rv = ""
        while True:
            try:
                if not rv:
                    lst = await self.client.list(PODS, self.namespace)
                    rv = lst["metadata"]["resourceVersion"]
                    for p in lst["items"]:
                        await self._bind(p)
                async for etype, obj in self.client.watch(PODS, self.namespace,
                                                          resource_version=rv,
                                                          timeout_seconds=120):
                    rv = obj["metadata"].get("resourceVersion") or rv
                    if etype in ("ADDED", "MODIFIED"):
                        await self._bind(obj)
            except ApiError as e:
                if e.code == 410:
                    rv = ""
            except ConnectionError:
                await asyncio.sleep(0.2)


class PodWatch:
    """Every pod ever created in `namespace` (by name), and a callback on
    each event with the current set of live pods, for invariants."""

    def __init__(self, client: Client, namespace: str,
                 check: Callable[[dict[str, dict[str, Any]]], None] | None = None) -> None:
        self.client = client
        self.namespace = namespace
        self.check = check
        self.created: set[str] = set()
        self.live: dict[str, dict[str, Any]] = {}
        self.events = 0
        self.errors: list[str] = []
        self.task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __aenter__(self) -> PodWatch:
        self.task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._ready.wait(), TIMEOUT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    async def _run(self) -> None:
        lst = await self.client.list(PODS, self.namespace)
        rv = lst["metadata"]["resourceVersion"]
        for p in lst["items"]:
            self.created.add(p["metadata"]["name"])
            self.live[p["metadata"]["name"]] = p
        self._ready.set()
        while True:
            # A 410 here would lose creations: the test fails rather than guess.
            async for etype, obj in self.client.watch(PODS, self.namespace, resource_version=rv,
                                                      timeout_seconds=300):
                rv = obj["metadata"].get("resourceVersion") or rv
                if etype == "BOOKMARK":
                    continue
                name = obj["metadata"]["name"]
                if etype == "DELETED":
                    self.live.pop(name, None)
                else:
                    if etype == "ADDED":
                        self.created.add(name)
                    self.live[name] = obj
                self.events += 1
                if self.check is not None:
                    try:
                        self.check(self.live)
                    except AssertionError as e:
                        self.errors.append(f"after {etype} {name}: {e}")


def serving(pods: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods.values() if not p["metadata"].get("deletionTimestamp")]


def ready(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                   for c in (p.get("status") or {}).get("conditions") or [])]


class Bounds:
    """maxSurge/maxUnavailable checked against the pods themselves."""

    def __init__(self) -> None:
        self.lo = 0
        self.hi = 10**6
        self.seen_lo = 10**6
        self.seen_hi = 0

    def __call__(self, pods: dict[str, dict[str, Any]]) -> None:
        live = serving(pods)
        available = len(ready(live))
        self.seen_hi = max(self.seen_hi, len(live))
        self.seen_lo = min(self.seen_lo, available)
        assert len(live) <= self.hi, f"{len(live)} pods, more than {self.hi}"
        assert available >= self.lo, f"{available} available, fewer than {self.lo}"

    def arm(self, lo: int, hi: int) -> None:
        self.lo, self.hi = lo, hi
        self.seen_lo, self.seen_hi = 10**6, 0


def deployment(name: str, replicas: int, *, image: str = "busybox:1", max_surge: Any = None,
               max_unavailable: Any = None, labels: dict[str, str] | None = None,
               **spec: Any) -> dict[str, Any]:
    labels = labels or {"app": name}
    body: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "c", "image": image}]}},
                 **spec}}
    ru = {k: v for k, v in (("maxSurge", max_surge), ("maxUnavailable", max_unavailable))
          if v is not None}
    if ru:
        body["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": ru}
    return body


async def deployment_done(client: Client, namespace: str, name: str, replicas: int,
                          image: str | None = None) -> dict[str, Any] | None:
    """The Deployment once its rollout is complete as `kubectl rollout
    status` sees it (and running `image`, if given); else None."""
    d = await client.get(DEPLOYMENTS, namespace, name)
    st = d.get("status") or {}
    if image is not None and d["spec"]["template"]["spec"]["containers"][0]["image"] != image:
        return None
    ok = (st.get("observedGeneration", 0) >= d["metadata"]["generation"]
          and d["spec"]["replicas"] == replicas
          and st.get("updatedReplicas", 0) == replicas and st.get("replicas", 0) == replicas
          and st.get("availableReplicas", 0) == replicas)
    return d if ok else None


async def names(client: Client, rtype: tuple[str, str], namespace: str,
                selector: str = "") -> list[str]:
    items = (await client.list(rtype, namespace, label_selector=selector))["items"]
    return sorted(o["metadata"]["name"] for o in items)


async def gone(client: Client, rtype: tuple[str, str], namespace: str, name: str) -> bool:
    try:
        await client.get(rtype, namespace, name)
    except ApiError as e:
        return e.code == 404
    return False


KUBECTL = os.path.join(os.path.dirname(sys.executable), "kubectl")


async def kubectl(kubeconfig: str, *args: str, stdin: str | None = None,
                  timeout: float = 120.0) -> tuple[int, str, str]:
    """Run the real kubectl without blocking the event loop (the controller
    manager under test runs in it). Returns (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        KUBECTL, "--kubeconfig", kubeconfig, *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"kubectl {' '.join(args)} did not finish in {timeout}s") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
