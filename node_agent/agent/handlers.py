"""The actions probes and lifecycle hooks run: exec through the runtime, and
HTTP GET and TCP connects made from inside the pod's network namespace.

The runtime may live in another network namespace than the agent (a node
namespace of its own), so the pod's address is not reachable from here. A
socket belongs to the namespace it was created in: one dedicated thread
enters the pod's namespace, creates the socket and comes back; the connect
and the I/O then run on the event loop as usual.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import json
import logging
import os
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

import grpc

from timonel.node_agent.runtime.client import RuntimeClient
from timonel.node_agent.runtime.linux.constants import CLONE_NEWNET
from timonel.node_agent.runtime.linux.syscalls import Syscalls

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# Upstream sends kube-probe/<major>.<minor> and kube-lifecycle/<major>.<minor>.
PROBE_AGENT = "kube-probe/1.31"
HOOK_AGENT = "kube-lifecycle/1.31"
# Upstream reads at most 10 KiB of a probe's response body.
BODY_LIMIT = 10 * 1024
MAX_REDIRECTS = 10


@dataclass
class Outcome:
    ok: bool
    message: str = ""  # the output or the error, for events
    errored: bool = False  # the action could not be run at all (not a verdict on the container)


class HandlerError(Exception):
    """A probe or hook whose target cannot be worked out (an unknown port name)."""


@dataclass
class Target:
    """Where a network action goes: the pod's namespace file (None: the agent's own) and address."""
    netns: str | None
    pod_ip: str


def resolve_port(port: Any, container: Obj) -> int:
    """A port given by number, by numeric string, or by the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for p in container.get("ports") or []:
        if p.get("name") == text:
            return int(p["containerPort"])
    raise HandlerError(f"port {text!r} is not the name of any port of container "
                       f"{container.get('name')!r}; name one of its ports or give a number")


_ns_executor: concurrent.futures.ThreadPoolExecutor | None = None
_ns_lock = threading.Lock()
_local = threading.local()


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _ns_executor
    with _ns_lock:
        if _ns_executor is None:
            _ns_executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="netns")
        return _ns_executor


def _discard_executor() -> None:
    # Its thread may be stuck in a pod's namespace: never use it again.
    global _ns_executor
    with _ns_lock:
        if _ns_executor is not None:
            _ns_executor.shutdown(wait=False)
        _ns_executor = None


def _socket_in(netns: str | None, family: int) -> socket.socket:
    """A TCP socket created inside `netns` (runs on the dedicated thread)."""
    if netns is None:
        return socket.socket(family, socket.SOCK_STREAM)
    if not hasattr(_local, "home"):
        _local.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    sys = Syscalls()
    fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    try:
        sys.setns(fd, CLONE_NEWNET)
    finally:
        os.close(fd)
    try:
        return socket.socket(family, socket.SOCK_STREAM)
    finally:
        try:
            sys.setns(_local.home, CLONE_NEWNET)
        except OSError:
            log.error("could not return to the agent's network namespace; dropping the thread")
            _discard_executor()
            raise


async def connect(target: Target, host: str, port: int, deadline: float) -> socket.socket:
    """A connected non-blocking socket to host:port from the target's namespace."""
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        addr = host
    except ValueError:  # a host name: resolved here, as the kubelet resolves it on the node
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, addr = infos[0][0], str(infos[0][4][0])
    loop = asyncio.get_running_loop()
    sock = await loop.run_in_executor(_executor(), _socket_in, target.netns, family)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (addr, port)), max(0.0, deadline - time.monotonic()))
    except BaseException:
        sock.close()
        raise
    return sock


