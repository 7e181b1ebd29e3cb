"""Shared fixtures: small configs and a real learner server on a free loopback port."""

import contextlib
import dataclasses
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import grpc
import pytest

from impala import learner as learner_lib
from impala.config import Config
from impala.transport import codec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def require_tool(name: str) -> str:
  """Path of a command-line tool (the venv's own bin first). Missing: the test is skipped,
  but fails under CI (CI=true), where .ci/run installs every tool the tests use."""
  path = shutil.which(
    name, path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
  )
  if path is None:
    message = f"{name} is not installed (.ci/run installs it)"
    if os.environ.get("CI") == "true":
      pytest.fail(message)
    pytest.skip(message)
  return path


def free_ports(count: int) -> list[int]:
  """`count` distinct free loopback ports (all held open while chosen: one at a time, the
  kernel may hand out the same port twice)."""
  sockets = [socket.socket() for _ in range(count)]
  try:
    for s in sockets:
      s.bind(("127.0.0.1", 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def free_port() -> int:
  return free_ports(1)[0]


# --- The real programs as subprocesses ---


def start(script: str, *args: str, **env) -> subprocess.Popen:
  """A learner (output piped, to be read) or an actor (output dropped: nobody reads it)."""
  out = subprocess.PIPE if script == "learner_server.py" else subprocess.DEVNULL
  return subprocess.Popen(
    [sys.executable, script, *args],
    cwd=ROOT,
    text=True,
    env=dict(os.environ, **env),
    stdout=out,
    stderr=out,
  )


def read_until(proc: subprocess.Popen, pattern: str, timeout: float = 120.0) -> re.Match:
  """Reads the process's stderr line by line until `pattern` matches (or fails)."""
  deadline = time.monotonic() + timeout
  seen = []
  for line in proc.stderr:
    seen.append(line)
    match = re.search(pattern, line)
    if match:
      return match
    assert time.monotonic() < deadline, f"no {pattern!r} in {timeout} s:\n{''.join(seen[-20:])}"
  raise AssertionError(f"stderr ended before {pattern!r}:\n{''.join(seen[-20:])}")


def stop_all(*procs: subprocess.Popen):
  for p in procs:
    if p.poll() is None:
      p.kill()
    p.communicate()


def assert_accounted(summary: dict):
  """Every upload a learner's summary counts is accounted for, exactly once."""
  outcomes = ("accepted", "duplicates", "stale", "abandoned")
  taken = sum(summary[name] for name in outcomes) + sum(summary["rejected"].values())
  assert summary["received"] == taken, summary


def upload(port: int, *messages: bytes) -> list:
  """Sends serialized unrolls on one Upload stream; returns the replies."""
  with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    call = channel.stream_stream(codec.method("Upload"))  # sends bytes as they are
    return list(call(iter(messages), timeout=10))


@pytest.fixture(autouse=True)
def runs_in_tmp(tmp_path_factory, monkeypatch):
  """Run directories named by default go to a temporary folder, not the repository's runs/
  (the programs read IMPALA_RUNS; subprocesses inherit it)."""
  monkeypatch.setenv("IMPALA_RUNS", str(tmp_path_factory.mktemp("runs")))


@pytest.fixture
def small_config():
  return Config(num_envs=4, unroll_length=5, batch_size=2, queue_size=8, rpc_timeout=10.0)


@contextlib.contextmanager
def serving(config: Config, algorithm=None):
  """(parts, port) of a started learner server on loopback; stopped and closed after."""
  parts = learner_lib.build(config, algorithm)
  parts.start()
  grpc_server, port, _ = parts.serve(0, address="127.0.0.1")
  try:
    yield parts, port
  finally:
    grpc_server.stop(grace=None).wait()
    parts.close()


@pytest.fixture
def serve(small_config):
  """serve(**settings) -> (learner, port): a started learner server on loopback, with
  those settings over small_config; all stopped and closed after the test."""
  with contextlib.ExitStack() as stack:

    def start(**settings):
      parts, port = stack.enter_context(serving(dataclasses.replace(small_config, **settings)))
      return parts.learner, port

    yield start


@pytest.fixture
def learner_server(serve):
  """(learner, port) of a started server with small_config."""
  return serve()
