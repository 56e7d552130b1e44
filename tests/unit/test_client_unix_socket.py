"""The Client over a unix socket (the API server's own loopback): both its
pools use the socket, with plain HTTP, and still send the bearer token; a
request that waits out a Retry-After gives its connection back meanwhile."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
from pathlib import Path

import aiohttp
from aiohttp import web

from timonel.api.client import Client
from timonel.api.kubeconfig import ClusterConfig

CM = ("v1", "ConfigMap")


async def _get(request: web.Request) -> web.Response:
    return web.json_response({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": request.match_info["name"]},
                              "data": {"auth": request.headers.get("Authorization", "")}})


async def _list_or_watch(request: web.Request) -> web.StreamResponse:
    assert request.query.get("watch") == "true"
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}}
    await resp.write(json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n")
    await resp.write_eof()
    return resp


async def test_both_pools_go_through_the_socket_with_the_token(tmp_path: Path) -> None:
    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{ns}/configmaps/{name}", _get)
    app.router.add_get("/api/v1/namespaces/{ns}/configmaps", _list_or_watch)
    runner = web.AppRunner(app)
    await runner.setup()
    path = str(tmp_path / "api.sock")
    await web.UnixSite(runner, path).start()
    config = ClusterConfig(server="http://localhost", token="secret", unix_socket=path)
    try:
        async with Client(config) as client:
            got = await client.get(CM, "default", "x")
            assert got["data"]["auth"] == "Bearer secret"
            async with aclosing(client.watch(CM, "default")) as events:
                assert [(t, o["metadata"]["name"]) async for t, o in events] == [("ADDED", "w")]
            assert isinstance(client.session().connector, aiohttp.UnixConnector)
            assert isinstance(client.watch_session().connector, aiohttp.UnixConnector)
    finally:
        await runner.cleanup()


async def test_without_a_socket_the_pools_are_tcp() -> None:
    async with Client(ClusterConfig(server="http://127.0.0.1:1")) as client:
        assert type(client.session().connector) is aiohttp.TCPConnector
        assert type(client.watch_session().connector) is aiohttp.TCPConnector


async def test_a_request_waiting_out_retry_after_leaves_the_connection_to_others(tmp_path: Path) -> None:
    asked: list[str] = []

    async def busy_once(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        asked.append(name)
        if name == "slow" and asked.count("slow") == 1:
            return web.json_response({"kind": "Status", "code": 429, "reason": "TooManyRequests"},
                                     status=429, headers={"Retry-After": "2"})
        return await _get(request)

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{ns}/configmaps/{name}", busy_once)
    runner = web.AppRunner(app)
    await runner.setup()
    path = str(tmp_path / "api.sock")
    await web.UnixSite(runner, path).start()
    try:
        async with Client(ClusterConfig(server="http://localhost", unix_socket=path), pool_size=1) as client:
            slow = asyncio.create_task(client.get(CM, "default", "slow"))
            while not asked:
                await asyncio.sleep(0.01)
            # The one connection is free during slow's 2 s wait: this is answered first.
            fast = await asyncio.wait_for(client.get(CM, "default", "fast"), 1.5)
            assert fast["metadata"]["name"] == "fast" and not slow.done()
            assert (await slow)["metadata"]["name"] == "slow"
            assert asked == ["slow", "fast", "slow"]
    finally:
        await runner.cleanup()