def net_error(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "i/o timeout"
    if isinstance(e, OSError) and (e.errno or e.strerror):
        # asyncio words a failed connect its own way: the errno's text, as Go prints it.
        text = os.strerror(e.errno) if e.errno else str(e.strerror)
        return text[:1].lower() + text[1:]
    return str(e) or type(e).__name__


async def tcp_check(target: Target, host: str, port: int, timeout: float) -> Outcome:
    """Success when a TCP connection opens (and is closed at once)."""
    host = host or target.pod_ip
    try:
        sock = await connect(target, host, port, time.monotonic() + timeout)
    except (OSError, TimeoutError) as e:
        return Outcome(False, f"dial tcp {hostport(host, port)}: connect: {net_error(e)}")
    sock.close()
    return Outcome(True)


def hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def http_get(target: Target, action: Obj, container: Obj, timeout: float,
                   user_agent: str) -> tuple[int | None, Outcome]:
    """One GET as the kubelet sends it: (status code or None, outcome with 200 <= code < 400).

    Redirects to the same host are followed (at most 10); one to another host ends
    the probe with the redirect's code, as upstream."""
    scheme = str(action.get("scheme") or "HTTP").lower()
    host = str(action.get("host") or target.pod_ip)
    port = resolve_port(action.get("port", 80 if scheme == "http" else 443), container)
    path = str(action.get("path") or "/")
    if not path.startswith("/"):
        path = "/" + path
    headers = {"Host": hostport(host, port), "User-Agent": user_agent, "Accept": "*/*"}
    for h in action.get("httpHeaders") or []:
        # A header the probe names replaces the default of the same name (upstream).
        for k in [k for k in headers if k.lower() == str(h.get("name", "")).lower()]:
            del headers[k]
        headers[str(h.get("name"))] = str(h.get("value", ""))
    deadline = time.monotonic() + timeout
    url = f"{scheme}://{hostport(host, port)}{path}"
    for _ in range(MAX_REDIRECTS + 1):
        try:
            sock = await connect(target, host, port, deadline)
        except (OSError, TimeoutError) as e:
            return None, Outcome(False, f'Get "{url}": dial tcp {hostport(host, port)}: connect: {net_error(e)}')
        try:
            code, location, body = await asyncio.wait_for(_exchange(sock, scheme, host, path, headers),
                                                          max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return None, Outcome(False, f'Get "{url}": context deadline exceeded '
                                        "(Client.Timeout exceeded while awaiting headers)")
        except (OSError, ValueError, ssl.SSLError) as e:
            return None, Outcome(False, f'Get "{url}": {net_error(e)}')
        finally:
            sock.close()
        if not (300 <= code < 400 and location):
            break
        nxt = urllib.parse.urlsplit(urllib.parse.urljoin(url, location))
        if nxt.hostname != host.strip("[]") or nxt.scheme not in ("http", "https"):
            break  # another host: not followed, the redirect's code decides
        scheme, url = nxt.scheme, urllib.parse.urlunsplit(nxt)
        port = nxt.port or (80 if scheme == "http" else 443)
        path = (nxt.path or "/") + (f"?{nxt.query}" if nxt.query else "")
    else:
        return None, Outcome(False, f'Get "{url}": stopped after {MAX_REDIRECTS} redirects')
    if 200 <= code < 400:
        return code, Outcome(True, body)
    return code, Outcome(False, f"HTTP probe failed with statuscode: {code}")


async def _exchange(sock: socket.socket, scheme: str, host: str, path: str,
                    headers: dict[str, str]) -> tuple[int, str, str]:
    """(status code, Location header, body) of one GET on a connected socket."""
    tls = None
    if scheme == "https":
        # As upstream: HTTPS probes do not verify the certificate.
        tls = ssl.create_default_context()
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    reader, writer = await asyncio.open_connection(sock=sock, ssl=tls,
                                                   server_hostname=host if tls else None)
    try:
        head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write((head + "Connection: close\r\n\r\n").encode("latin-1"))
        await writer.drain()
        status = await reader.readline()
        parts = status.decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ValueError(f"malformed HTTP response {status[:80]!r}")
        location = ""
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "location":
                location = value.strip()
        body = b""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            body = await reader.read(BODY_LIMIT)
        return int(parts[1]), location, body.decode("utf-8", "replace")
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def exec_check(runtime: RuntimeClient, cid: str, command: list[str], timeout: float) -> Outcome:
    """The command's exit status inside the container; its output is the message."""
    if not command:
        return Outcome(False, "exec: the command is empty; give the command to run", errored=True)
    try:
        resp = await asyncio.to_thread(runtime.exec_sync, cid, command, max(1, int(timeout)))
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:  # type: ignore[attr-defined]
            return Outcome(False, f"command {json.dumps(' '.join(command))} timed out")
        return Outcome(False, str(e.details()), errored=True)  # type: ignore[attr-defined]
    output = (resp.stdout + resp.stderr).decode("utf-8", "replace")
    return Outcome(resp.exit_code == 0, output)


async def sandbox_target(runtime: RuntimeClient, sid: str, pod_ip: str, host_network: bool) -> Target:
    """The sandbox's network namespace file as the runtime reports it (verbose status)."""
    resp = await asyncio.to_thread(runtime.sandbox_status, sid, True)
    try:
        info = json.loads(resp.info.get("info") or "{}")
    except ValueError:
        info = {}
    path = (info.get("namespaces") or {}).get("net") or info.get("netns")
    if not path or str(path).startswith("/proc/self/"):
        # The runtime's own namespace by its /proc/self name: not resolvable from here;
        # the runtime then runs in the agent's namespace (that is when it uses this name).
        return Target(None, pod_ip)
    if not host_network and not os.path.exists(str(path)):
        log.warning("pod network namespace not visible to the agent sandbox=%s path=%s", sid, path)
        return Target(None, pod_ip)
    return Target(str(path), pod_ip)


def handler_kind(h: Obj) -> str:
    for kind in ("exec", "httpGet", "tcpSocket", "grpc", "sleep"):
        if h.get(kind) is not None:
            return kind
    return ""

