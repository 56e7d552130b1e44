"""The gRPC servicers: each RPC runs its blocking work in a thread, errors become statuses.

Two pools keep long waits (ExecSync, exec exit codes and input) from starving
quick calls: `ops` for a pod's work (new pods' sandboxes after the work of pods
under way: priority_pool.py), `waits` for what blocks until a process acts.
WaitContainer needs no thread (the loop watches the exit descriptor);
StartContainer, the status calls and the lists run on the loop: they are on
every container's start path or the agent's relist, and take well under a
millisecond.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from importlib import metadata
from typing import Any, TypeVar

import grpc

from ..api import runtime_pb2 as pb
from ..api import runtime_pb2_grpc as pb_grpc
from ..images import Credentials, ImageNotFoundError
from . import attach_stream, containers, exec_stream, messages, pods
from .errors import InvalidArgument, NotFound, status_for
from .options import API_VERSION, RUNTIME_NAME
from .priority_pool import LATER, SOON, PriorityPool
from .runtime import Runtime

log = logging.getLogger(__name__)

T = TypeVar("T")


@functools.cache
def _version() -> str:
    try:
        return metadata.version("timonel")
    except metadata.PackageNotFoundError:
        return "0.0.0"


class _Base:
    def __init__(self, rt: Runtime, ops: PriorityPool, waits: Executor):
        self.rt, self.ops, self.waits = rt, ops, waits

    async def call(self, context: grpc.aio.ServicerContext, what: str, fn: Callable[..., T], *args: Any,
                   pool: Executor | None = None, priority: int = SOON) -> T:
        """`fn(*args)` in a thread of `pool`, else of the ops pool at `priority`."""
        work = functools.partial(fn, *args)
        try:
            if pool is not None:
                return await asyncio.get_running_loop().run_in_executor(pool, work)
            return await asyncio.wrap_future(self.ops.submit_at(priority, work))
        except Exception as e:
            await self.abort(context, what, e)
            raise AssertionError("unreachable") from None

    async def inline(self, context: grpc.aio.ServicerContext, what: str, fn: Callable[..., T], *args: Any) -> T:
        """Run a call that takes well under a millisecond on the event loop itself: two thread
        hand-offs cost more than that on a busy machine."""
        try:
            return fn(*args)
        except Exception as e:
            await self.abort(context, what, e)
            raise AssertionError("unreachable") from None

    async def status(self, context: grpc.aio.ServicerContext, what: str, fn: Callable[..., T], ref: str,
                     verbose: bool) -> T:
        """A status call: on the loop (inline) from what is in memory, in a thread when verbose
        (it reads more); the agent asks after every pod change."""
        if verbose:
            return await self.call(context, what, fn, self.rt, ref, True)
        return await self.inline(context, what, fn, self.rt, ref, False)

    async def abort(self, context: grpc.aio.ServicerContext, what: str, e: BaseException) -> None:
        code, msg = status_for(e, what)
        log.info("rpc=%s code=%s error=%s", what, code.name, msg)
        await context.abort(code, msg)


class RuntimeServicer(_Base, pb_grpc.RuntimeServiceServicer):
    async def Version(self, request: pb.VersionRequest, context: Any) -> pb.VersionResponse:
        return pb.VersionResponse(version="0.1.0", runtime_name=RUNTIME_NAME, runtime_version=_version(),
                                  runtime_api_version=API_VERSION)

    async def Status(self, request: pb.StatusRequest, context: Any) -> pb.StatusResponse:
        net_ok = self.rt.network_ready
        conditions = [
            pb.RuntimeCondition(type="RuntimeReady", status=True),
            pb.RuntimeCondition(type="NetworkReady", status=net_ok, reason="" if net_ok else "NetworkSetupFailed",
                                message=self.rt.network_error),
        ]
        resp = pb.StatusResponse(status=pb.RuntimeStatus(conditions=conditions))
        if request.verbose:
            o = self.rt.opts
            resp.info["config"] = json.dumps({"root": o.root, "socket": o.socket, "podCIDR": o.pod_cidr,
                                              "bridge": o.bridge, "cgroupParent": o.cgroup_parent,
                                              "nodeNetns": o.node_netns})
        return resp

    # -- sandboxes --
    async def RunPodSandbox(self, request: pb.RunPodSandboxRequest, context: Any) -> pb.RunPodSandboxResponse:
        # A new pod waits for the containers of pods already under way (see priority_pool).
        sid = await self.call(context, "RunPodSandbox", pods.run_sandbox, self.rt, request, priority=LATER)
        return pb.RunPodSandboxResponse(pod_sandbox_id=sid)

    async def StopPodSandbox(self, request: pb.StopPodSandboxRequest, context: Any) -> pb.StopPodSandboxResponse:
        await self.call(context, "StopPodSandbox", pods.stop_sandbox, self.rt, request.pod_sandbox_id,
                        pool=self.waits)
        return pb.StopPodSandboxResponse()

    async def RemovePodSandbox(self, request: pb.RemovePodSandboxRequest,
                               context: Any) -> pb.RemovePodSandboxResponse:
        await self.call(context, "RemovePodSandbox", pods.remove_sandbox, self.rt, request.pod_sandbox_id,
                        pool=self.waits)
        return pb.RemovePodSandboxResponse()

    async def PodSandboxStatus(self, request: pb.PodSandboxStatusRequest,
                               context: Any) -> pb.PodSandboxStatusResponse:
        # In memory but for one small file read at most.
        return await self.status(context, "PodSandboxStatus", pods.sandbox_status, request.pod_sandbox_id,
                                 request.verbose)

    async def ListPodSandbox(self, request: pb.ListPodSandboxRequest, context: Any) -> pb.ListPodSandboxResponse:
        f = request.filter if request.HasField("filter") else None
        # From memory, ~4 us a sandbox; a thread would queue behind a burst's pod starts
        # (0.2-0.8 s), holding up the agent's relist and with it every new pod.
        items = await self.inline(context, "ListPodSandbox", pods.list_sandboxes, self.rt, f)
        return pb.ListPodSandboxResponse(items=items)

    # -- containers --
    async def CreateContainer(self, request: pb.CreateContainerRequest, context: Any) -> pb.CreateContainerResponse:
        cid = await self.call(context, "CreateContainer", containers.create_container, self.rt, request)
        return pb.CreateContainerResponse(container_id=cid)

    async def StartContainer(self, request: pb.StartContainerRequest, context: Any) -> pb.StartContainerResponse:
        # A JSON write and a FIFO byte: short enough for the loop.
        await self.inline(context, "StartContainer", containers.start_container, self.rt, request.container_id)
        return pb.StartContainerResponse()

    async def StopContainer(self, request: pb.StopContainerRequest, context: Any) -> pb.StopContainerResponse:
        await self.call(context, "StopContainer", containers.stop_container, self.rt, request.container_id,
                        request.timeout, pool=self.waits)
        return pb.StopContainerResponse()

    async def RemoveContainer(self, request: pb.RemoveContainerRequest,
                              context: Any) -> pb.RemoveContainerResponse:
        await self.call(context, "RemoveContainer", containers.remove_container, self.rt, request.container_id,
                        pool=self.waits)
        return pb.RemoveContainerResponse()

    async def ListContainers(self, request: pb.ListContainersRequest, context: Any) -> pb.ListContainersResponse:
        f = request.filter if request.HasField("filter") else None
        # From memory, a stat and a poll a container (see ListPodSandbox).
        items = await self.inline(context, "ListContainers", containers.list_containers, self.rt, f)
        return pb.ListContainersResponse(containers=items)

    async def ContainerStatus(self, request: pb.ContainerStatusRequest,
                              context: Any) -> pb.ContainerStatusResponse:
        # From what the state files said (state.Known): a stat and a poll.
        return await self.status(context, "ContainerStatus", containers.container_status,
                                 request.container_id, request.verbose)

    async def WaitContainer(self, request: pb.WaitContainerRequest, context: Any) -> pb.WaitContainerResponse:
        try:
            st = await containers.wait_container_async(self.rt, request.container_id, request.timeout)
        except Exception as e:
            await self.abort(context, "WaitContainer", e)
            raise AssertionError("unreachable") from None
        return pb.WaitContainerResponse(status=st)

    async def ReopenContainerLog(self, request: pb.ReopenContainerLogRequest,
                                 context: Any) -> pb.ReopenContainerLogResponse:
        await self.call(context, "ReopenContainerLog", containers.reopen_log, self.rt, request.container_id)
        return pb.ReopenContainerLogResponse()

    async def ContainerStats(self, request: pb.ContainerStatsRequest, context: Any) -> pb.ContainerStatsResponse:
        stats = await self.call(context, "ContainerStats", containers.stats, self.rt, request.container_id)
        return pb.ContainerStatsResponse(stats=stats)

    # -- exec --
    async def ExecSync(self, request: pb.ExecSyncRequest, context: Any) -> pb.ExecSyncResponse:
        r = await self.call(context, "ExecSync", containers.exec_sync, self.rt, request.container_id,
                            list(request.cmd), request.timeout, pool=self.waits)
        return pb.ExecSyncResponse(stdout=r.stdout, stderr=r.stderr, exit_code=r.exit_code)

    async def Exec(self, request_iterator: AsyncIterator[pb.ExecStreamRequest],
                   context: Any) -> AsyncIterator[pb.ExecStreamResponse]:
        try:
            first = await anext(aiter(request_iterator), None)
            start, size = exec_stream.check_start(first)
        except Exception as e:
            await self.abort(context, "Exec", e)
            return
        proc = await self.call(context, "Exec", containers.exec_process, self.rt, start.container_id,
                               list(start.cmd), start.tty, start.stdin, size)
        async for resp in exec_stream.stream(proc, start, request_iterator, self.waits):
            yield resp

    async def Attach(self, request_iterator: AsyncIterator[pb.AttachStreamRequest],
                     context: Any) -> AsyncIterator[pb.ExecStreamResponse]:
        try:
            first = await anext(aiter(request_iterator), None)
            async for resp in attach_stream.stream(self.rt, first, request_iterator, self.ops):
                yield resp
        except Exception as e:
            await self.abort(context, "Attach", e)


class ImageServicer(_Base, pb_grpc.ImageServiceServicer):
    def _image(self, ref: str) -> pb.Image | None:
        rec = self.rt.images.image_status(ref)
        if rec is None:
            return None
        return messages.image(rec, self.rt.images.image_config(rec.id))

    async def ListImages(self, request: pb.ListImagesRequest, context: Any) -> pb.ListImagesResponse:
        def work() -> list[pb.Image]:
            if request.filter.image.image:
                one = self._image(request.filter.image.image)
                return [one] if one is not None else []
            return [messages.image(r, self.rt.images.image_config(r.id)) for r in self.rt.images.list_images()]

        return pb.ListImagesResponse(images=await self.call(context, "ListImages", work))

    async def ImageStatus(self, request: pb.ImageStatusRequest, context: Any) -> pb.ImageStatusResponse:
        def work() -> pb.ImageStatusResponse:
            image = self._image(request.image.image)
            resp = pb.ImageStatusResponse(image=image)
            if image is not None and request.verbose:
                resp.info["config"] = json.dumps(self.rt.images.image_config(image.id))
            return resp

        return await self.call(context, "ImageStatus", work)

    async def PullImage(self, request: pb.PullImageRequest, context: Any) -> pb.PullImageResponse:
        name = request.image.image
        try:
            if not name:
                raise InvalidArgument("PullImage: image.image is empty; give a reference like busybox:1.36")
            rec = await self.rt.images.pull_image(name, _credentials(request.auth))
        except Exception as e:
            await self.abort(context, "PullImage", e)
            raise AssertionError("unreachable") from None
        log.info("image=%s ref=%s msg=pulled", name, rec.id)
        return pb.PullImageResponse(image_ref=rec.id)

    async def ImportImage(self, request: pb.ImportImageRequest, context: Any) -> pb.ImportImageResponse:
        try:
            if not request.path:
                raise InvalidArgument("ImportImage: path is empty; give an archive or OCI layout on the node")
            if not os.path.exists(request.path):
                raise NotFound(f"ImportImage: {request.path} does not exist on the runtime's node")
            recs = await self.rt.images.import_image(request.path, request.name or None)
        except Exception as e:
            await self.abort(context, "ImportImage", e)
            raise AssertionError("unreachable") from None
        images = await self.call(context, "ImportImage",
                                 lambda: [messages.image(r, self.rt.images.image_config(r.id)) for r in recs])
        return pb.ImportImageResponse(images=images)

    async def RemoveImage(self, request: pb.RemoveImageRequest, context: Any) -> pb.RemoveImageResponse:
        try:
            if not request.image.image:
                raise InvalidArgument("RemoveImage: image.image is empty")
            await self.rt.images.remove_image(request.image.image)
        except ImageNotFoundError:
            pass  # CRI: removing a removed image is not an error
        except Exception as e:
            await self.abort(context, "RemoveImage", e)
        return pb.RemoveImageResponse()


def _credentials(auth: pb.AuthConfig) -> Credentials | None:
    if auth.auth:
        return Credentials.from_auth(auth.auth)
    if auth.username or auth.password or auth.identity_token or auth.registry_token:
        return Credentials(username=auth.username, password=auth.password,
                           identity_token=auth.identity_token, registry_token=auth.registry_token)
    return None
