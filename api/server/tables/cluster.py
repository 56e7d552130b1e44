"""Rows for access control and scheduling policy: role bindings, priority classes,
leases and pod disruption budgets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from timonel.api.server.tables.common import (
    AGE,
    NAME,
    Column,
    Obj,
    Printer,
    age,
    items,
    name,
    num,
    sub,
    text,
)

_RBAC = "io.k8s.api.rbac.v1."


def _binding_columns(kind: str) -> tuple[Column, ...]:
    what = kind[0].lower() + kind[1:]
    return (
        NAME,
        Column("Role", doc=_RBAC + kind + "#roleRef"),
        AGE,
        Column("Users", priority=1, doc=f"Users in the {what}"),
        Column("Groups", priority=1, doc=f"Groups in the {what}"),
        Column("ServiceAccounts", priority=1, doc=f"ServiceAccounts in the {what}"),
    )


def binding_cells(obj: Obj, now: datetime) -> list[Any]:
    ref = sub(obj, "roleRef")
    users: list[str] = []
    groups: list[str] = []
    sas: list[str] = []
    for s in items(obj, "subjects"):
        kind = s.get("kind")
        if kind == "ServiceAccount":
            sas.append(f"{text(s.get('namespace'))}/{text(s.get('name'))}")
        elif kind == "User":
            users.append(text(s.get("name")))
        elif kind == "Group":
            groups.append(text(s.get("name")))
    return [name(obj), f"{text(ref.get('kind'))}/{text(ref.get('name'))}", age(obj, now),
            ", ".join(users), ", ".join(groups), ", ".join(sas)]


_SCHEDULING = "io.k8s.api.scheduling.v1.PriorityClass#"
PRIORITYCLASS_COLUMNS = (
    NAME,
    Column("Value", "integer", _SCHEDULING + "value"),
    Column("Global-Default", "boolean", _SCHEDULING + "globalDefault"),
    AGE,
    Column("PreemptionPolicy", doc=_SCHEDULING + "preemptionPolicy"),
)


def priorityclass_cells(obj: Obj, now: datetime) -> list[Any]:
    return [name(obj), num(obj.get("value")), obj.get("globalDefault") is True, age(obj, now),
            text(obj.get("preemptionPolicy"))]


LEASE_COLUMNS = (NAME, Column("Holder", doc="io.k8s.api.coordination.v1.LeaseSpec#holderIdentity"),
                 AGE)


def lease_cells(obj: Obj, now: datetime) -> list[Any]:
    return [name(obj), text(sub(obj, "spec").get("holderIdentity")), age(obj, now)]


PDB_COLUMNS = (
    NAME,
    Column("Min Available", doc="The minimum number of pods that must be available."),
    Column("Max Unavailable", doc="The maximum number of pods that may be unavailable."),
    Column("Allowed Disruptions", "integer",
           "Calculated number of pods that may be disrupted at this time."),
    AGE,
)


def _int_or_string(value: Any) -> str:
    if value is None:
        return "N/A"
    return value if isinstance(value, str) else str(num(value))


def pdb_cells(obj: Obj, now: datetime) -> list[Any]:
    spec = sub(obj, "spec")
    return [name(obj), _int_or_string(spec.get("minAvailable")),
            _int_or_string(spec.get("maxUnavailable")),
            num(sub(obj, "status").get("disruptionsAllowed")), age(obj, now)]


PRINTERS = {
    ("rbac.authorization.k8s.io", "RoleBinding"): Printer(_binding_columns("RoleBinding"),
                                                          binding_cells),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): Printer(
        _binding_columns("ClusterRoleBinding"), binding_cells),
    ("scheduling.k8s.io", "PriorityClass"): Printer(PRIORITYCLASS_COLUMNS, priorityclass_cells),
    ("coordination.k8s.io", "Lease"): Printer(LEASE_COLUMNS, lease_cells),
    ("policy", "PodDisruptionBudget"): Printer(PDB_COLUMNS, pdb_cells),
}
