"""The API server's loopback unix socket: owner-only, stale files replaced, a live one never stolen."""

from __future__ import annotations

import os
import socket
import stat

import aiohttp
import pytest
from aiohttp import web

from timonel.api.server.loopback_socket import (
    SOCKET_NAME,
    remove_loopback_socket,
    serve_loopback_socket,
)


async def _pong(_: web.Request) -> web.Response:
    return web.Response(text="pong")


async def _runner() -> web.AppRunner:
    app = web.Application()
    app.router.add_get("/ping", _pong)
    runner = web.AppRunner(app)
    await runner.setup()
    return runner


async def _ping(path: str) -> str:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=path)) as http, \
            http.get("http://localhost/ping") as r:
        return await r.text()


async def test_served_owner_only_and_removed(tmp_path) -> None:
    runner = await _runner()
    try:
        path = await serve_loopback_socket(runner, str(tmp_path))
        assert path == os.path.join(str(tmp_path), SOCKET_NAME)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert await _ping(path) == "pong"
    finally:
        await runner.cleanup()
    remove_loopback_socket(path)
    assert not os.path.exists(path)


async def test_a_stale_socket_is_replaced_a_live_one_is_not(tmp_path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / SOCKET_NAME))
    stale.close()  # the file stays, nobody listens: a server that died
    first, second = await _runner(), await _runner()
    try:
        path = await serve_loopback_socket(first, str(tmp_path))
        assert await _ping(path) == "pong"
        with pytest.raises(OSError, match="another API server is serving"):
            await serve_loopback_socket(second, str(tmp_path))
        assert await _ping(path) == "pong"
    finally:
        await first.cleanup()
        await second.cleanup()


async def test_a_data_dir_too_deep_for_a_socket_path_gets_a_private_temp_dir(tmp_path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    runner = await _runner()
    try:
        path = await serve_loopback_socket(runner, str(deep))
        assert not path.startswith(str(deep)) and len(path) < 100
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        assert await _ping(path) == "pong"
    finally:
        await runner.cleanup()
    remove_loopback_socket(path)
    assert not os.path.exists(os.path.dirname(path))


async def test_a_file_that_is_not_a_socket_is_left_alone(tmp_path) -> None:
    (tmp_path / SOCKET_NAME).write_text("someone's notes")
    runner = await _runner()
    try:
        with pytest.raises(OSError, match="exists and is not a socket"):
            await serve_loopback_socket(runner, str(tmp_path))
    finally:
        await runner.cleanup()
    assert (tmp_path / SOCKET_NAME).read_text() == "someone's notes"
