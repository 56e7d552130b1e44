"""Quantities given as JSON numbers are stored as canonical strings, as upstream does."""

from __future__ import annotations

from timonel.api.validation.quantities import ITEMS, VALUES, normalize_quantities, quantity_paths


def test_paths_come_from_the_schema() -> None:
    paths = set(quantity_paths("io.k8s.api.apps.v1.Deployment"))
    assert ("spec", "template", "spec", "containers", ITEMS, "resources", "limits", VALUES) in paths
    assert ("spec", "template", "spec", "volumes", ITEMS, "emptyDir", "sizeLimit") in paths
    assert ("status", "capacity", VALUES) in set(quantity_paths("io.k8s.api.core.v1.Node"))


def test_numbers_become_canonical_strings_and_nothing_else_changes() -> None:
    pod = {"spec": {"containers": [{"name": "c", "image": "i", "args": [1],
                                    "resources": {"limits": {"cpu": 1, "memory": "64Mi"},
                                                  "requests": {"cpu": 0.25, "memory": 1048576}}}],
                    "volumes": [{"name": "v", "emptyDir": {"sizeLimit": 1000}}],
                    "terminationGracePeriodSeconds": 3}}
    normalize_quantities(pod, "", "v1", "Pod")
    c = pod["spec"]["containers"][0]
    assert c["resources"] == {"limits": {"cpu": "1", "memory": "64Mi"},
                              "requests": {"cpu": "250m", "memory": "1048576"}}
    assert pod["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] == "1k"
    assert c["args"] == [1] and pod["spec"]["terminationGracePeriodSeconds"] == 3


def test_malformed_values_are_left_for_validation() -> None:
    pod = {"spec": {"containers": [{"resources": {"limits": {"cpu": True, "memory": [1]}}}],
                    "volumes": "nope"}}
    normalize_quantities(pod, "", "v1", "Pod")
    assert pod["spec"]["containers"][0]["resources"]["limits"] == {"cpu": True, "memory": [1]}
    normalize_quantities({"kind": "Unknown"}, "example.com", "v1", "Unknown")
