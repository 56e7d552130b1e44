"""Environment resolution and $(VAR) expansion as the kubelet does them."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from timonel.node_agent.agent.envvars import ConfigError, command_and_args, container_env, expand

POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"}},
       "spec": {"nodeName": "n1", "serviceAccountName": "default"},
       "status": {"podIP": "10.0.0.5"}}

OBJECTS: dict[tuple[str, str], dict[str, Any]] = {
    ("configmaps", "cm"): {"data": {"A": "from-cm", "B": "b", "bad key": "x"}},
    ("secrets", "sec"): {"data": {"password": base64.b64encode(b"s3cret").decode()}},
}


async def getter(kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    assert namespace == "ns"
    return OBJECTS.get((kind, name))


@pytest.mark.parametrize(("value", "want"), [
    ("$(A)", "1"), ("x$(A)y$(B)", "x1y2"), ("$(MISSING)", "$(MISSING)"), ("$$(A)", "$(A)"),
    ("$$", "$"), ("a$b", "a$b"), ("$(A", "$(A"), ("$", "$"), ("$()", "$()"),
])
def test_expand(value: str, want: str) -> None:
    assert expand(value, {"A": "1", "B": "2"}) == want


async def test_env_from_then_env_overrides_and_refers_back() -> None:
    c = {"envFrom": [{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": "sec"}, "prefix": "S_"}],
         "env": [{"name": "A", "value": "plain"},
                 {"name": "C", "value": "$(A)-$(B)-$(NOPE)"},
                 {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                 {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                 {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                 {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                 {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}},
                 {"name": "CMB", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "B"}}},
                 {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "none", "key": "x",
                                                                   "optional": True}}}]}
    env = dict(await container_env(POD, c, getter, host_ip="192.0.2.10"))
    assert env["A"] == "plain" and env["B"] == "b" and "bad key" not in env
    assert env["S_password"] == "s3cret"
    assert env["C"] == "plain-b-$(NOPE)"
    assert (env["NAME"], env["APP"], env["IP"], env["HOST"]) == ("p", "web", "10.0.0.5", "192.0.2.10")
    assert env["PW"] == "s3cret" and env["CMB"] == "b" and "OPT" not in env


async def test_resource_field_ref_uses_limit_or_node_allocatable() -> None:
    c = {"resources": {"limits": {"memory": "64Mi"}},
         "env": [{"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                    "divisor": "1Mi"}}},
                 {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}
    env = dict(await container_env(POD, c, getter, node_allocatable={"cpu": "2"}))
    assert env == {"MEM": "64", "CPU": "2"}


@pytest.mark.parametrize(("env", "message"), [
    ({"name": "X", "valueFrom": {"secretKeyRef": {"name": "missing", "key": "k"}}}, 'secret "missing" not found'),
    ({"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nokey"}}}, "couldn't find key nokey"),
    ({"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}, "not supported"),
])
async def test_missing_sources_are_config_errors(env: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        await container_env(POD, {"env": [env]}, getter)


def test_command_and_args_expand_against_env() -> None:
    c = {"command": ["sh", "-c", "echo $(GREETING)"], "args": ["$(WHO)", "$$(WHO)"]}
    assert command_and_args(c, [("GREETING", "hi"), ("WHO", "me")]) == (
        ["sh", "-c", "echo hi"], ["me", "$(WHO)"])


async def test_pod_ip_from_the_sandbox_before_any_status() -> None:
    c = {"env": [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}
    no_status = {**POD, "status": {}}
    assert dict(await container_env(no_status, c, getter, pod_ip="10.0.0.9")) == {"IP": "10.0.0.9"}
