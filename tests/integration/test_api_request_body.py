"""Request bodies that arrive in pieces are read to their end (kubectl writes a
large object over several TLS records; one read returned only the first)."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests

from tests.integration.conftest import ApiServer


def config_map(namespace: str, name: str) -> bytes:
    # Well past one TLS record (16 KiB), so the body needs several reads.
    data = {f"key{i}": "v" * 500 for i in range(100)}
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": name, "namespace": namespace}, "data": data}).encode()


def test_body_with_content_length_sent_in_pauses(api_server: ApiServer, http: requests.Session,
                                                 namespace: str) -> None:
    body = config_map(namespace, "paused")
    url = urlsplit(api_server.url)
    head = (f"POST /api/v1/namespaces/{namespace}/configmaps HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\nAuthorization: Bearer {api_server.token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    context = ssl.create_default_context(cafile=api_server.ca_file)
    with socket.create_connection((url.hostname, url.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=url.hostname) as tls:
        tls.sendall(head + body[:100])
        for start in range(100, len(body), 7000):
            time.sleep(0.05)
            tls.sendall(body[start:start + 7000])
        reply = b""
        while chunk := tls.recv(65536):
            reply += chunk
    status_line = reply.split(b"\r\n", 1)[0]
    assert b" 201 " in status_line, reply[:600]
    got = http.get(f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps/paused").json()
    assert got["data"] == json.loads(body)["data"]


def test_chunked_body_sent_in_pauses(api_server: ApiServer, http: requests.Session, namespace: str) -> None:
    body = config_map(namespace, "chunked")

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(body), 9000):
            yield body[start:start + 9000]
            time.sleep(0.05)

    r = http.post(f"{api_server.url}/api/v1/namespaces/{namespace}/configmaps", data=pieces(),
                  headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text[:600]
    assert r.json()["data"] == json.loads(body)["data"]
