"""Discovery documents: aggregated (apidiscovery.k8s.io/v2) and the legacy
per-group-version ones, plus /version. All derived from the resource registry
and computed once."""

from __future__ import annotations

import functools
import platform
from importlib import metadata
from typing import Any

from timonel.api import resources
from timonel.api.resources import ResourceType
from timonel.api.schemas import KUBE_VERSION

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_CONTENT_TYPE_BETA = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

_SUB_VERBS = {
    "status": ("get", "patch", "update"),
    "scale": ("get", "patch", "update"),
    "binding": ("create",),
    "eviction": ("create",),
    "log": ("get",),
    "exec": ("create", "get"),
    "attach": ("create", "get"),
    "portforward": ("create", "get"),
    "finalize": ("update",),
}


def _sub_kind(rtype: ResourceType, sub: str) -> dict[str, str]:
    gv = {"group": rtype.group, "version": rtype.version}
    kinds = {
        "scale": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
        "binding": {"group": "", "version": "v1", "kind": "Binding"},
        "eviction": {"group": "policy", "version": "v1", "kind": "Eviction"},
        "exec": {**gv, "kind": "PodExecOptions"},
        "attach": {**gv, "kind": "PodAttachOptions"},
        "portforward": {**gv, "kind": "PodPortForwardOptions"},
    }
    return kinds.get(sub, {**gv, "kind": rtype.kind})


def wants_aggregated(accept: str) -> str | None:
    """The aggregated content type the client asked for, if any."""
    for part in accept.split(","):
        p = part.replace(" ", "")
        if "as=APIGroupDiscoveryList" in p and "g=apidiscovery.k8s.io" in p:
            if "v=v2beta1" in p:
                return AGGREGATED_CONTENT_TYPE_BETA
            if "v=v2" in p:
                return AGGREGATED_CONTENT_TYPE
    return None


def _resource_discovery(rtype: ResourceType) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": rtype.plural,
        "responseKind": {"group": rtype.group, "version": rtype.version, "kind": rtype.kind},
        "scope": "Namespaced" if rtype.namespaced else "Cluster",
        "singularResource": rtype.singular,
        "verbs": list(rtype.verbs),
    }
    if rtype.short_names:
        entry["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        entry["categories"] = list(rtype.categories)
    if rtype.subresources:
        entry["subresources"] = [
            {"subresource": s, "responseKind": _sub_kind(rtype, s), "verbs": list(_SUB_VERBS.get(s, ("get",)))}
            for s in rtype.subresources
        ]
    return entry


def _group_discovery(group: str) -> dict[str, Any]:
    versions = []
    for g, v in resources.group_versions():
        if g != group:
            continue
        versions.append({
            "version": v,
            "resources": [_resource_discovery(r) for r in resources.RESOURCES
                          if r.group == g and r.version == v],
            "freshness": "Current",
        })
    return {"metadata": {"name": group}, "versions": versions}


def _groups() -> list[str]:
    out: list[str] = []
    for g, _ in resources.group_versions():
        if g and g not in out:
            out.append(g)
    return out


@functools.cache
def aggregated(core: bool, content_type: str) -> dict[str, Any]:
    items = [_group_discovery("")] if core else [_group_discovery(g) for g in _groups()]
    version = "v2beta1" if content_type == AGGREGATED_CONTENT_TYPE_BETA else "v2"
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}


@functools.cache
def api_versions() -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}


def _api_group(group: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{g}/{v}", "version": v}
                for g, v in resources.group_versions() if g == group]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions,
            "preferredVersion": versions[0]}


@functools.cache
def api_group_list() -> dict[str, Any]:
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_api_group(g) for g in _groups()]}


def api_group(group: str) -> dict[str, Any] | None:
    return _api_group(group) if group in _groups() else None


@functools.cache
def _resource_list(group: str, version: str) -> dict[str, Any] | None:
    rtypes = [r for r in resources.RESOURCES if r.group == group and r.version == version]
    if not rtypes:
        return None
    entries: list[dict[str, Any]] = []
    for r in rtypes:
        entry: dict[str, Any] = {
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        entries.append(entry)
        for s in r.subresources:
            sk = _sub_kind(r, s)
            sub = {"name": f"{r.plural}/{s}", "singularName": "", "namespaced": r.namespaced,
                   "kind": sk["kind"], "verbs": list(_SUB_VERBS.get(s, ("get",)))}
            if sk["group"] != r.group or sk["version"] != r.version:
                sub["group"], sub["version"] = sk["group"], sk["version"]
            entries.append(sub)
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    return _resource_list(group, version)


def version_info() -> dict[str, str]:
    major, minor, _ = KUBE_VERSION.split(".")
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    return {
        "major": major, "minor": minor,
        "gitVersion": f"v{KUBE_VERSION}+timonel.{_timonel_version()}",
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": f"python{platform.python_version()}", "compiler": "cpython",
        "platform": f"linux/{arch}",
    }


def _timonel_version() -> str:
    try:
        return metadata.version("timonel")
    except metadata.PackageNotFoundError:
        return "dev"
