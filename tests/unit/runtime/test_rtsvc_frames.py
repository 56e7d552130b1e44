"""The unary calls as frames (api/frames.py, server/frames.py, client.FrameConnections): answers,
statuses and failures as gRPC gives them, against a servicer on a real unix socket (no root)."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from timonel.node_agent.runtime import client as client_module
from timonel.node_agent.runtime.api import frames as api
from timonel.node_agent.runtime.api import runtime_pb2 as pb
from timonel.node_agent.runtime.client import FrameConnections, RuntimeClient
from timonel.node_agent.runtime.server import frames


class Servicer:
    """A RuntimeService with the servicers' ways: answers, context.abort, a bug, a long wait."""

    def __init__(self) -> None:
        self.waits_cancelled = 0
        self.release = asyncio.Event()

    async def Version(self, request: pb.VersionRequest, context: Any) -> pb.VersionResponse:
        return pb.VersionResponse(version=request.version or "none", runtime_name="fake")

    async def ContainerStatus(self, request: pb.ContainerStatusRequest, context: Any) -> pb.ContainerStatusResponse:
        if request.container_id == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "container missing: not found")
        if request.container_id == "bug":
            raise ValueError("a bug")
        return pb.ContainerStatusResponse(status=pb.ContainerStatus(id=request.container_id, pid=7))

    async def StartContainer(self, request: pb.StartContainerRequest, context: Any) -> pb.StartContainerResponse:
        return pb.StartContainerResponse()  # an empty answer: no payload at all

    async def WaitContainer(self, request: pb.WaitContainerRequest, context: Any) -> pb.WaitContainerResponse:
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.waits_cancelled += 1
            raise
        return pb.WaitContainerResponse(status=pb.ContainerStatus(id=request.container_id, exit_code=3))


