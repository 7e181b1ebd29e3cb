"""Two learner processes as one JAX job on this machine (CPU, gloo collectives), with real
actors that are all given learner 0's address."""

import json
import signal

import pytest
from conftest import free_port, read_until, start, stop_all

pytestmark = pytest.mark.slow


def start_learners(ports: list[int], *args: str, own_args=((), ())) -> list:
  """Learners 0 and 1 of one job on `ports` (learner 0's is the actors' address), with
  `args`, and `own_args[i]` for learner i only."""
  coordinator = free_port()
  return [
    start(
      "learner_server.py",
      "--num-learners",
      "2",
      "--learner-index",
      str(i),
      "--coordinator-address",
      f"127.0.0.1:{coordinator}",
      "--port",
      str(ports[i]),
      "--advertise-address",
      f"127.0.0.1:{ports[i]}",
      *args,
      *own_args[i],
    )
    for i in range(2)
  ]


def summaries(learners, timeout: float) -> list[dict]:
  out = [json.loads(p.communicate(timeout=timeout)[0].strip().splitlines()[-1]) for p in learners]
  assert [p.returncode for p in learners] == [0, 0], out
  return out


def test_two_learners_reach_the_cartpole_target_with_equal_parameters():
  ports = [free_port(), free_port()]
  learners = start_learners(ports, "--seed", "0", "--stop-at-return", "475", "--max-seconds", "240")
  actors = [
    start("actor_client.py", GRPC_HOST=f"127.0.0.1:{ports[0]}", IMPALA_ACTOR_ID=f"actor-{i}")
    for i in range(4)
  ]
  try:
    first, second = summaries(learners, timeout=300)
  finally:
    stop_all(*learners, *actors)
  assert first["reached_target"] and second["reached_target"], (first, second)
  assert first["return_mean_100"] >= 475
  # The gradients were all-reduced at every update: the same parameters, bit for bit.
  assert first["params_sha256"] == second["params_sha256"]
  assert (first["version"], first["updates"], first["frames"]) == (
    second["version"],
    second["updates"],
    second["frames"],
  )
  # Learner 0 sent every other actor (in the order they came) to learner 1: two each.
  assert len(first["unrolls_by_actor"]) == len(second["unrolls_by_actor"]) == 2
  assert set(first["unrolls_by_actor"]) | set(second["unrolls_by_actor"]) == {
    f"actor-{i}" for i in range(4)
  }


def test_both_resume_from_learner_0s_checkpoint_and_stop_together_on_sigterm(tmp_path):
  ports = [free_port(), free_port()]
  # Separate folders: learner 1 gets learner 0's state from learner 0, not from a file.
  folders = [("--checkpoint-dir", str(tmp_path / f"learner-{i}")) for i in range(2)]
  learners = start_learners(ports, "--max-frames", "100000", own_args=folders)
  actors = [  # the first run ends at --max-frames: they wait for the next
    start("actor_client.py", GRPC_HOST=f"127.0.0.1:{ports[0]}", IMPALA_WAIT_FOR_NEXT_RUN="true")
    for _ in range(2)
  ]
  try:
    before = summaries(learners, timeout=180)
    assert before[0]["checkpoint"].startswith(folders[0][1]) and before[1]["checkpoint"] is None

    learners = start_learners(ports, "--log-every", "1", own_args=folders)  # same actors
    for learner in learners:
      updates = read_until(learner, r"resumed.*: update ([\d,]+)").group(1)
      assert int(updates.replace(",", "")) == before[0]["updates"]
    read_until(learners[1], r"actors 1 ")  # its actor is back
    learners[1].send_signal(signal.SIGTERM)  # one learner's vote stops both
    after = summaries(learners, timeout=60)
  finally:
    stop_all(*learners, *actors)
  assert [s["stop_reason"] for s in after] == ["terminated", "terminated"]
  assert after[0]["params_sha256"] == after[1]["params_sha256"]
  assert after[0]["version"] == after[1]["version"] >= before[0]["version"]
  assert after[0]["checkpoint"] and after[1]["checkpoint"] is None
