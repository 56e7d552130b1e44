"""gRPC status codes for what can go wrong, with messages that say what to do.

The service raises `ServiceError`s for conditions it checks itself; errors
from the managers (containers, sandboxes, images, network) are mapped by type
in `status_for`, so every RPC fails with a meaningful code, never a bare
UNKNOWN with a traceback.
"""

from __future__ import annotations

import logging

import grpc

from ..container import ContainerError, NotFoundError, SpecError
from ..container.forkserver import ForkServerError
from ..images import errors as image_errors
from ..network import NetworkError
from ..sandbox import SandboxError

log = logging.getLogger(__name__)


class ServiceError(Exception):
    code = grpc.StatusCode.UNKNOWN


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Unimplemented(ServiceError):
    code = grpc.StatusCode.UNIMPLEMENTED


class DeadlineExceeded(ServiceError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE


def status_for(e: BaseException, what: str) -> tuple[grpc.StatusCode, str]:
    """The status code and message for `e`, raised while doing `what` (e.g. "CreateContainer")."""
    msg = str(e) or type(e).__name__
    if isinstance(e, ServiceError):
        return e.code, msg
    if isinstance(e, NotFoundError):
        return grpc.StatusCode.NOT_FOUND, msg
    if isinstance(e, SpecError):
        return grpc.StatusCode.INVALID_ARGUMENT, msg
    if isinstance(e, ContainerError):
        return grpc.StatusCode.FAILED_PRECONDITION, msg
    if isinstance(e, SandboxError):
        if "not found" in msg:
            return grpc.StatusCode.NOT_FOUND, msg
        if "already exists" in msg:
            return grpc.StatusCode.ALREADY_EXISTS, msg
        return grpc.StatusCode.FAILED_PRECONDITION, msg
    code = _image_code(e)
    if code is not None:
        return code, msg
    if isinstance(e, NetworkError):
        return grpc.StatusCode.INTERNAL, f"pod network: {msg}"
    if isinstance(e, ForkServerError):
        return grpc.StatusCode.UNAVAILABLE, f"{msg}; restart the runtime (containers keep running)"
    log.error("rpc=%s msg=unexpected failure", what, exc_info=e)
    return grpc.StatusCode.INTERNAL, f"{what}: {type(e).__name__}: {msg} (see the runtime's log)"


def _image_code(e: BaseException) -> grpc.StatusCode | None:
    if not isinstance(e, image_errors.ImageError):
        return None
    if isinstance(e, image_errors.ImageNotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(e, image_errors.ImageInUseError):
        return grpc.StatusCode.FAILED_PRECONDITION
    if isinstance(e, image_errors.DigestMismatchError):
        return grpc.StatusCode.DATA_LOSS
    if isinstance(e, image_errors.InvalidReferenceError | image_errors.InvalidImageError
                  | image_errors.UnsafeLayerError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(e, image_errors.RegistryError):
        return {401: grpc.StatusCode.UNAUTHENTICATED, 403: grpc.StatusCode.PERMISSION_DENIED,
                404: grpc.StatusCode.NOT_FOUND}.get(e.status or 0, grpc.StatusCode.UNAVAILABLE)
    return grpc.StatusCode.FAILED_PRECONDITION
