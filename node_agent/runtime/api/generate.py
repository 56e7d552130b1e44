"""Regenerate the Python code of runtime.proto (run after editing the .proto):

    .venv/bin/python -m timonel.node_agent.runtime.api.generate

The .proto is compiled under its package path (timonel/node_agent/runtime/api/),
so the generated gRPC module imports `timonel.node_agent.runtime.api.runtime_pb2`
and the descriptor's file name is unique in the process-wide protobuf pool.
The output depends on the grpcio-tools version: pyproject.toml pins it, and
tests/unit/runtime/test_rtsvc_generated.py fails when the committed files are stale.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = "runtime.proto"
PACKAGE_PATH = os.path.join("timonel", "node_agent", "runtime", "api")
OUTPUTS = ("runtime_pb2.py", "runtime_pb2.pyi", "runtime_pb2_grpc.py")


class GenerateError(RuntimeError):
    pass


def generate(out_dir: str = HERE, proto: str = os.path.join(HERE, PROTO)) -> list[str]:
    """Compile `proto` and write the OUTPUTS into `out_dir`; returns their paths."""
    try:
        from grpc_tools import protoc
    except ImportError:
        raise GenerateError("grpcio-tools is not installed: pip install -e '.[test]' "
                            "(pyproject.toml pins the version the committed code came from)") from None
    with tempfile.TemporaryDirectory(prefix="timonel-protoc-") as tmp:
        src_dir = os.path.join(tmp, PACKAGE_PATH)
        os.makedirs(src_dir)
        shutil.copyfile(proto, os.path.join(src_dir, PROTO))
        rel = os.path.join(PACKAGE_PATH, PROTO)
        args = ["grpc_tools.protoc", f"-I{tmp}", f"--python_out={tmp}", f"--pyi_out={tmp}",
                f"--grpc_python_out={tmp}", rel]
        if protoc.main(args) != 0:
            raise GenerateError(f"protoc failed on {proto}; see the messages above")
        os.makedirs(out_dir, exist_ok=True)
        written = []
        for name in OUTPUTS:
            dest = os.path.join(out_dir, name)
            shutil.copyfile(os.path.join(src_dir, name), dest)
            written.append(dest)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Regenerate the Python code of runtime.proto.")
    p.add_argument("--out", default=HERE, help="output directory (default: next to the .proto)")
    args = p.parse_args(argv)
    try:
        for path in generate(args.out):
            print(path)
    except GenerateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
