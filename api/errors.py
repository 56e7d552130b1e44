"""API errors as Kubernetes `Status` objects.

Every failure a client can cause is an `ApiError`; the server turns it into a
`Status` with the reason and code that kubectl and client libraries expect.
"""

from __future__ import annotations

from typing import Any

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        message: str,
        reason: str | None = None,
        *,
        name: str | None = None,
        group: str | None = None,
        kind: str | None = None,
        causes: list[dict[str, str]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or REASONS.get(code, "Unknown")
        self.name = name
        self.group = group
        self.kind = kind
        self.causes = causes
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        return status_object(
            self.code, self.message, self.reason, name=self.name, group=self.group,
            kind=self.kind, causes=self.causes, retry_after=self.retry_after,
        )


def status_object(
    code: int,
    message: str,
    reason: str,
    *,
    name: str | None = None,
    group: str | None = None,
    kind: str | None = None,
    causes: list[dict[str, str]] | None = None,
    retry_after: int | None = None,
) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if name is not None:
        details["name"] = name
    if group:
        details["group"] = group
    if kind is not None:
        details["kind"] = kind
    if causes:
        details["causes"] = causes
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    st: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        st["details"] = details
    return st


def success_status(name: str, group: str, kind: str, uid: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "group": group, "kind": kind}
    if uid:
        details["uid"] = uid
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": details}


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    what = f"{resource}.{group}" if group else resource
    return ApiError(404, f'{what} "{name}" not found', name=name, group=group, kind=resource)


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    what = f"{resource}.{group}" if group else resource
    return ApiError(409, f'{what} "{name}" already exists', "AlreadyExists",
                    name=name, group=group, kind=resource)


def conflict(resource: str, name: str, group: str = "", detail: str = "") -> ApiError:
    what = f"{resource}.{group}" if group else resource
    detail = detail or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(409, f'Operation cannot be fulfilled on {what} "{name}": {detail}',
                    "Conflict", name=name, group=group, kind=resource)


def invalid(kind: str, name: str, causes: list[dict[str, str]], group: str = "") -> ApiError:
    """422 with one cause per field path, printed by kubectl as `The Pod "x" is invalid: ...`."""
    summary = ", ".join(
        f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes
    )
    return ApiError(422, f'{kind} "{name}" is invalid: {summary}', "Invalid",
                    name=name, group=group, kind=kind, causes=causes)


def bad_request(message: str) -> ApiError:
    return ApiError(400, message, "BadRequest")


def expired(message: str) -> ApiError:
    return ApiError(410, message, "Expired")
