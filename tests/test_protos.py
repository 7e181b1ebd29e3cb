"""The generated protobuf code in impala/transport/proto/ is fresh against
protos/impala.proto."""

import pathlib
import subprocess
import sys

from conftest import ROOT

PROTO = "impala/transport/proto"
GENERATED = ("impala_pb2.py", "impala_pb2.pyi")


def test_generated_code_is_fresh(tmp_path):
  # The same command as in impala/transport/proto/__init__.py, writing into tmp_path.
  subprocess.run(
    [
      sys.executable,
      "-m",
      "grpc_tools.protoc",
      f"-I{PROTO}=protos",
      f"--python_out={tmp_path}",
      f"--pyi_out={tmp_path}",
      f"{PROTO}/impala.proto",
    ],
    cwd=ROOT,
    check=True,
    timeout=60,
  )
  for name in GENERATED:
    fresh = (tmp_path / PROTO / name).read_text()
    committed = (pathlib.Path(ROOT) / PROTO / name).read_text()
    assert committed == fresh, f"{PROTO}/{name} is stale: regenerate it (see {PROTO}/__init__.py)"


def test_only_the_transport_package_imports_the_generated_code():
  importers = [
    str(path.relative_to(ROOT))
    for path in pathlib.Path(ROOT, "impala").rglob("*.py")
    if "impala_pb2" in path.read_text()
  ]
  assert importers and all(path.startswith("impala/transport/") for path in importers), importers
