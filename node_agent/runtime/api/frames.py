"""The runtime API's unary calls as plain frames on a second unix socket.

Every unary RPC of runtime.proto (all but Exec and Attach) is also served as
one request frame and one answer frame on `<socket>.frames`, next to the
gRPC socket, by the same servicers: the same messages, status codes and
details, without HTTP/2. Python gRPC costs ~0.5 ms of the server's CPU and
~0.3 ms of the client's per call, even for an empty Version (measured here,
grpc.aio and the threaded server alike); the frames cost ~0.05 and ~0.03 ms.
The agent makes four to five such calls per pod it starts, and relists the
runtime on every sync pass. gRPC stays the API for other clients and for the
streams.

A request: `!IH` (payload length, method length), the method's gRPC path
(`/timonel.runtime.v1.RuntimeService/Version`), the serialized request. An
answer: `!IB` (payload length, status code: grpc.StatusCode's number, 0 OK),
then the serialized response, or the status details in UTF-8. One call at a
time per connection; a client keeps a few connections open.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor

from . import runtime_pb2 as pb

SUFFIX = ".frames"
REQUEST = struct.Struct("!IH")
ANSWER = struct.Struct("!IB")
MAX_MESSAGE = 64 << 20  # both transports' limit: ExecSync may return 2 x 16 MiB
OK = 0

CODES: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True)
class Method:
    service: str  # the servicer's gRPC name, e.g. "RuntimeService"
    name: str
    request: type[Any]
    response: type[Any]


def frames_path(grpc_socket: str) -> str:
    return grpc_socket + SUFFIX


def _unary(service: ServiceDescriptor) -> dict[str, Method]:
    return {f"/{service.full_name}/{m.name}": Method(service.name, m.name, getattr(pb, m.input_type.name),
                                                     getattr(pb, m.output_type.name))
            for m in service.methods if not m.client_streaming and not m.server_streaming}


UNARY: dict[str, Method] = {path: method for service in pb.DESCRIPTOR.services_by_name.values()
                            for path, method in _unary(service).items()}


def path_of(service: str, method: str) -> str | None:
    """The gRPC path of a unary method of `service` ("RuntimeService"), or None (a stream, or unknown)."""
    desc = pb.DESCRIPTOR.services_by_name.get(service)
    if desc is None:
        return None
    path = f"/{desc.full_name}/{method}"
    return path if path in UNARY else None


def request_frame(path: str, payload: bytes) -> bytes:
    name = path.encode()
    return REQUEST.pack(len(payload), len(name)) + name + payload


def answer_frame(code: int, payload: bytes) -> bytes:
    return ANSWER.pack(len(payload), code) + payload


class FrameRpcError(grpc.RpcError):
    """A failed call, as grpc.RpcError shows one: `code()` and `details()`."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details
