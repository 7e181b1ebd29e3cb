"""The generated protobuf code in impala/proto/ is fresh against protos/impala.proto."""

import pathlib
import subprocess
import sys

from conftest import ROOT

GENERATED = ("impala_pb2.py", "impala_pb2.pyi", "impala_pb2_grpc.py")


def test_generated_code_is_fresh(tmp_path):
  # The same command as in impala/proto/__init__.py, writing into tmp_path.
  subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-Iimpala/proto=protos",
                  f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
                  f"--grpc_python_out={tmp_path}", "impala/proto/impala.proto"],
                 cwd=ROOT, check=True, timeout=60)
  for name in GENERATED:
    fresh = (tmp_path / "impala" / "proto" / name).read_text()
    committed = (pathlib.Path(ROOT) / "impala" / "proto" / name).read_text()
    assert committed == fresh, f"impala/proto/{name} is stale: regenerate it (see impala/proto/__init__.py)"
