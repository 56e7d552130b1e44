"""Kubernetes REST paths to a RequestInfo, like apiserver's RequestInfoFactory.

    /api/v1/pods                                   list across namespaces
    /api/v1/namespaces/{ns}/pods/{name}/status     a subresource
    /apis/apps/v1/namespaces/{ns}/deployments      a group's collection
    /api/v1/nodes/{name}                           cluster-scoped
    /api/v1/namespaces/{name}[/status|/finalize]   the namespace itself
"""

from __future__ import annotations

from dataclasses import dataclass

from timonel.api import resources
from timonel.api.errors import ApiError
from timonel.api.resources import ResourceType


@dataclass(frozen=True)
class RequestInfo:
    rtype: ResourceType
    namespace: str  # "" for cluster-scoped objects and all-namespace lists
    name: str  # "" for collections
    subresource: str
    verb: str


def _not_found(path: str) -> ApiError:
    return ApiError(404, f"the server could not find the requested resource ({path})", "NotFound")


def resolve(method: str, path: str, query_watch: bool) -> RequestInfo:
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise _not_found(path)
    if not rest:
        raise _not_found(path)

    namespace = ""
    if rest[0] == "namespaces" and len(rest) >= 3 and not (
        len(rest) == 3 and rest[2] in ("status", "finalize")
    ):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    rtype = resources.lookup(group, version, plural)
    if rtype is None:
        raise _not_found(path)
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if len(rest) > 3 or (sub and sub not in rtype.subresources):
        raise _not_found(path)
    if namespace and not rtype.namespaced:
        raise _not_found(path)
    return RequestInfo(rtype, namespace, name, sub, _verb(method, bool(name), query_watch, path))


def _verb(method: str, has_name: bool, watch: bool, path: str) -> str:
    if method in ("GET", "HEAD"):
        if watch:
            return "watch"
        return "get" if has_name else "list"
    if method == "POST":
        return "create"
    if method == "PUT" and has_name:
        return "update"
    if method == "PATCH" and has_name:
        return "patch"
    if method == "DELETE":
        return "delete" if has_name else "deletecollection"
    raise ApiError(405, f"the server does not allow this method on the requested resource ({method} {path})",
                   "MethodNotAllowed")
