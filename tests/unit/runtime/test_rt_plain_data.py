"""plain_data writes what dataclasses.asdict wrote (the state files' format), without its deep copies."""

from __future__ import annotations

import dataclasses
import json

from timonel.node_agent.runtime.cgroups import Resources
from timonel.node_agent.runtime.container.spec import ContainerSpec, Mount
from timonel.node_agent.runtime.container.state import plain_data
from timonel.node_agent.runtime.server.records import ContainerRecord


def as_json(data: object) -> str:
    return json.dumps(data, sort_keys=True)


def test_a_container_spec_and_a_record_come_out_as_asdict_made_them() -> None:
    spec = ContainerSpec(id="c1", args=["sh", "-c", "true"], rootfs_layers=["/l1", "/l2"],
                         mounts=[Mount(source="/a", destination="/b", read_only=True)],
                         resources=Resources(memory_limit=1 << 26, cpu_quota=20000),
                         labels={"k": "v"}, annotations={"a": "b"}, env={"A": "1"})
    assert as_json(plain_data(spec)) == as_json(dataclasses.asdict(spec))
    assert ContainerSpec.from_dict(json.loads(as_json(plain_data(spec)))) == spec
    rec = ContainerRecord(id="c1", sandbox_id="s1", name="n_0", config={"labels": {"x": "y"}, "command": ["a"]},
                          created_at=1, image_id="sha256:x")
    assert as_json(plain_data(rec)) == as_json(dataclasses.asdict(rec))


def test_containers_are_new_so_changing_the_output_leaves_the_input_alone() -> None:
    spec = ContainerSpec(id="c1", args=["true"], rootfs_layers=["/l"], labels={"k": "v"})
    out = plain_data(spec)
    out["labels"]["k"] = "changed"
    out["args"].append("x")
    assert spec.labels == {"k": "v"} and spec.args == ["true"]
