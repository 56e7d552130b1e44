"""A synchronous client of the runtime's API over its unix sockets.

Used by the agent, the `timonel runtime` CLI, the tests and the benchmark.
Errors are grpc.RpcError with the runtime's status code and message. Every
method is a thin wrapper that returns the response's useful part; `runtime`
and `images` are the stubs for anything else. Unary calls go as frames
(api/frames.py) when the runtime serves them, else through gRPC; the streams
always through gRPC.
"""

from __future__ import annotations

import errno
import queue
import select
import socket as sockets
import threading
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any

import grpc

from .api import frames
from .api import runtime_pb2 as pb
from .api import runtime_pb2_grpc as pb_grpc
from .server.options import DEFAULT_SOCKET


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
            f"unix:{socket}", options=[("grpc.max_receive_message_length", frames.MAX_MESSAGE),
                                       ("grpc.max_send_message_length", frames.MAX_MESSAGE)])
        self.frames = FrameConnections(frames.frames_path(socket))
        self._grpc_runtime = pb_grpc.RuntimeServiceStub(self.channel)
        self.runtime: Any = _Stub(self._grpc_runtime, "RuntimeService", self.frames)
        self.images: Any = _Stub(pb_grpc.ImageServiceStub(self.channel), "ImageService", self.frames)

    def close(self) -> None:
        self.frames.close()
        self.channel.close()

    def __enter__(self) -> RuntimeClient:
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def wait_ready(self, timeout: float = 30.0) -> pb.VersionResponse:
        """Poll Version until the runtime answers (it may still be starting). Through gRPC: the
        runtime serves frames once it serves gRPC, and a channel that tried too early waits out
        a back-off before it tries again (streams asked meanwhile would fail at once)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._grpc_runtime.Version(pb.VersionRequest(), timeout=2)
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


_NOT_SERVED = object()


class FrameConnections:
    """Open connections to the runtime's frames socket, each one call at a time; thread-safe."""

    KEEP = 8  # idle connections kept; more are opened while more calls run at once

    def __init__(self, path: str) -> None:
        self.path = path
        self._idle: list[sockets.socket] = []
        self._lock = threading.Lock()

    def call(self, path: str, request: Any, response: type[Any], timeout: float | None) -> Any:
        """The answer to `request`, or _NOT_SERVED when the runtime serves no frames (not
        started yet, or one from before them): the caller then asks through gRPC."""
        conn = self._take()
        if conn is None:
            return _NOT_SERVED
        try:
            conn.settimeout(timeout)
            conn.sendall(frames.request_frame(path, request.SerializeToString()))
            size, code = frames.ANSWER.unpack(_read(conn, frames.ANSWER.size))
            payload = _read(conn, size)
        except TimeoutError:
            conn.close()  # its answer may still come: the connection cannot be used again
            raise frames.FrameRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        except OSError as e:
            conn.close()
            raise frames.FrameRpcError(grpc.StatusCode.UNAVAILABLE,
                                       f"the runtime closed the connection ({e})") from None
        self._give_back(conn)
        if code != frames.OK:
            raise frames.FrameRpcError(frames.CODES.get(code, grpc.StatusCode.UNKNOWN),
                                       payload.decode(errors="replace"))
        return response.FromString(payload)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _take(self) -> sockets.socket | None:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            readable = select.poll()
            readable.register(conn, select.POLLIN)
            if not readable.poll(0):
                return conn  # nothing to read between calls, as it should be
            conn.close()  # the end: the runtime that answered on it has gone (restarted, say)
        conn = sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM | sockets.SOCK_CLOEXEC)
        try:
            conn.connect(self.path)
        except OSError as e:
            conn.close()
            if e.errno in (errno.ENOENT, errno.ECONNREFUSED):
                return None
            raise frames.FrameRpcError(grpc.StatusCode.UNAVAILABLE, f"cannot connect to {self.path}: {e}") from None
        return conn

    def _give_back(self, conn: sockets.socket) -> None:
        with self._lock:
            if len(self._idle) < self.KEEP:
                self._idle.append(conn)
                return
        conn.close()


def _read(conn: sockets.socket, size: int) -> bytes:
    data = conn.recv(size, sockets.MSG_WAITALL) if size else b""
    while len(data) < size:  # MSG_WAITALL may return early (a signal); b"" is the end
        more = conn.recv(size - len(data), sockets.MSG_WAITALL)
        if not more:
            raise ConnectionResetError("the runtime closed the connection")
        data += more
    return data


class _Stub:
    """A generated gRPC stub whose unary methods are asked as frames when the runtime serves them."""

    def __init__(self, stub: Any, service: str, conns: FrameConnections) -> None:
        self._stub, self._service, self._conns = stub, service, conns

    def __getattr__(self, name: str) -> Any:
        via_grpc = getattr(self._stub, name)
        path = frames.path_of(self._service, name)
        if path is None:
            return via_grpc  # a stream
        response, conns = frames.UNARY[path].response, self._conns  # not self: no reference cycle,
        # which would keep a dropped client's gRPC channel open until the cyclic collector ran

        def call(request: Any, timeout: float | None = None, **grpc_only: Any) -> Any:
            if not grpc_only:  # metadata, wait_for_ready...: gRPC's own
                answer = conns.call(path, request, response, timeout)
                if answer is not _NOT_SERVED:
                    return answer
            return via_grpc(request, timeout=timeout, **grpc_only)

        self.__dict__[name] = call
        return call
