"""Checkpoints: atomic files, a run's last K kept (and no other run's touched), corrupt
ones skipped, other settings' refused, and a learner that resumes."""

import dataclasses
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from impala import checkpoint, testing
from impala import learner as learner_lib
from impala.config import ConfigError
from impala.learner import saving
from impala.learner.learner import params_digest


def state_like():
  return {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": (np.zeros(3, np.int32),)}


def test_save_then_load_round_trips_and_keeps_the_newest_k(tmp_path):
  for updates in (5, 10, 15, 20):
    state = jax.tree_util.tree_map(lambda x, u=updates: x + u, state_like())
    record = dict(updates=updates, frames=updates * 10, lineage="a1")
    checkpoint.save(str(tmp_path), state, record, keep=2)
  names = sorted(os.listdir(tmp_path))
  assert names == ["ckpt-000000000015-a1.npz", "ckpt-000000000020-a1.npz"]  # no temporary files
  path, state, record = checkpoint.restore_latest(str(tmp_path), state_like())
  assert path.endswith(names[-1]) and record["updates"] == 20 and record["frames"] == 200
  np.testing.assert_array_equal(state["w"], state_like()["w"] + 20)
  assert state["b"][0].dtype == np.int32


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_a_damaged_newest_checkpoint_is_reported_and_skipped(tmp_path, damage, caplog):
  for updates in (1, 2):
    checkpoint.save(str(tmp_path), state_like(), dict(updates=updates, frames=0, lineage="a"), 5)
  newest = checkpoint.checkpoints(str(tmp_path))[-1]
  data = open(newest, "rb").read()
  damaged = {
    "truncate": data[: len(data) // 2],
    "empty": b"",
    "flip": data[:100] + bytes([data[100] ^ 0xFF]) + data[101:],
  }[damage]
  open(newest, "wb").write(damaged)
  path, _, record = checkpoint.restore_latest(str(tmp_path), state_like())
  assert record["updates"] == 1 and path != newest
  assert f"skipping checkpoint {newest}" in caplog.text


def test_a_checkpoint_of_another_network_is_refused(tmp_path):
  checkpoint.save(str(tmp_path), state_like(), dict(updates=1, frames=0, lineage="a"), keep=1)
  other = {"w": np.zeros((2, 4), np.float32), "b": (np.zeros(3, np.int32),)}
  with pytest.raises(ValueError, match=r"leaf 1 is float32\[2, 3\].*needs float32\[2, 4\]"):
    checkpoint.load(checkpoint.checkpoints(str(tmp_path))[0], other)
  assert checkpoint.restore_latest(str(tmp_path), other) is None


def test_learner_resumes_params_optimizer_counters_and_version(tmp_path, small_config):
  config = dataclasses.replace(small_config, checkpoint_dir=str(tmp_path))
  parts = learner_lib.build(config)
  parts.start()
  first = parts.learner
  try:
    for sequence in range(6):  # three real updates of two unrolls each
      unroll = testing.random_unroll(first.spec, seed=sequence)
      first.intake.enqueue(unroll, testing.info(sequence=sequence, params_version=1))
    assert [first.step(timeout=10) for _ in range(3)] == [True] * 3
    saving.checkpoint(first, True, 0.0)
  finally:
    parts.close()
  before = first.snapshot()
  assert (before.updates, before.frames, before.version) == (3, 3 * 2 * 5 * 4, 4)
  second = learner_lib.build(config).learner
  try:
    assert second.restored_from is not None
    after = second.snapshot()
    assert (after.updates, after.frames, after.version) == (3, 120, 4)
    same = jax.tree_util.tree_map(np.array_equal, first.state(), second.state())
    assert all(jax.tree_util.tree_leaves(same))
    digests = [
      params_digest(learner.state().params)
      for learner in (first, second, learner_lib.build(small_config).learner)
    ]
    assert digests[0] == digests[1] != digests[2]
  finally:
    second.intake.close()


def test_a_run_prunes_only_its_own_checkpoints(tmp_path):
  for updates in (100, 200):  # another run's, further along
    checkpoint.save(str(tmp_path), state_like(), dict(updates=updates, lineage="b0"), keep=5)
  for updates in (1, 2, 3):
    checkpoint.save(str(tmp_path), state_like(), dict(updates=updates, lineage="a0"), keep=2)
  assert sorted(os.listdir(tmp_path)) == [
    "ckpt-000000000002-a0.npz",
    "ckpt-000000000003-a0.npz",
    "ckpt-000000000100-b0.npz",
    "ckpt-000000000200-b0.npz",
  ]


def run_learner(config, steps=1):
  """A learner on `config` that takes `steps` updates and saves; its snapshot and path."""
  parts = learner_lib.build(config)
  parts.start()
  learner = parts.learner
  try:
    for sequence in range(2 * steps):
      unroll = testing.random_unroll(learner.spec, seed=sequence)
      learner.intake.enqueue(unroll, testing.info(sequence=sequence, params_version=1))
    assert all(learner.step(timeout=10) for _ in range(steps))
    return learner, saving.checkpoint(learner, True, 0.0)
  finally:
    parts.close()


def test_checkpoints_of_another_task_or_network_are_refused_unless_fresh(tmp_path, small_config):
  task, network = (
    dataclasses.replace(small_config, checkpoint_dir=str(tmp_path / name)) for name in "ab"
  )
  run_learner(dataclasses.replace(task, env_id="CartPole-v0"))
  with pytest.raises(
    ConfigError,
    match=r"ckpt-000000000001-\w+\.npz was written with "
    r"env_id='CartPole-v0', this run has 'CartPole-v1'.*--fresh",
  ):
    learner_lib.build(task)
  run_learner(dataclasses.replace(network, lstm_size=8))
  with pytest.raises(ConfigError, match=r"-\w+\.npz was written with lstm_size=8, this run has 0"):
    learner_lib.build(network)
  fresh = dataclasses.replace(network, fresh=True, keep_checkpoints=1)
  first, path = run_learner(fresh)
  assert first.restored_from is None and first.snapshot().updates == 1
  second, _ = run_learner(fresh)  # a restart with the same flags resumes its own run
  assert second.restored_from == path and second.snapshot().updates == 2
  assert not os.path.exists(path) and len(checkpoint.checkpoints(network.checkpoint_dir)) == 2


@pytest.mark.parametrize("folder", ["/proc/impala-checkpoints", "{tmp}/a-file/checkpoints"])
def test_a_checkpoint_folder_that_cannot_be_written_is_one_line_at_start(tmp_path, folder):
  (tmp_path / "a-file").write_text("")
  folder = folder.format(tmp=tmp_path)
  done = subprocess.run(
    [sys.executable, "learner_server.py", "--checkpoint-dir", folder, "--port", "0"],
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert done.returncode == 2 and done.stdout == ""
  assert done.stderr.strip().splitlines() == [
    f"learner_server.py: error: bad value for --checkpoint-dir: {folder!r} (not a folder "
    f"this learner can write: {done.stderr.split('write: ')[1].strip()[:-1]})"
  ]