class Served:
    """The frames server on its own event loop thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.loop = asyncio.new_event_loop()
        self.servicer: Servicer | None = None
        self.server: asyncio.Server | None = None
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self) -> Served:
        async def go() -> None:
            self.servicer = Servicer()
            self.server = await frames.start(self.path, frames.handlers({"RuntimeService": self.servicer}), 0o600)

        self.run(go())
        return self

    def stop(self) -> None:
        async def go() -> None:
            assert self.server is not None
            self.server.close()
            for task in asyncio.all_tasks():  # the connections' handlers, as the daemon's exit ends them
                if task is not asyncio.current_task():
                    task.cancel()

        self.run(go())
        Path(self.path).unlink(missing_ok=True)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(str(tmp_path / "rt.sock") + api.SUFFIX).start()
    yield s
    s.stop()
    s.loop.call_soon_threadsafe(s.loop.stop)


def path(method: str) -> str:
    found = api.path_of("RuntimeService", method)
    assert found is not None
    return found


def test_every_unary_method_and_no_stream_is_framed() -> None:
    services = pb.DESCRIPTOR.services_by_name
    unary = {m.name for s in services.values() for m in s.methods if not m.client_streaming and not m.server_streaming}
    assert {m.name for m in api.UNARY.values()} == unary
    assert api.path_of("RuntimeService", "Exec") is None and api.path_of("RuntimeService", "Attach") is None
    assert api.path_of("RuntimeService", "Version") == "/timonel.runtime.v1.RuntimeService/Version"
    assert api.UNARY[path("ListContainers")].response is pb.ListContainersResponse


def test_answers_and_statuses_are_grpcs(served: Served) -> None:
    conns = FrameConnections(served.path)
    got = conns.call(path("Version"), pb.VersionRequest(version="v9"), pb.VersionResponse, 5)
    assert got == pb.VersionResponse(version="v9", runtime_name="fake")
    got = conns.call(path("ContainerStatus"), pb.ContainerStatusRequest(container_id="c1"),
                     pb.ContainerStatusResponse, 5)
    assert got.status.id == "c1" and got.status.pid == 7
    assert conns.call(path("StartContainer"), pb.StartContainerRequest(container_id="c1"),
                      pb.StartContainerResponse, 5) == pb.StartContainerResponse()
    with pytest.raises(grpc.RpcError) as e:
        conns.call(path("ContainerStatus"), pb.ContainerStatusRequest(container_id="missing"),
                   pb.ContainerStatusResponse, 5)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    assert e.value.details() == "container missing: not found"  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as e:
        conns.call(path("ContainerStatus"), pb.ContainerStatusRequest(container_id="bug"),
                   pb.ContainerStatusResponse, 5)
    assert e.value.code() == grpc.StatusCode.UNKNOWN and "a bug" in e.value.details()  # type: ignore[attr-defined]
    with pytest.raises(grpc.RpcError) as e:  # served by the daemon's servicers, not by this one
        conns.call(path("ListContainers"), pb.ListContainersRequest(), pb.ListContainersResponse, 5)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED  # type: ignore[attr-defined]
    # Failed calls leave their connection usable: one connection served all of these.
    assert len(conns._idle) == 1
    conns.close()


def test_calls_at_once_each_get_their_own_answer(served: Served) -> None:
    conns = FrameConnections(served.path)
    answers: dict[int, str] = {}

    def ask(i: int) -> None:
        for _ in range(20):
            got = conns.call(path("Version"), pb.VersionRequest(version=str(i)), pb.VersionResponse, 5)
            assert got.version == str(i)
        answers[i] = got.version

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == {i: str(i) for i in range(12)}
    assert 1 <= len(conns._idle) <= FrameConnections.KEEP
    conns.close()


def test_no_frames_socket_means_grpc(tmp_path: Path) -> None:
    """A runtime from before the frames, or one still starting: the stub asks through gRPC."""
    client = RuntimeClient(str(tmp_path / "rt.sock"))
    assert client.frames.call(path("Version"), pb.VersionRequest(), pb.VersionResponse, 1) is client_module._NOT_SERVED
    with pytest.raises(grpc.RpcError) as e:
        client.runtime.Version(pb.VersionRequest(), timeout=0.5)
    assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)  # type: ignore[attr-defined]
    assert not isinstance(e.value, api.FrameRpcError)
    client.close()


def test_a_restarted_runtime_is_reached_on_a_new_connection(served: Served) -> None:
    conns = FrameConnections(served.path)
    assert conns.call(path("Version"), pb.VersionRequest(version="a"), pb.VersionResponse, 5).version == "a"
    served.stop()
    time.sleep(0.1)
    served.start()
    # The kept connection was to the old server: not used, and the call is not failed for it.
    assert conns.call(path("Version"), pb.VersionRequest(version="b"), pb.VersionResponse, 5).version == "b"
    conns.close()


def test_a_runtime_that_goes_mid_call_is_unavailable(served: Served) -> None:
    conns = FrameConnections(served.path)
    pending: dict[str, BaseException] = {}

    def wait() -> None:
        try:
            conns.call(path("WaitContainer"), pb.WaitContainerRequest(container_id="c"), pb.WaitContainerResponse, None)
        except BaseException as e:
            pending["error"] = e

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.3)
    served.stop()
    t.join(10)
    assert isinstance(pending["error"], grpc.RpcError)
    assert pending["error"].code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]


def test_a_deadline_ends_the_call_and_its_connection(served: Served) -> None:
    conns = FrameConnections(served.path)
    t0 = time.monotonic()
    with pytest.raises(grpc.RpcError) as e:
        conns.call(path("WaitContainer"), pb.WaitContainerRequest(container_id="c"), pb.WaitContainerResponse, 0.3)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    assert 0.25 < time.monotonic() - t0 < 5
    assert conns._idle == []  # its answer could still come: never reused
    # The server sees the hang-up and cancels the wait, as gRPC cancels a call whose client went.
    deadline = time.monotonic() + 5
    assert served.servicer is not None
    while served.servicer.waits_cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert served.servicer.waits_cancelled == 1
    # A wait that ends is answered.
    done: dict[str, Any] = {}
    t = threading.Thread(target=lambda: done.update(r=conns.call(
        path("WaitContainer"), pb.WaitContainerRequest(container_id="d"), pb.WaitContainerResponse, 5)))
    t.start()
    time.sleep(0.2)
    served.loop.call_soon_threadsafe(served.servicer.release.set)
    t.join(5)
    assert done["r"].status.id == "d" and done["r"].status.exit_code == 3
    conns.close()


def test_a_request_beyond_the_limit_is_refused(served: Served) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(served.path)
        name = path("Version").encode()
        s.sendall(api.REQUEST.pack(api.MAX_MESSAGE + 1, len(name)) + name)
        size, code = api.ANSWER.unpack(s.recv(api.ANSWER.size, socket.MSG_WAITALL))
        assert api.CODES[code] == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert b"exceeds" in s.recv(size, socket.MSG_WAITALL)
        assert s.recv(1) == b""  # and the connection ends: its payload was never read


def test_a_dropped_client_goes_at_once(tmp_path: Path) -> None:
    """No reference cycle: a client dropped without close() lets go of its gRPC channel at
    once, not whenever the cyclic collector runs (a channel still open holds gRPC's threads,
    which a process that forks later, like a test's fork server, must not have)."""
    gc.disable()
    try:
        client = RuntimeClient(str(tmp_path / "rt.sock"))
        client.runtime.Version  # noqa: B018 - makes the framed method, as a call does
        client.images.ImageStatus  # noqa: B018
        stubs = [weakref.ref(client.runtime), weakref.ref(client.images)]
        del client
        assert [ref() for ref in stubs] == [None, None]
    finally:
        gc.enable()
