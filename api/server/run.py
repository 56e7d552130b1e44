"""Starting and stopping a whole API server: etcd, TLS, credentials, HTTPS.

Start-up is a list of small named steps; a failing step says which it was
and what to do, and undoes the steps before it (like kind's cluster steps).
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from timonel.api import kubeconfig, tls
from timonel.api.auth.join import ensure_join_token
from timonel.api.auth.tokens import ensure_admin_token, token_file
from timonel.api.process_memory import freeze_start_up_objects
from timonel.api.server.app import ServerConfig, make_app
from timonel.api.server.loopback_socket import remove_loopback_socket, serve_loopback_socket
from timonel.api.storage.etcd_process import EtcdProcess, EtcdStartError, start_embedded

log = logging.getLogger(__name__)


def default_data_dir() -> str:
    if os.geteuid() == 0:
        return "/var/lib/timonel"
    return os.path.join(os.path.expanduser("~"), ".local", "share", "timonel")


@dataclass
class ServerOptions:
    data_dir: str = field(default_factory=default_data_dir)
    bind_address: str = "127.0.0.1"
    port: int = 6443
    etcd_endpoints: list[str] = field(default_factory=list)
    tls_sans: list[str] = field(default_factory=list)


@dataclass
class RunningServer:
    url: str
    kubeconfig_path: str
    token: str
    ca_pem: bytes
    runner: web.AppRunner | None = None
    etcd: EtcdProcess | None = None
    app: web.Application | None = None
    # The same API over plain HTTP on a unix socket only this user can open: for the
    # server's own scheduler and controllers (loopback_socket.py says why).
    socket_path: str = ""

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
        if self.socket_path:
            remove_loopback_socket(self.socket_path)
            self.socket_path = ""
        if self.etcd is not None:
            await self.etcd.astop()
            self.etcd = None


class StartError(RuntimeError):
    """A start-up step failed; the message says which and what to do."""


def client_host(bind_address: str) -> str:
    if bind_address in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{bind_address}]" if ":" in bind_address else bind_address


async def start(opts: ServerOptions) -> RunningServer:
    undo: list[Callable[[], Awaitable[Any]]] = []
    state: dict[str, Any] = {}

    async def data_dir() -> None:
        os.makedirs(opts.data_dir, mode=0o700, exist_ok=True)

    async def etcd() -> None:
        if opts.etcd_endpoints:
            state["endpoints"] = opts.etcd_endpoints
            return
        proc = start_embedded(os.path.join(opts.data_dir, "etcd"))
        state["etcd"] = proc
        state["endpoints"] = [proc.endpoint]
        undo.append(proc.astop)

    async def certificates() -> None:
        sans = [opts.bind_address, *opts.tls_sans] if opts.bind_address not in ("0.0.0.0", "::") \
            else list(opts.tls_sans)
        state["tls"] = tls.ensure_apiserver_files(os.path.join(opts.data_dir, "tls"), sans)

    async def credentials() -> None:
        state["token"] = ensure_admin_token(opts.data_dir)
        state["join_token"] = ensure_join_token(opts.data_dir, state["tls"].ca_pem)

    async def serve() -> None:
        app = make_app(ServerConfig(etcd_endpoints=state["endpoints"],
                                    token_file=token_file(opts.data_dir),
                                    tls_dir=state["tls"].dir, join_token=state["join_token"]))
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        undo.append(runner.cleanup)
        ctx = tls.server_ssl_context(state["tls"])
        site = web.TCPSite(runner, opts.bind_address, opts.port, ssl_context=ctx,
                           reuse_address=True, backlog=1024)
        try:
            await site.start()
        except OSError as e:
            raise StartError(f"cannot listen on {opts.bind_address}:{opts.port}: {e.strerror}; "
                             "pick another --port or stop what uses it") from None
        state["runner"], state["app"] = runner, app
        state["socket"] = socket_path = await serve_loopback_socket(runner, opts.data_dir)

        async def drop_socket() -> None:
            remove_loopback_socket(socket_path)

        undo.append(drop_socket)

    async def admin_kubeconfig() -> None:
        url = f"https://{client_host(opts.bind_address)}:{opts.port}"
        state["url"] = url
        path = os.path.join(opts.data_dir, "admin.kubeconfig")
        kubeconfig.write_kubeconfig(path, url, state["tls"].ca_pem, token=state["token"])
        state["kubeconfig"] = path

    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("prepare the data directory", data_dir),
        ("start etcd", etcd),
        ("generate TLS certificates", certificates),
        ("create the admin credentials", credentials),
        ("serve HTTPS", serve),
        ("write the admin kubeconfig", admin_kubeconfig),
    ]
    for name, step in steps:
        try:
            await step()
        except StartError:
            await _rollback(undo)
            raise
        except (EtcdStartError, ConnectionError) as e:
            await _rollback(undo)
            raise StartError(f"could not {name}: {e}") from None
        except OSError as e:
            await _rollback(undo)
            raise StartError(f"could not {name}: {e}; check permissions on {opts.data_dir} "
                             "or pass --data-dir") from None
        log.debug("step done: %s", name)
    _tune_gc()
    log.info("api server ready url=%s kubeconfig=%s", state["url"], state["kubeconfig"])
    return RunningServer(url=state["url"], kubeconfig_path=state["kubeconfig"],
                         token=state["token"], ca_pem=state["tls"].ca_pem,
                         runner=state["runner"], etcd=state.get("etcd"), app=state["app"],
                         socket_path=state["socket"])


async def _rollback(undo: list[Callable[[], Awaitable[Any]]]) -> None:
    for fn in reversed(undo):
        try:
            await fn()
        except Exception as e:  # rollback must go on
            log.warning("rollback step failed: %r", e)


def _tune_gc() -> None:
    """Fewer, cheaper garbage collections: the watch caches hold many long-lived
    dicts, and collections walking them showed up as create-latency spikes.
    Objects alive after start-up (schemas, documents) are frozen out of them."""
    freeze_start_up_objects()
    gc.set_threshold(50_000, 20, 100)
