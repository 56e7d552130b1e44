"""Taint/toleration matching and the eviction delay it implies, against
upstream's rules (ToleratesTaint, GetMatchingTolerations, getMinTolerationTime)."""

from __future__ import annotations

import math

import pytest

from timonel.controller.node_lifecycle import taints as tt

UNREACH_NE = {"key": tt.UNREACHABLE, "effect": "NoExecute", "timeAdded": "2024-01-01T00:00:00Z"}
NOTREADY_NE = {"key": tt.NOT_READY, "effect": "NoExecute"}
DEDICATED = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


@pytest.mark.parametrize(("toleration", "taint", "expected"), [
    ({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}, DEDICATED, True),
    ({"key": "dedicated", "value": "gpu"}, DEDICATED, True),  # empty operator is Equal, empty effect all
    ({"key": "dedicated", "value": "cpu"}, DEDICATED, False),
    ({"key": "dedicated", "operator": "Exists"}, DEDICATED, True),
    ({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, DEDICATED, False),
    ({"operator": "Exists"}, DEDICATED, True),  # empty key + Exists tolerates everything
    ({"operator": "Exists", "effect": "NoExecute"}, UNREACH_NE, True),
    ({"operator": "Exists", "effect": "NoExecute"}, DEDICATED, False),
    ({"key": "other", "operator": "Exists"}, DEDICATED, False),
    ({"key": "dedicated", "operator": "Lt", "value": "gpu"}, DEDICATED, False),  # unknown operator
    ({"key": tt.UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
     UNREACH_NE, True),
])
def test_tolerates(toleration: dict, taint: dict, expected: bool) -> None:
    assert tt.tolerates(toleration, taint) is expected


def test_eviction_delay_untolerated_is_immediate() -> None:
    assert tt.eviction_delay([UNREACH_NE], []) == 0.0
    # A tolerated unreachable taint does not help with an untolerated not-ready one.
    tol = [{"key": tt.UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 30}]
    assert tt.eviction_delay([UNREACH_NE, NOTREADY_NE], tol) == 0.0


def test_eviction_delay_uses_the_pods_toleration_seconds() -> None:
    tol = [{"key": tt.UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 2}]
    assert tt.eviction_delay([UNREACH_NE], tol) == 2.0


def test_eviction_delay_minimum_over_used_tolerations() -> None:
    tol = [{"key": tt.UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 300},
           {"key": tt.NOT_READY, "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 20}]
    assert tt.eviction_delay([UNREACH_NE, NOTREADY_NE], tol) == 20.0


def test_eviction_delay_first_matching_toleration_counts() -> None:
    # Upstream takes the first toleration that matches each taint, so a later
    # forever-toleration does not override an earlier timed one.
    tol = [{"key": tt.UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": 5},
           {"operator": "Exists"}]
    assert tt.eviction_delay([UNREACH_NE], tol) == 5.0
    assert tt.eviction_delay([UNREACH_NE], list(reversed(tol))) == math.inf


def test_eviction_delay_forever_and_none() -> None:
    assert tt.eviction_delay([UNREACH_NE], [{"operator": "Exists"}]) == math.inf
    assert tt.eviction_delay([DEDICATED], []) is None  # no NoExecute taint at all
    assert tt.eviction_delay([], []) is None


def test_zero_or_negative_toleration_seconds_mean_now() -> None:
    for seconds in (0, -5):
        tol = [{"key": tt.UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": seconds}]
        assert tt.eviction_delay([UNREACH_NE], tol) == 0.0


def test_untolerated_filters_by_effect() -> None:
    taints = [DEDICATED, UNREACH_NE, {"key": "soft", "effect": "PreferNoSchedule"}]
    assert tt.untolerated(taints, []) == [DEDICATED, UNREACH_NE]
    assert tt.untolerated(taints, [], effects=("NoExecute",)) == [UNREACH_NE]
    assert tt.untolerated(taints, [{"key": "dedicated", "operator": "Exists"}]) == [UNREACH_NE]


def _node(conditions: dict[str, str], unschedulable: bool = False) -> dict:
    return {"spec": {"unschedulable": unschedulable},
            "status": {"conditions": [{"type": k, "status": v} for k, v in conditions.items()]}}


def test_condition_taints() -> None:
    assert tt.condition_taints(_node({"Ready": "True"})) == []
    assert tt.condition_taints(_node({"Ready": "Unknown", "DiskPressure": "True"})) == [
        {"key": tt.UNREACHABLE, "effect": "NoSchedule"},
        {"key": tt.DISK_PRESSURE, "effect": "NoSchedule"}]
    assert tt.condition_taints(_node({"Ready": "False"}, unschedulable=True)) == [
        {"key": tt.NOT_READY, "effect": "NoSchedule"},
        {"key": tt.UNSCHEDULABLE, "effect": "NoSchedule"}]


def test_reconcile_adds_with_time_and_keeps_user_taints() -> None:
    user = {"key": "dedicated", "value": "x", "effect": "NoExecute"}
    new = tt.reconcile_taints([user], no_schedule=[{"key": tt.UNREACHABLE, "effect": "NoSchedule"}],
                              no_execute_taint=tt.wanted_no_execute("Unknown"),
                              manage_no_execute=True, now="T1")
    assert new == [user, {"key": tt.UNREACHABLE, "effect": "NoSchedule", "timeAdded": "T1"},
                   {"key": tt.UNREACHABLE, "effect": "NoExecute", "timeAdded": "T1"}]
    # Nothing to do the second time: timeAdded is kept.
    assert tt.reconcile_taints(new, no_schedule=[{"key": tt.UNREACHABLE, "effect": "NoSchedule"}],
                               no_execute_taint=tt.wanted_no_execute("Unknown"),
                               manage_no_execute=True, now="T2") is None


def test_reconcile_swaps_unreachable_for_not_ready_and_clears_when_ready() -> None:
    cur = [{"key": tt.UNREACHABLE, "effect": "NoExecute", "timeAdded": "T1"},
           {"key": tt.UNREACHABLE, "effect": "NoSchedule", "timeAdded": "T1"}]
    swapped = tt.reconcile_taints(cur, no_schedule=[{"key": tt.NOT_READY, "effect": "NoSchedule"}],
                                  no_execute_taint=tt.wanted_no_execute("False"),
                                  manage_no_execute=True, now="T2")
    assert swapped == [{"key": tt.NOT_READY, "effect": "NoSchedule", "timeAdded": "T2"},
                       {"key": tt.NOT_READY, "effect": "NoExecute", "timeAdded": "T2"}]
    assert tt.reconcile_taints(swapped, no_schedule=[], no_execute_taint=tt.wanted_no_execute("True"),
                               manage_no_execute=True, now="T3") == []


def test_reconcile_leaves_no_execute_alone_when_not_managed() -> None:
    cur = [{"key": tt.UNREACHABLE, "effect": "NoExecute", "timeAdded": "T1"}]
    assert tt.reconcile_taints(cur, no_schedule=[], no_execute_taint=None,
                               manage_no_execute=False, now="T2") is None
