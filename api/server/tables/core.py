"""Rows for core kinds other than pods and networking: nodes, namespaces, events,
config maps, secrets, service accounts, persistent volume claims, resource quotas."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from timonel.api.server.tables.common import (
    AGE,
    CORE,
    NAME,
    Column,
    Obj,
    Printer,
    age,
    items,
    meta,
    name,
    num,
    quantity,
    since,
    sub,
    text,
)

# -- Node ---------------------------------------------------------------------

NODE_COLUMNS = (
    NAME,
    Column("Status", doc="The status of the node"),
    Column("Roles", doc="The roles of the node"),
    AGE,
    Column("Version", doc=CORE + "NodeSystemInfo#kubeletVersion"),
    Column("Internal-IP", priority=1, doc=CORE + "NodeStatus#addresses"),
    Column("External-IP", priority=1, doc=CORE + "NodeStatus#addresses"),
    Column("OS-Image", priority=1, doc=CORE + "NodeSystemInfo#osImage"),
    Column("Kernel-Version", priority=1, doc=CORE + "NodeSystemInfo#kernelVersion"),
    Column("Container-Runtime", priority=1, doc=CORE + "NodeSystemInfo#containerRuntimeVersion"),
)

ROLE_LABEL_PREFIX = "node-role.kubernetes.io/"
ROLE_LABEL = "kubernetes.io/role"


def node_status(node: Obj) -> str:
    # Only the Ready condition counts; the last one of that type wins, as in upstream's map.
    ready = None
    for c in items(sub(node, "status"), "conditions"):
        if c.get("type") == "Ready":
            ready = c
    status = ["Unknown"] if ready is None else [
        "Ready" if ready.get("status") == "True" else "NotReady"]
    if sub(node, "spec").get("unschedulable") is True:
        status.append("SchedulingDisabled")
    return ",".join(status)


def node_roles(node: Obj) -> str:
    roles: set[str] = set()
    labels = meta(node).get("labels")
    for k, v in (labels if isinstance(labels, dict) else {}).items():
        if k.startswith(ROLE_LABEL_PREFIX) and k[len(ROLE_LABEL_PREFIX):]:
            roles.add(k[len(ROLE_LABEL_PREFIX):])
        elif k == ROLE_LABEL and text(v):
            roles.add(text(v))
    return ",".join(sorted(roles)) or "<none>"


def _node_address(status: Obj, kind: str) -> str:
    for a in items(status, "addresses"):
        if a.get("type") == kind:
            return text(a.get("address"))
    return "<none>"


def node_cells(node: Obj, now: datetime) -> list[Any]:
    status = sub(node, "status")
    info = sub(status, "nodeInfo")
    return [name(node), node_status(node), node_roles(node), age(node, now),
            text(info.get("kubeletVersion")),
            _node_address(status, "InternalIP"), _node_address(status, "ExternalIP"),
            text(info.get("osImage")) or "<unknown>", text(info.get("kernelVersion")) or "<unknown>",
            text(info.get("containerRuntimeVersion")) or "<unknown>"]


# -- Namespace ----------------------------------------------------------------

NAMESPACE_COLUMNS = (NAME, Column("Status", doc="The status of the namespace"), AGE)


def namespace_cells(obj: Obj, now: datetime) -> list[Any]:
    return [name(obj), text(sub(obj, "status").get("phase")), age(obj, now)]


# -- Event (core/v1 and events.k8s.io/v1 print alike: one storage upstream) ----

EVENT_COLUMNS = (
    Column("Last Seen", doc=CORE + "Event#lastTimestamp"),
    Column("Type", doc=CORE + "Event#type"),
    Column("Reason", doc=CORE + "Event#reason"),
    Column("Object", doc=CORE + "Event#involvedObject"),
    Column("Subobject", priority=1, doc=CORE + "ObjectReference#fieldPath"),
    Column("Source", priority=1, doc=CORE + "Event#source"),
    Column("Message", doc=CORE + "Event#message"),
    Column("First Seen", priority=1, doc=CORE + "Event#firstTimestamp"),
    Column("Count", priority=1, doc=CORE + "Event#count"),
    Column("Name", priority=1, format="name", doc="io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta#name"),
)


def _core_event(obj: Obj) -> Obj:
    """An events.k8s.io/v1 Event seen with core/v1 field names."""
    if "regarding" not in obj and "note" not in obj and "deprecatedSource" not in obj:
        return obj
    return {
        "metadata": meta(obj), "involvedObject": sub(obj, "regarding"), "reason": obj.get("reason"),
        "message": obj.get("note"), "source": sub(obj, "deprecatedSource"),
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
        "lastTimestamp": obj.get("deprecatedLastTimestamp"), "count": obj.get("deprecatedCount"),
        "type": obj.get("type"), "eventTime": obj.get("eventTime"), "series": obj.get("series"),
        "reportingComponent": obj.get("reportingController"),
        "reportingInstance": obj.get("reportingInstance"),
    }


def event_cells(obj: Obj, now: datetime) -> list[Any]:
    ev = _core_event(obj)
    first = ev.get("firstTimestamp")
    first_seen = since(first if first else ev.get("eventTime"), now)
    last_seen = since(ev["lastTimestamp"], now) if ev.get("lastTimestamp") else first_seen
    count = num(ev.get("count"))
    series = ev.get("series")
    if isinstance(series, dict):
        last_seen = since(series.get("lastObservedTime"), now)
        count = num(series.get("count"))
    elif count == 0:
        count = 1  # singleton events of the new API carry no count
    ref = sub(ev, "involvedObject")
    kind = text(ref.get("kind")).lower()
    target = f"{kind}/{ref['name']}" if text(ref.get("name")) else kind
    source = sub(ev, "source")
    component = text(source.get("component")) or text(ev.get("reportingComponent"))
    instance = text(source.get("host")) or text(ev.get("reportingInstance"))
    return [last_seen, text(ev.get("type")), text(ev.get("reason")), target,
            text(ref.get("fieldPath")), f"{component}, {instance}" if instance else component,
            text(ev.get("message")).strip(), first_seen, count, name(obj)]


# -- ConfigMap, Secret, ServiceAccount -----------------------------------------

CONFIGMAP_COLUMNS = (NAME, Column("Data", doc=CORE + "ConfigMap#data"), AGE)


def _count(value: Any) -> int:
    return len(value) if isinstance(value, dict | list) else 0


def configmap_cells(obj: Obj, now: datetime) -> list[Any]:
    return [name(obj), _count(obj.get("data")) + _count(obj.get("binaryData")), age(obj, now)]


SECRET_COLUMNS = (NAME, Column("Type", doc=CORE + "Secret#type"),
                  Column("Data", doc=CORE + "Secret#data"), AGE)


def secret_cells(obj: Obj, now: datetime) -> list[Any]:
    # The API server stores stringData into data before anything reads it.
    return [name(obj), text(obj.get("type")), _count(obj.get("data")), age(obj, now)]


SERVICEACCOUNT_COLUMNS = (NAME, Column("Secrets", doc=CORE + "ServiceAccount#secrets"), AGE)


def serviceaccount_cells(obj: Obj, now: datetime) -> list[Any]:
    return [name(obj), _count(obj.get("secrets")), age(obj, now)]


# -- PersistentVolumeClaim ----------------------------------------------------

PVC_COLUMNS = (
    NAME,
    Column("Status", doc=CORE + "PersistentVolumeClaimStatus#phase"),
    Column("Volume", doc=CORE + "PersistentVolumeClaimSpec#volumeName"),
    Column("Capacity", doc=CORE + "PersistentVolumeClaimStatus#capacity"),
    Column("Access Modes", doc=CORE + "PersistentVolumeClaimStatus#accessModes"),
    Column("StorageClass", doc="StorageClass of the pvc"),
    Column("VolumeAttributesClass", doc="VolumeAttributesClass of the pvc"),
    AGE,
    Column("VolumeMode", priority=1, doc=CORE + "PersistentVolumeClaimSpec#volumeMode"),
)

_ACCESS_MODES = (("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"),
                 ("ReadWriteOncePod", "RWOP"))


def access_modes(modes: Any) -> str:
    have = set(modes) if isinstance(modes, list) else set()
    return ",".join(short for mode, short in _ACCESS_MODES if mode in have)


def pvc_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = sub(obj, "spec"), sub(obj, "status")
    phase = "Terminating" if meta(obj).get("deletionTimestamp") else text(status.get("phase"))
    volume = text(spec.get("volumeName"))
    capacity = modes = ""
    if volume:
        modes = access_modes(status.get("accessModes"))
        capacity = quantity(sub(status, "capacity").get("storage"))
    annotations = meta(obj).get("annotations")
    storage_class = text(spec.get("storageClassName"))
    if isinstance(annotations, dict) and "volume.beta.kubernetes.io/storage-class" in annotations:
        storage_class = text(annotations["volume.beta.kubernetes.io/storage-class"])
    return [name(obj), phase, volume, capacity, modes, storage_class,
            text(spec.get("volumeAttributesClassName")) or "<unset>", age(obj, now),
            text(spec.get("volumeMode")) or "<unset>"]


# -- ResourceQuota ------------------------------------------------------------

RESOURCEQUOTA_COLUMNS = (
    NAME,
    Column("Request", doc="Request represents a minimum amount of cpu/memory that a container "
                          "may consume."),
    Column("Limit", doc="Limits control the maximum amount of cpu/memory that a container may use "
                        "independent of contention on the node."),
    AGE,
)


def resourcequota_cells(obj: Obj, now: datetime) -> list[Any]:
    status = sub(obj, "status")
    hard, used = sub(status, "hard"), sub(status, "used")
    requests: list[str] = []
    limits: list[str] = []
    for resource in sorted(hard):
        pieces = resource.split(".")
        column = limits if len(pieces) > 1 and pieces[0] == "limits" else requests
        column.append(f"{resource}: {quantity(used.get(resource))}/{quantity(hard[resource])}")
    return [name(obj), ", ".join(requests), ", ".join(limits), age(obj, now)]


PRINTERS = {
    ("", "Node"): Printer(NODE_COLUMNS, node_cells),
    ("", "Namespace"): Printer(NAMESPACE_COLUMNS, namespace_cells),
    ("", "Event"): Printer(EVENT_COLUMNS, event_cells),
    ("events.k8s.io", "Event"): Printer(EVENT_COLUMNS, event_cells),
    ("", "ConfigMap"): Printer(CONFIGMAP_COLUMNS, configmap_cells),
    ("", "Secret"): Printer(SECRET_COLUMNS, secret_cells),
    ("", "ServiceAccount"): Printer(SERVICEACCOUNT_COLUMNS, serviceaccount_cells),
    ("", "PersistentVolumeClaim"): Printer(PVC_COLUMNS, pvc_cells),
    ("", "ResourceQuota"): Printer(RESOURCEQUOTA_COLUMNS, resourcequota_cells),
}
