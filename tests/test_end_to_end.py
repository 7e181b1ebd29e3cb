"""The real entry points as subprocesses: the one-command local run, separate processes, Ctrl-C."""

import json
import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT, free_port

pytestmark = pytest.mark.slow

TARGET = ["--stop-at-return", "475", "--max-seconds", "120"]


def learner_cmd(*args):
  return [sys.executable, "learner_server.py", *args]


def children_of(pid: int) -> list[int]:
  """Live processes started as local actors of learner `pid` (tagged in their environment)."""
  tag = f"IMPALA_PARENT_PID={pid}".encode()
  found = []
  for entry in os.listdir("/proc"):
    try:
      with open(f"/proc/{entry}/environ", "rb") as f:
        if tag in f.read().split(b"\0"):
          found.append(int(entry))
    except (OSError, ValueError):
      continue
  return found


def summary(stdout: str) -> dict:
  return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("inference", ["actor", "learner"])
def test_local_run_reaches_cartpole_target(inference):
  """With either mode of inference: the actors' policy, or the learner's."""
  proc = subprocess.Popen(
    learner_cmd(
      *("--local-actors", "2", "--seed", "0", "--port", str(free_port()), *TARGET),
      *("--inference", inference),
    ),
    cwd=ROOT,
    stdout=subprocess.PIPE,
    text=True,
  )
  stdout, _ = proc.communicate(timeout=180)
  result = summary(stdout)
  assert proc.returncode == 0, result
  assert result["reached_target"] and result["return_mean_100"] >= 475
  assert result["seconds"] < 120 and result["frames"] > 0 and result["updates"] > 0
  assert children_of(proc.pid) == []


def test_learner_and_actors_as_separate_processes_started_actors_first():
  port = free_port()
  env = dict(os.environ, GRPC_HOST=f"localhost:{port}")
  actors = [
    subprocess.Popen(
      [sys.executable, "actor_client.py"], cwd=ROOT, env=env, stderr=subprocess.DEVNULL
    )
    for _ in range(2)
  ]
  try:
    learner = subprocess.run(
      learner_cmd("--port", str(port), "--seed", "1", *TARGET),
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=180,
    )
    result = summary(learner.stdout)
    assert learner.returncode == 0 and result["reached_target"], result
    # The learner's run is over, and it told its actors so: they stop by themselves.
    assert [actor.wait(timeout=30) for actor in actors] == [0, 0]
  finally:
    for actor in actors:
      actor.kill()


@pytest.mark.parametrize(
  "sig,status,reason", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 0, "terminated")]
)
def test_ctrl_c_or_sigterm_stops_learner_and_its_actors(sig, status, reason):
  """Ctrl-C is an interruption; SIGTERM (docker stop, Kubernetes) a requested, clean stop."""
  proc = subprocess.Popen(
    learner_cmd("--local-actors", "2", "--log-every", "0.5", "--port", str(free_port()), *TARGET),
    cwd=ROOT,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )
  try:
    for line in proc.stderr:  # wait until it is training: the first progress line
      if line.startswith("["):
        break
    assert len(children_of(proc.pid)) == 2
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
  finally:
    proc.kill()
  assert proc.returncode == status, (stdout, stderr[-2000:])
  assert summary(stdout)["stop_reason"] == reason
  assert children_of(proc.pid) == []


@pytest.mark.parametrize("target,status", [([], 0), (["--stop-at-return", "475"], 1)])
def test_cap_exit_status(target, status):
  result = subprocess.run(
    learner_cmd(
      "--local-actors", "1", "--max-frames", "20000", "--port", str(free_port()), *target
    ),
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert result.returncode == status
  assert summary(result.stdout)["stop_reason"] == "max_frames"
  assert summary(result.stdout)["frames"] >= 20000
