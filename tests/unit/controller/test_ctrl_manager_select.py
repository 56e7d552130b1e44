"""`--controllers` selection, and the namespace controller's conditions."""

from __future__ import annotations

import pytest

from timonel.controller.manager import select_controllers
from timonel.controller.namespace import deletion_conditions, merge_conditions
from timonel.controller.registry import CONTROLLERS, DEFAULT_CONTROLLERS

KNOWN = ["replicaset", "deployment", "garbagecollector", "namespace"]


def test_selection_syntax() -> None:
    assert select_controllers(None, KNOWN) == KNOWN
    assert select_controllers(["*"], KNOWN) == KNOWN
    assert select_controllers(["replicaset", "deployment"], KNOWN) == ["replicaset", "deployment"]
    assert select_controllers(["*", "-garbagecollector"], KNOWN) == \
        ["replicaset", "deployment", "namespace"]
    assert select_controllers(["-namespace", "*"], KNOWN) == \
        ["replicaset", "deployment", "garbagecollector"]
    assert select_controllers(["namespace"], KNOWN, defaults=["replicaset"]) == ["namespace"]
    assert select_controllers([" replicaset ", ""], KNOWN) == ["replicaset"]


def test_unknown_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError) as e:
        select_controllers(["replicaset", "-nope"], KNOWN)
    assert "nope" in str(e.value) and "garbagecollector" in str(e.value)


def test_registry_has_part_one_controllers() -> None:
    for name in ("replicaset", "deployment", "garbagecollector", "namespace", "serviceaccount"):
        assert name in CONTROLLERS and name in DEFAULT_CONTROLLERS


def test_namespace_conditions_name_what_remains() -> None:
    conds = {c["type"]: c for c in deletion_conditions({"pods": 2, "replicasets.apps": 1},
                                                       {"example.com/x": 1}, [])}
    assert conds["NamespaceContentRemaining"]["message"] == \
        "Some resources are remaining: pods has 2 resource instances, replicasets.apps has 1 " \
        "resource instances"
    assert conds["NamespaceFinalizersRemaining"]["reason"] == "SomeFinalizersRemain"
    assert conds["NamespaceDeletionContentFailure"]["status"] == "False"
    done = {c["type"]: c for c in deletion_conditions({}, {}, [])}
    assert done["NamespaceContentRemaining"] == {**done["NamespaceContentRemaining"],
                                                 "status": "False", "reason": "ContentRemoved"}
    failed = {c["type"]: c for c in deletion_conditions({}, {}, ["failed to delete pods: x"])}
    assert failed["NamespaceDeletionContentFailure"]["status"] == "True"


def test_condition_transition_times_kept_while_status_holds() -> None:
    old = [{"type": "A", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"},
           {"type": "B", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]
    new = [{"type": "A", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
           {"type": "B", "status": "False", "lastTransitionTime": "2024-01-01T00:00:00Z"}]
    merged = merge_conditions(old, new)
    assert merged[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert merged[1]["lastTransitionTime"] == "2024-01-01T00:00:00Z"
