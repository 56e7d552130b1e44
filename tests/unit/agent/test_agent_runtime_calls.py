"""Runtime calls a pod start can do without, in a burst of pod starts (the runtime
daemon serves them all, one Python process): each must still be made when it could
tell something new."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from timonel.node_agent.agent import pods
from timonel.node_agent.agent.pods import AgentContext, _ensure_sandbox, _read_started, ensure_image
from timonel.node_agent.agent.status import PodRuntimeState
from timonel.node_agent.runtime.api import runtime_pb2 as pb


def pod(uid: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p-{uid}", "namespace": "ns", "uid": uid},
            "spec": {"containers": [{"name": "a", "image": "busybox"}]}}


class CountingRuntime:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def list_sandboxes(self, f: pb.PodSandboxFilter) -> list[pb.PodSandbox]:
        self.calls.append("ListPodSandbox")
        return []

    def run_sandbox(self, cfg: pb.PodSandboxConfig) -> str:
        self.calls.append("RunPodSandbox")
        return f"sb-{cfg.metadata.uid}"

    def image_status(self, image: str) -> pb.ImageStatusResponse:
        self.calls.append("ImageStatus")
        return pb.ImageStatusResponse(image=pb.Image(id="sha256:1", repo_tags=[image]))

    def container_status(self, cid: str) -> pb.ContainerStatusResponse:
        self.calls.append(f"ContainerStatus {cid}")
        return pb.ContainerStatusResponse(status=pb.ContainerStatus(
            id=cid, state=pb.CONTAINER_RUNNING, metadata=pb.ContainerMetadata(name=f"n-{cid}")))


class NoClient:
    class config:  # stands for the client's config object
        ca_pem = None


class NoEvents:
    async def event(self, *args: Any) -> None:
        pass


def context(tmp_path: Path) -> tuple[AgentContext, CountingRuntime]:
    rt = CountingRuntime()
    ctx = AgentContext(client=NoClient(), runtime=rt, recorder=NoEvents(), node="n",  # type: ignore[arg-type]
                       data_dir=str(tmp_path))
    return ctx, rt


async def test_a_new_pod_is_not_looked_up_once_the_runtime_has_been_listed(tmp_path: Path) -> None:
    ctx, rt = context(tmp_path)
    await _ensure_sandbox(ctx, pod("u1"))  # no listing of the runtime yet: ask
    assert rt.calls == ["ListPodSandbox", "RunPodSandbox"]
    ctx.listed_sandbox_pods = {"u9"}  # the sync pass's listing: u2 has none
    rt.calls.clear()
    assert await _ensure_sandbox(ctx, pod("u2")) is not None
    assert rt.calls == ["RunPodSandbox"]
    rt.calls.clear()
    await _ensure_sandbox(ctx, pod("u9"))  # listed with one: ask
    await _ensure_sandbox(ctx, pod("u2"))  # made one since the listing: ask
    assert rt.calls.count("ListPodSandbox") == 2


async def test_image_status_is_asked_once_a_second_unless_always_pulled(tmp_path: Path,
                                                                         monkeypatch: Any) -> None:
    ctx, rt = context(tmp_path)
    now = [100.0]
    monkeypatch.setattr(pods.time, "monotonic", lambda: now[0])
    c = {"name": "a", "image": "busybox"}
    for _ in range(3):
        assert (await ensure_image(ctx, pod("u1"), c)).id == "sha256:1"
    assert rt.calls == ["ImageStatus"]
    now[0] += pods.IMAGE_SEEN_SECONDS
    await ensure_image(ctx, pod("u1"), c)
    ctx.offline_images.add("sha256:1")  # Always, offline image: asked each time
    await ensure_image(ctx, pod("u1"), {**c, "imagePullPolicy": "Always"})
    assert rt.calls == ["ImageStatus"] * 3


async def test_a_fresh_sandbox_reads_back_only_what_was_started(tmp_path: Path) -> None:
    ctx, rt = context(tmp_path)
    started = PodRuntimeState(sandbox_ip="10.0.0.2", sandbox_ready=True, started_ids=["c1", "c2"])
    state = await _read_started(ctx, started)
    assert rt.calls == ["ContainerStatus c1", "ContainerStatus c2"]
    assert sorted(state.containers) == ["n-c1", "n-c2"] and state.sandbox_ip == "10.0.0.2"
