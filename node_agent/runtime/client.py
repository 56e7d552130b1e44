"""A synchronous client of the runtime's gRPC API over its unix socket.

Used by the `timonel runtime` CLI, the tests and the benchmark. Errors are
grpc.RpcError with the runtime's status code and message. Every method is a
thin wrapper that returns the response's useful part; `runtime` and `images`
are the raw stubs for anything else.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

import grpc

from .api import runtime_pb2 as pb
from .api import runtime_pb2_grpc as pb_grpc
from .server.options import DEFAULT_SOCKET

_MAX_MESSAGE = 64 << 20


class ExecSession:
    """A running Exec or Attach stream: send input, resize, read output; `exit_code` once it ended.

    Iterating yields (stream, bytes) with stream "stdout" or "stderr" until the
    process has exited (or, for attach, the session ended: then `exit_code` may be None).
    """

    def __init__(self, stub: pb_grpc.RuntimeServiceStub, start: pb.ExecRequest | pb.AttachRequest,
                 size: tuple[int, int] | None = None):
        attach = isinstance(start, pb.AttachRequest)
        self._msg: Any = pb.AttachStreamRequest if attach else pb.ExecStreamRequest
        self._requests: queue.Queue[Any] = queue.Queue()
        first = self._msg(start=start)
        if size:
            first.resize.width, first.resize.height = size[1], size[0]
        self._requests.put(first)
        self._call = (stub.Attach if attach else stub.Exec)(self._generate())
        self.exit_code: int | None = None

    def _generate(self) -> Iterator[Any]:
        while True:
            item = self._requests.get()
            if item is None:
                return
            yield item

    def send(self, data: bytes) -> None:
        self._requests.put(self._msg(stdin=data))

    def close_stdin(self) -> None:
        self._requests.put(self._msg(close_stdin=True))

    def resize(self, rows: int, cols: int) -> None:
        self._requests.put(self._msg(resize=pb.TerminalSize(width=cols, height=rows)))

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        try:
            for resp in self._call:
                if resp.stdout:
                    yield "stdout", resp.stdout
                if resp.stderr:
                    yield "stderr", resp.stderr
                if resp.HasField("exit"):
                    self.exit_code = resp.exit.exit_code
        finally:
            self._requests.put(None)

    def collect(self) -> tuple[int | None, bytes, bytes]:
        """Read to the end: (exit code, stdout, stderr)."""
        out = {"stdout": bytearray(), "stderr": bytearray()}
        for kind, data in self:
            out[kind] += data
        return self.exit_code, bytes(out["stdout"]), bytes(out["stderr"])

    def cancel(self) -> None:
        self._requests.put(None)
        self._call.cancel()


class RuntimeClient:
    def __init__(self, socket: str = DEFAULT_SOCKET, timeout: float = 300.0):
        self.socket = socket
        self.timeout = timeout
        self.channel = grpc.insecure_channel(
            f"unix:{socket}", options=[("grpc.max_receive_message_length", _MAX_MESSAGE),
                                       ("grpc.max_send_message_length", _MAX_MESSAGE)])
        self.runtime = pb_grpc.RuntimeServiceStub(self.channel)
        self.images = pb_grpc.ImageServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> RuntimeClient:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def wait_ready(self, timeout: float = 30.0) -> pb.VersionResponse:
        """Poll Version until the runtime answers (it may still be starting)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.runtime.Version(pb.VersionRequest(), timeout=2)
            except grpc.RpcError as e:
                if time.monotonic() >= deadline or e.code() not in (grpc.StatusCode.UNAVAILABLE,
                                                                    grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise
                time.sleep(0.05)

    # -- runtime --
    def version(self) -> pb.VersionResponse:
        return self.runtime.Version(pb.VersionRequest(), timeout=self.timeout)

    def status(self, verbose: bool = False) -> pb.StatusResponse:
        return self.runtime.Status(pb.StatusRequest(verbose=verbose), timeout=self.timeout)

    def run_sandbox(self, config: pb.PodSandboxConfig) -> str:
        resp = self.runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=config), timeout=self.timeout)
        return resp.pod_sandbox_id

    def stop_sandbox(self, sid: str) -> None:
        self.runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=self.timeout)

    def remove_sandbox(self, sid: str) -> None:
        self.runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=self.timeout)

    def sandbox_status(self, sid: str, verbose: bool = False) -> pb.PodSandboxStatusResponse:
        return self.runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid, verbose=verbose),
                                             timeout=self.timeout)

    def list_sandboxes(self, filter: pb.PodSandboxFilter | None = None) -> list[pb.PodSandbox]:
        return list(self.runtime.ListPodSandbox(pb.ListPodSandboxRequest(filter=filter), timeout=self.timeout).items)

    def create_container(self, sid: str, config: pb.ContainerConfig,
                         sandbox_config: pb.PodSandboxConfig | None = None) -> str:
        req = pb.CreateContainerRequest(pod_sandbox_id=sid, config=config, sandbox_config=sandbox_config)
        return self.runtime.CreateContainer(req, timeout=self.timeout).container_id

    def start_container(self, cid: str) -> None:
        self.runtime.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=self.timeout)

    def stop_container(self, cid: str, timeout: int = 10) -> None:
        self.runtime.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=timeout),
                                   timeout=self.timeout + timeout)

    def remove_container(self, cid: str) -> None:
        self.runtime.RemoveContainer(pb.RemoveContainerRequest(container_id=cid), timeout=self.timeout)

    def list_containers(self, filter: pb.ContainerFilter | None = None) -> list[pb.Container]:
        resp = self.runtime.ListContainers(pb.ListContainersRequest(filter=filter), timeout=self.timeout)
        return list(resp.containers)

    def container_status(self, cid: str, verbose: bool = False) -> pb.ContainerStatusResponse:
        return self.runtime.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=verbose),
                                            timeout=self.timeout)

    def wait_container(self, cid: str, timeout: int = 0) -> pb.ContainerStatus:
        """Until the container exits (or `timeout` seconds; 0: no limit)."""
        resp = self.runtime.WaitContainer(pb.WaitContainerRequest(container_id=cid, timeout=timeout),
                                          timeout=timeout + self.timeout if timeout else None)
        return resp.status

    def reopen_log(self, cid: str) -> None:
        self.runtime.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid), timeout=self.timeout)

    def container_stats(self, cid: str) -> pb.ContainerStats:
        return self.runtime.ContainerStats(pb.ContainerStatsRequest(container_id=cid), timeout=self.timeout).stats

    def exec_sync(self, cid: str, cmd: Iterable[str], timeout: int = 0) -> pb.ExecSyncResponse:
        return self.runtime.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=list(cmd), timeout=timeout),
                                     timeout=timeout + self.timeout if timeout else None)

    def exec(self, cid: str, cmd: Iterable[str], tty: bool = False, stdin: bool = False,
             size: tuple[int, int] | None = None) -> ExecSession:
        """Start a streaming exec; `size` is the terminal's (rows, cols)."""
        start = pb.ExecRequest(container_id=cid, cmd=list(cmd), tty=tty, stdin=stdin, stdout=True,
                               stderr=not tty)
        return ExecSession(self.runtime, start, size)

    def attach(self, cid: str, stdin: bool = False, tty: bool = False, stdout: bool = True,
               stderr: bool = True, size: tuple[int, int] | None = None) -> ExecSession:
        """Attach to a container's own stdio; output from now on. `tty` is taken from the
        container (a tty container's output all comes as stdout); `size` is (rows, cols)."""
        start = pb.AttachRequest(container_id=cid, stdin=stdin, tty=tty, stdout=stdout, stderr=stderr)
        return ExecSession(self.runtime, start, size)

    # -- images --
    def pull_image(self, image: str, auth: pb.AuthConfig | None = None) -> str:
        req = pb.PullImageRequest(image=pb.ImageSpec(image=image), auth=auth)
        return self.images.PullImage(req, timeout=None).image_ref

    def import_image(self, path: str, name: str = "") -> list[pb.Image]:
        return list(self.images.ImportImage(pb.ImportImageRequest(path=path, name=name), timeout=None).images)

    def list_images(self) -> list[pb.Image]:
        return list(self.images.ListImages(pb.ListImagesRequest(), timeout=self.timeout).images)

    def image_status(self, image: str, verbose: bool = False) -> pb.ImageStatusResponse:
        req = pb.ImageStatusRequest(image=pb.ImageSpec(image=image), verbose=verbose)
        return self.images.ImageStatus(req, timeout=self.timeout)

    def remove_image(self, image: str) -> None:
        self.images.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=image)), timeout=self.timeout)
