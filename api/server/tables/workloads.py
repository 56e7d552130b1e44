"""Rows for the controllers that run pods: deployments, replica sets, daemon sets,
stateful sets, jobs, cron jobs and controller revisions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from timonel.api.errors import ApiError
from timonel.api.server.tables.common import (
    AGE,
    APPS,
    BATCH,
    CONTAINERS,
    CORE,
    IMAGES,
    NAME,
    Column,
    Obj,
    Printer,
    age,
    containers_cells,
    format_label_selector,
    format_labels,
    human_duration,
    items,
    meta,
    name,
    num,
    parse_time,
    selector_text,
    since,
    sub,
    text,
)


def _pod_spec(obj: Obj, *path: str) -> Obj:
    return sub(obj, *path, "template", "spec")


def _replicas(spec: Obj) -> int:
    # Defaulting sets 1 when absent; print what upstream would show.
    return num(spec.get("replicas"), 1)


def _selector_column(doc: str) -> Column:
    return Column("Selector", priority=1, doc=doc)


# -- Deployment ---------------------------------------------------------------

DEPLOYMENT_COLUMNS = (
    NAME,
    Column("Ready", doc="Number of the pod with ready state"),
    Column("Up-to-date", doc=APPS + "DeploymentStatus#updatedReplicas"),
    Column("Available", doc=APPS + "DeploymentStatus#availableReplicas"),
    AGE, CONTAINERS, IMAGES, _selector_column(APPS + "DeploymentSpec#selector"),
)


def deployment_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = sub(obj, "spec"), sub(obj, "status")
    try:
        selector = selector_text(spec.get("selector"))
    except ApiError:
        selector = "<invalid>"
    return [name(obj), f"{num(status.get('readyReplicas'))}/{_replicas(spec)}",
            num(status.get("updatedReplicas")), num(status.get("availableReplicas")),
            age(obj, now), *containers_cells(_pod_spec(obj, "spec")), selector]


# -- ReplicaSet ---------------------------------------------------------------

REPLICASET_COLUMNS = (
    NAME,
    Column("Desired", "integer", APPS + "ReplicaSetSpec#replicas"),
    Column("Current", "integer", APPS + "ReplicaSetStatus#replicas"),
    Column("Ready", "integer", APPS + "ReplicaSetStatus#readyReplicas"),
    AGE, CONTAINERS, IMAGES, _selector_column(APPS + "ReplicaSetSpec#selector"),
)


def replicaset_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = sub(obj, "spec"), sub(obj, "status")
    return [name(obj), _replicas(spec), num(status.get("replicas")),
            num(status.get("readyReplicas")), age(obj, now),
            *containers_cells(_pod_spec(obj, "spec")), format_label_selector(spec.get("selector"))]


# -- DaemonSet ----------------------------------------------------------------

DAEMONSET_COLUMNS = (
    NAME,
    Column("Desired", "integer", APPS + "DaemonSetStatus#desiredNumberScheduled"),
    Column("Current", "integer", APPS + "DaemonSetStatus#currentNumberScheduled"),
    Column("Ready", "integer", APPS + "DaemonSetStatus#numberReady"),
    Column("Up-to-date", "integer", APPS + "DaemonSetStatus#updatedNumberScheduled"),
    Column("Available", "integer", APPS + "DaemonSetStatus#numberAvailable"),
    Column("Node Selector", doc=CORE + "PodSpec#nodeSelector"),
    AGE, CONTAINERS, IMAGES, _selector_column(APPS + "DaemonSetSpec#selector"),
)


def daemonset_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = sub(obj, "spec"), sub(obj, "status")
    pod_spec = _pod_spec(obj, "spec")
    return [name(obj), num(status.get("desiredNumberScheduled")),
            num(status.get("currentNumberScheduled")), num(status.get("numberReady")),
            num(status.get("updatedNumberScheduled")), num(status.get("numberAvailable")),
            format_labels(pod_spec.get("nodeSelector")), age(obj, now),
            *containers_cells(pod_spec), format_label_selector(spec.get("selector"))]


# -- StatefulSet --------------------------------------------------------------

STATEFULSET_COLUMNS = (NAME, Column("Ready", doc="Number of the pod with ready state"), AGE,
                       CONTAINERS, IMAGES)


def statefulset_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = sub(obj, "spec"), sub(obj, "status")
    return [name(obj), f"{num(status.get('readyReplicas'))}/{_replicas(spec)}", age(obj, now),
            *containers_cells(_pod_spec(obj, "spec"))]


# -- Job ----------------------------------------------------------------------

JOB_COLUMNS = (
    NAME,
    Column("Status", doc="Status of the job."),
    Column("Completions", doc=BATCH + "JobStatus#succeeded"),
    Column("Duration", doc="Time required to complete the job."),
    AGE, CONTAINERS, IMAGES, _selector_column(BATCH + "JobSpec#selector"),
)


def _job_condition(status: Obj, ctype: str) -> bool:
    for c in items(status, "conditions"):
        if c.get("type") == ctype:
            return c.get("status") == "True"
    return False


def job_status(obj: Obj) -> str:
    status = sub(obj, "status")
    if _job_condition(status, "Complete"):
        return "Complete"
    if _job_condition(status, "Failed"):
        return "Failed"
    if meta(obj).get("deletionTimestamp"):
        return "Terminating"
    if _job_condition(status, "Suspended"):
        return "Suspended"
    if _job_condition(status, "FailureTarget"):
        return "FailureTarget"
    return "Running"


def job_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = sub(obj, "spec"), sub(obj, "status")
    succeeded = num(status.get("succeeded"))
    completions = spec.get("completions")
    if isinstance(completions, int) and not isinstance(completions, bool):
        done = f"{succeeded}/{completions}"
    elif num(spec.get("parallelism")) > 1:
        done = f"{succeeded}/1 of {num(spec.get('parallelism'))}"
    else:
        done = f"{succeeded}/1"
    start = parse_time(status.get("startTime"))
    end = parse_time(status.get("completionTime"))
    duration = ""
    if start is not None:
        duration = human_duration((end or now) - start)
    return [name(obj), job_status(obj), done, duration, age(obj, now),
            *containers_cells(_pod_spec(obj, "spec")), format_label_selector(spec.get("selector"))]


# -- CronJob ------------------------------------------------------------------

CRONJOB_COLUMNS = (
    NAME,
    Column("Schedule", doc=BATCH + "CronJobSpec#schedule"),
    Column("Timezone", doc=BATCH + "CronJobSpec#timeZone"),
    Column("Suspend", "boolean", BATCH + "CronJobSpec#suspend"),
    Column("Active", "integer", BATCH + "CronJobStatus#active"),
    Column("Last Schedule", doc=BATCH + "CronJobStatus#lastScheduleTime"),
    AGE, CONTAINERS, IMAGES, _selector_column(BATCH + "JobSpec#selector"),
)


def cronjob_cells(obj: Obj, now: datetime) -> list[Any]:
    spec, status = sub(obj, "spec"), sub(obj, "status")
    last = status.get("lastScheduleTime")
    # Upstream prints the *bool as True/False ("<unset>" if nil; defaulting
    # makes it false, which is what upstream shows for a manifest without it).
    suspend = "True" if spec.get("suspend") is True else "False"
    job_spec = sub(spec, "jobTemplate", "spec")
    return [name(obj), text(spec.get("schedule")), text(spec.get("timeZone")) or "<none>",
            suspend, len(items(status, "active")), since(last, now) if last else "<none>",
            age(obj, now), *containers_cells(sub(job_spec, "template", "spec")),
            format_label_selector(job_spec.get("selector"))]


# -- ControllerRevision -------------------------------------------------------

CONTROLLERREVISION_COLUMNS = (
    NAME,
    Column("Controller", doc="Controller of the object"),
    Column("Revision", doc=APPS + "ControllerRevision#revision"),
    AGE,
)


def controller_name(obj: Obj) -> str:
    """"<kind>.<group>/<name>" of the controlling owner, lower-cased kind and group."""
    for ref in items(meta(obj), "ownerReferences"):
        if ref.get("controller") is True:
            group = text(ref.get("apiVersion")).rpartition("/")[0]
            kind = text(ref.get("kind"))
            group_kind = f"{kind}.{group}" if group else kind
            return f"{group_kind.lower()}/{text(ref.get('name'))}" if group_kind else text(ref.get("name"))
    return "<none>"


def controllerrevision_cells(obj: Obj, now: datetime) -> list[Any]:
    return [name(obj), controller_name(obj), num(obj.get("revision")), age(obj, now)]


PRINTERS = {
    ("apps", "Deployment"): Printer(DEPLOYMENT_COLUMNS, deployment_cells),
    ("apps", "ReplicaSet"): Printer(REPLICASET_COLUMNS, replicaset_cells),
    ("apps", "DaemonSet"): Printer(DAEMONSET_COLUMNS, daemonset_cells),
    ("apps", "StatefulSet"): Printer(STATEFULSET_COLUMNS, statefulset_cells),
    ("apps", "ControllerRevision"): Printer(CONTROLLERREVISION_COLUMNS, controllerrevision_cells),
    ("batch", "Job"): Printer(JOB_COLUMNS, job_cells),
    ("batch", "CronJob"): Printer(CRONJOB_COLUMNS, cronjob_cells),
}
