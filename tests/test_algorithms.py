"""A3C beside IMPALA, and the other environments, on the real programs: A3C's gradients
through a real server (checked, counted, applied), then whole runs as subprocesses."""

import dataclasses
import json
import subprocess
import sys
import tomllib

import grpc
import jax
import numpy as np
import pytest
from conftest import ROOT, assert_accounted, free_port, upload

from impala import algorithms, presets
from impala import learner as learner_lib
from impala.actor import Session
from impala.config import Config
from impala.transport import codec
from impala.transport.client import LearnerClient


@pytest.fixture
def a3c_server(small_config):
  config = dataclasses.replace(small_config, algorithm="a3c", max_policy_lag=3)
  parts = learner_lib.build(config)
  parts.start()
  learner = parts.learner
  grpc_server, port, _ = parts.serve(0, address="127.0.0.1")
  yield learner, port
  grpc_server.stop(grace=None).wait()
  parts.close()


def a3c_actor(port: int) -> tuple[Session, Config]:
  """An actor set up from the learner's handshake, as `Session.run` does it, and the run's
  configuration the handshake gave it."""
  config = Config(grpc_host=f"127.0.0.1:{port}", rpc_timeout=10.0)
  client = LearnerClient(config)
  _, run_config = client.hello("a3c-actor")
  client.close()
  actor = Session(config)
  actor.prepare(run_config)
  return actor, run_config


def test_a3c_actor_sends_gradients_and_the_learner_applies_each(a3c_server):
  learner, port = a3c_server
  learner.compile()
  actor, run_config = a3c_actor(port)
  assert run_config.algorithm == "a3c" and run_config.discount == 0.99
  client = LearnerClient(actor.config)
  version, params = client.decode_weights(client.weights("a3c-actor", 0).result())
  unrolls = [actor.unroll(params, version) for _ in range(3)]
  sent = [actor.mode.encode(client, unroll, info, params) for unroll, info in unrolls]
  client.close()
  # What went out is the gradient of the A3C loss on the unroll, and no trajectory.
  loss = algorithms.loss_for_run(run_config, actor.rollout.network.unroll)
  expected = jax.grad(loss, has_aux=True)(params, unrolls[0][0])[0]
  gradients, _ = codec.decode_unroll(sent[0])
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7),
    gradients,
    jax.device_get(expected),
  )  # jitted vs not: last bits differ
  assert len(sent[0]) < 50_000
  assert len(upload(port, *sent)) == 3
  before = learner.params_for_actor()[1]
  assert [learner.step(timeout=10) for _ in range(3)] == [True] * 3
  assert learner.version == version + 3 and learner.snapshot().updates == 3
  assert learner.snapshot().frames == 3 * run_config.unroll_length * run_config.num_envs
  after = learner.params_for_actor()[1]
  assert not np.array_equal(after["policy"]["w"], before["policy"]["w"])


def test_bad_gradients_and_the_wrong_kind_of_upload_are_refused(a3c_server):
  learner, port = a3c_server
  actor, _ = a3c_actor(port)
  params = learner.params_for_actor()[1]
  unroll, info = actor.unroll(params, 1)
  grads = jax.device_get(actor.rollout.gradient(params, unroll))
  good = codec.encode_gradients(grads, info)

  def with_leaf(value):
    changed = {m: dict(leaves) for m, leaves in grads.items()}
    changed["value"]["b"] = value
    return codec.encode_gradients(changed, info)

  missing = {m: leaves for m, leaves in grads.items() if m != "value"}
  cases = [
    (with_leaf(np.zeros(2, np.float32)), "gradients: value/b: expected float32[1], got float32[2]"),
    (with_leaf(np.full(1, np.nan, np.float32)), "gradients: value/b: contains NaN or infinity"),
    (codec.encode_gradients(missing, info), "gradients: value/b missing"),
    (
      codec.encode_unroll(unroll, info),
      "trajectory: this learner trains a3c, whose actors send gradients",
    ),
  ]
  for message, details in cases:
    with pytest.raises(grpc.RpcError) as e:
      upload(port, good, message)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == details
  # Too old: after four updates, the parameters that took it are 4 versions behind.
  assert learner.step(timeout=10)  # trains on `good`
  for k in (1, 2, 3):  # acted by the same parameters: lag k, taken and trained on
    assert (
      len(upload(port, codec.encode_gradients(grads, info._replace(sequence=info.sequence + k))))
      == 1
    )
    assert learner.step(timeout=10)
  assert learner.version == info.params_version + 4
  stale = codec.encode_gradients(grads, info._replace(sequence=info.sequence + 4))
  assert len(upload(port, stale)) == 1
  assert learner.snapshot().accounting() == dict(
    received=12,
    accepted=4,
    duplicates=3,
    stale=1,
    abandoned=0,
    rejected=dict(wrong_shape=2, not_finite=1, wrong_algorithm=1),
  )


def test_an_impala_learner_refuses_gradients(learner_server, small_config):
  learner, port = learner_server
  params = learner.params_for_actor()[1]
  actor = Session(small_config)
  actor.prepare(small_config)
  _, info = actor.unroll(params, 1)
  with pytest.raises(grpc.RpcError) as e:
    upload(port, codec.encode_gradients(params, info))
  assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert e.value.details() == (
    "gradients: this learner trains impala, whose actors send trajectories"
  )


def run(*args: str, timeout: float) -> dict:
  """learner_server.py with 2 local actors; its summary."""
  proc = subprocess.run(
    [sys.executable, "learner_server.py", "--local-actors", "2", "--port", str(free_port()), *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=timeout,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  assert_accounted(result)
  assert len(result["unrolls_by_actor"]) == 2
  return result


@pytest.mark.slow
def test_a3c_learns_cartpole():
  result = run(
    "--algorithm",
    "a3c",
    "--seed",
    "0",
    "--stop-at-return",
    "475",
    "--max-seconds",
    "120",
    timeout=180,
  )
  assert result["reached_target"] and result["return_mean_100"] >= 475, result


@pytest.mark.slow
def test_impala_learns_catch_with_its_preset():
  result = run(
    "--env-id",
    "bsuite/catch",
    "--seed",
    "0",
    "--stop-at-return",
    "0.9",
    "--max-seconds",
    "120",
    timeout=180,
  )
  assert result["reached_target"] and result["return_mean_100"] >= 0.9, result


@pytest.mark.slow
def test_atari_with_its_preset_trains_end_to_end(tmp_path):
  """Pong with the Atari preset (the deep torso, the paper's optimizer and schedule), 2
  actors of 4 environments: 20 updates of 2 unrolls of 20 steps, then a clean stop."""
  result = run(
    "--env-id",
    "ALE/Pong-v5",
    "--num-envs",
    "4",
    "--max-frames",
    str(20 * 2 * 4 * 20),
    "--max-seconds",
    "240",
    "--run-dir",
    str(tmp_path),
    timeout=300,
  )
  assert result["stop_reason"] == "max_frames" and result["updates"] >= 20, result
  assert result["rejected"] == {}
  settings = tomllib.loads((tmp_path / "config.toml").read_text())
  assert settings["preset"] == "atari" and settings["num_envs"] == 4
  atari = dict(presets.read("atari"), num_envs=4)  # the flag over the preset
  assert {k: settings[k] for k in atari} == atari
  assert settings["torso"] == "deep" and settings["lr_schedule"] == "linear"
