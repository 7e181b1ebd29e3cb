"""Shared fixtures: small configs and a real learner server on a free loopback port."""

import os
import shutil
import socket
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from impala import learning, server  # noqa: E402
from impala.config import Config  # noqa: E402


def require_tool(name: str) -> str:
  """Path of a command-line tool (the venv's own bin first). Missing: the test is skipped,
  but fails under CI (CI=true), where .ci/run installs every tool the tests use."""
  path = shutil.which(name, path=os.pathsep.join([os.path.dirname(sys.executable),
                                                  os.environ.get("PATH", "")]))
  if path is None:
    message = f"{name} is not installed (.ci/run installs it)"
    if os.environ.get("CI") == "true":
      pytest.fail(message)
    pytest.skip(message)
  return path


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture
def small_config():
  return Config(num_envs=4, unroll_length=5, batch_size=2, queue_size=8, rpc_timeout=10.0)


@pytest.fixture
def learner_server(small_config):
  """(learner, port) of a started server; stopped and closed after the test."""
  learner = learning.Learner(small_config)
  grpc_server, port, _ = server.create_server(learner, 0, address="127.0.0.1")
  yield learner, port
  grpc_server.stop(grace=None).wait()
  learner.close()
