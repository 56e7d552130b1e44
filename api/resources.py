"""The resource registry: every kind the API server serves, as one table.

Adding a kind is adding a row. Everything that varies per kind (REST paths,
discovery, storage keys, status subresource handling, validation schema,
tables) is derived from the row or looked up by (group, kind) elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # Subresources beyond the object itself: "status", "scale", "binding", ...
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # Pods are deleted gracefully: marked with deletionTimestamp, removed later
    # by the node agent (or at once if never scheduled).
    graceful_delete: bool = False

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def storage_name(self) -> str:
        # Same resource name in two groups (core and events.k8s.io events share
        # storage upstream); keep them apart by group to stay simple.
        return self.plural if not self.group or self.group == "apps" else f"{self.group}/{self.plural}"

    def path_prefix(self) -> str:
        """`/api/v1` or `/apis/<group>/<version>`."""
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"


_ALL = ("all",)

RESOURCES: tuple[ResourceType, ...] = (
    # core/v1
    ResourceType("", "v1", "Namespace", "namespaces", namespaced=False, short_names=("ns",),
                 subresources=("status", "finalize")),
    ResourceType("", "v1", "Pod", "pods", short_names=("po",), categories=_ALL,
                 subresources=("status", "binding", "log", "exec", "attach", "eviction",
                               "portforward"),
                 graceful_delete=True),
    ResourceType("", "v1", "Node", "nodes", namespaced=False, short_names=("no",),
                 subresources=("status",)),
    ResourceType("", "v1", "Event", "events", short_names=("ev",)),
    ResourceType("", "v1", "ConfigMap", "configmaps", short_names=("cm",)),
    ResourceType("", "v1", "Secret", "secrets"),
    ResourceType("", "v1", "ServiceAccount", "serviceaccounts", short_names=("sa",)),
    ResourceType("", "v1", "Service", "services", short_names=("svc",), categories=_ALL,
                 subresources=("status",)),
    ResourceType("", "v1", "Endpoints", "endpoints", short_names=("ep",)),
    ResourceType("", "v1", "ResourceQuota", "resourcequotas", short_names=("quota",),
                 subresources=("status",)),
    ResourceType("", "v1", "LimitRange", "limitranges", short_names=("limits",)),
    ResourceType("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", short_names=("pvc",),
                 subresources=("status",)),
    # apps/v1
    ResourceType("apps", "v1", "Deployment", "deployments", short_names=("deploy",),
                 categories=_ALL, subresources=("status", "scale")),
    ResourceType("apps", "v1", "ReplicaSet", "replicasets", short_names=("rs",),
                 categories=_ALL, subresources=("status", "scale")),
    ResourceType("apps", "v1", "DaemonSet", "daemonsets", short_names=("ds",),
                 categories=_ALL, subresources=("status",)),
    ResourceType("apps", "v1", "StatefulSet", "statefulsets", short_names=("sts",),
                 categories=_ALL, subresources=("status", "scale")),
    ResourceType("apps", "v1", "ControllerRevision", "controllerrevisions"),
    # batch/v1
    ResourceType("batch", "v1", "Job", "jobs", categories=_ALL, subresources=("status",)),
    ResourceType("batch", "v1", "CronJob", "cronjobs", short_names=("cj",), categories=_ALL,
                 subresources=("status",)),
    # coordination.k8s.io/v1
    ResourceType("coordination.k8s.io", "v1", "Lease", "leases"),
    # discovery.k8s.io/v1
    ResourceType("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices"),
    # events.k8s.io/v1
    ResourceType("events.k8s.io", "v1", "Event", "events", short_names=("ev",)),
    # rbac.authorization.k8s.io/v1
    ResourceType("rbac.authorization.k8s.io", "v1", "Role", "roles"),
    ResourceType("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
    ResourceType("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings",
                 namespaced=False),
    # scheduling.k8s.io/v1 (priority and preemption)
    ResourceType("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", namespaced=False,
                 short_names=("pc",)),
    # networking.k8s.io/v1
    ResourceType("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies",
                 short_names=("netpol",)),
    # policy/v1
    ResourceType("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short_names=("pdb",),
                 subresources=("status",)),
)


def group_versions() -> list[tuple[str, str]]:
    """(group, version) pairs in a stable order, core first."""
    seen: list[tuple[str, str]] = []
    for r in RESOURCES:
        if (r.group, r.version) not in seen:
            seen.append((r.group, r.version))
    return seen


_BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND = {(r.group, r.kind): r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    return _BY_PATH.get((group, version, plural))


def by_kind(group: str, kind: str) -> ResourceType | None:
    return _BY_KIND.get((group, kind))


def by_api_version_kind(api_version: str, kind: str) -> ResourceType | None:
    group, _, version = api_version.rpartition("/")
    r = _BY_KIND.get((group, kind))
    return r if r is not None and r.version == version else None
