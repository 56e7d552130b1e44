"""Lifecycle hooks against a recording fake of the runtime's ExecSync and a
loopback HTTP server: what counts as failure, the messages, and the grace
a preStop hook leaves for the stop."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from timonel.node_agent.agent import hooks
from timonel.node_agent.agent.handlers import Target, exec_check
from timonel.node_agent.runtime.api import runtime_pb2 as pb

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {}}


class FakeRuntime:
    def __init__(self, exit_code: int = 0, output: bytes = b"", delay: float = 0.0,
                 error: grpc.RpcError | None = None) -> None:
        self.exit_code, self.output, self.delay, self.error = exit_code, output, delay, error
        self.calls: list[tuple[str, list[str], int]] = []

    def exec_sync(self, cid: str, cmd: list[str], timeout: int = 0) -> pb.ExecSyncResponse:
        self.calls.append((cid, list(cmd), timeout))
        if self.error is not None:
            raise self.error
        time.sleep(self.delay)
        return pb.ExecSyncResponse(stdout=self.output, exit_code=self.exit_code)


class Refused(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "container is not running"


async def loopback() -> Target:
    return Target(None, "127.0.0.1")


def container(**lifecycle: Any) -> dict[str, Any]:
    return {"name": "app", "lifecycle": lifecycle}


async def test_no_hook_is_success_and_exec_runs_without_limit() -> None:
    rt = FakeRuntime()
    assert await hooks.post_start(rt, POD, {"name": "app"}, "c1", loopback) is None  # type: ignore[arg-type]
    c = container(postStart={"exec": {"command": ["sh", "-c", "echo hi"]}})
    assert await hooks.post_start(rt, POD, c, "c1", loopback) is None  # type: ignore[arg-type]
    assert rt.calls == [("c1", ["sh", "-c", "echo hi"], 0)]


async def test_exec_failure_message() -> None:
    rt = FakeRuntime(exit_code=3, output=b"nope\n")
    c = container(postStart={"exec": {"command": ["sh", "-c", "exit 3"]}})
    err = await hooks.post_start(rt, POD, c, "c1", loopback)  # type: ignore[arg-type]
    assert err == ("Exec lifecycle hook ([sh -c exit 3]) for Container \"app\" in Pod \"p_ns(u1)\" failed - "
                   "error: command 'sh -c exit 3' exited with 3: , message: 'nope\\n'")
    err = await hooks.post_start(FakeRuntime(error=Refused()), POD, c, "c1", loopback)  # type: ignore[arg-type]
    assert err is not None and "failed - error: container is not running" in err


async def test_tcp_socket_is_not_a_runnable_hook() -> None:
    c = container(postStart={"tcpSocket": {"port": 80}})
    err = await hooks.post_start(FakeRuntime(), POD, c, "c1", loopback)  # type: ignore[arg-type]
    assert err is not None and err.startswith("Cannot run handler: invalid handler")


async def test_http_hook_takes_any_answer_but_needs_one() -> None:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    c = container(preStop={"httpGet": {"path": "/quit", "port": port}})
    try:
        assert await hooks.pre_stop(FakeRuntime(), POD, c, "c1", loopback, 30) == (30, None)  # type: ignore[arg-type]
    finally:
        server.close()
        await server.wait_closed()
    left, err = await hooks.pre_stop(FakeRuntime(), POD, c, "c1", loopback, 30)  # type: ignore[arg-type]
    assert left == 30 and err is not None
    assert err.startswith('HTTP lifecycle hook (/quit) for Container "app" in Pod "p_ns(u1)" failed - error: ')
    assert "connection refused" in err


async def test_pre_stop_uses_up_the_grace_but_leaves_two_seconds() -> None:
    c = container(preStop={"sleep": {"seconds": 1}})
    started = time.monotonic()
    left, err = await hooks.pre_stop(FakeRuntime(), POD, c, "c1", loopback, 5)  # type: ignore[arg-type]
    assert err is None and time.monotonic() - started >= 1.0 and left in (3, 4)
    # A hook longer than the grace is cut off at the grace; the stop still gets 2 s.
    c = container(preStop={"exec": {"command": ["sleep", "10"]}})
    rt = FakeRuntime(delay=1.5)
    left, err = await hooks.pre_stop(rt, POD, c, "c1", loopback, 1)  # type: ignore[arg-type]
    assert (left, err) == (hooks.MIN_GRACE_SECONDS, None) and rt.calls[0][2] == 1
    # No grace at all (a forced stop): the hook is not run.
    rt = FakeRuntime()
    assert await hooks.pre_stop(rt, POD, c, "c1", loopback, 0) == (0, None)  # type: ignore[arg-type]
    assert rt.calls == []


async def test_exec_probe_verdicts() -> None:
    rt = FakeRuntime(exit_code=1, output=b"not yet\n")
    out = await exec_check(rt, "c1", ["cat", "/tmp/x"], 1.0)  # type: ignore[arg-type]
    assert (out.ok, out.message, out.errored) == (False, "not yet\n", False)
    assert rt.calls == [("c1", ["cat", "/tmp/x"], 1)]
    out = await exec_check(FakeRuntime(), "c1", ["true"], 1.0)  # type: ignore[arg-type]
    assert out.ok
    timed_out = FakeRuntime(error=Refused(grpc.StatusCode.DEADLINE_EXCEEDED))
    out = await exec_check(timed_out, "c1", ["sleep", "9"], 1.0)  # type: ignore[arg-type]
    assert (out.ok, out.message, out.errored) == (False, 'command "sleep 9" timed out', False)
    out = await exec_check(FakeRuntime(error=Refused()), "c1", ["true"], 1.0)  # type: ignore[arg-type]
    assert (out.ok, out.message, out.errored) == (False, "container is not running", True)
