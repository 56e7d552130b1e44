"""The committed gRPC code is what runtime.proto compiles to (no root, no network)."""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

import pytest

from timonel.node_agent.runtime.api import generate, runtime_pb2


def test_committed_code_is_fresh(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools missing: pip install -e '.[test]'")
    generate.generate(str(tmp_path))
    stale = [name for name in generate.OUTPUTS
             if not filecmp.cmp(tmp_path / name, os.path.join(generate.HERE, name), shallow=False)]
    assert not stale, (f"{stale} differ from what runtime.proto compiles to: run "
                       "`.venv/bin/python -m timonel.node_agent.runtime.api.generate` and commit the result")


def test_staleness_is_detected(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools missing: pip install -e '.[test]'")
    proto = tmp_path / "runtime.proto"
    proto.write_text(Path(generate.HERE, "runtime.proto").read_text().replace(
        "int64 pid = 100;", "int64 pid = 100;\n    string extra = 101;"))
    generate.generate(str(tmp_path / "out"), str(proto))
    assert not filecmp.cmp(tmp_path / "out" / "runtime_pb2.py", os.path.join(generate.HERE, "runtime_pb2.py"),
                           shallow=False)


def test_descriptor_keeps_cri_names() -> None:
    # Clients written against CRI find the same names and numbers here.
    status = runtime_pb2.ContainerStatus.DESCRIPTOR
    assert status.fields_by_name["exit_code"].number == 7
    assert status.fields_by_name["reason"].number == 10
    assert status.fields_by_name["log_path"].number == 15
    cfg = runtime_pb2.ContainerConfig.DESCRIPTOR
    assert [f.name for f in cfg.fields][:7] == ["metadata", "image", "command", "args", "working_dir",
                                                "envs", "mounts"]
    assert runtime_pb2.DESCRIPTOR.package == "timonel.runtime.v1"
    assert set(runtime_pb2.DESCRIPTOR.services_by_name) == {"RuntimeService", "ImageService"}
