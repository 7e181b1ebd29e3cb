"""Checkpoints: atomic files, last K kept, corrupt ones skipped, and a learner that resumes."""

import dataclasses
import os

import jax
import numpy as np
import pytest

from impala import checkpoint, testing
from impala.learner import Learner
from impala.learner.learner import params_digest


def state_like():
  return {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": (np.zeros(3, np.int32),)}


def test_save_then_load_round_trips_and_keeps_the_newest_k(tmp_path):
  for updates in (5, 10, 15, 20):
    state = jax.tree_util.tree_map(lambda x, u=updates: x + u, state_like())
    checkpoint.save(str(tmp_path), state, dict(updates=updates, frames=updates * 10), keep=2)
  names = sorted(os.listdir(tmp_path))
  assert names == ["ckpt-000000000015.npz", "ckpt-000000000020.npz"]  # no temporary files left
  path, state, record = checkpoint.restore_latest(str(tmp_path), state_like())
  assert path.endswith(names[-1]) and record["updates"] == 20 and record["frames"] == 200
  np.testing.assert_array_equal(state["w"], state_like()["w"] + 20)
  assert state["b"][0].dtype == np.int32


@pytest.mark.parametrize("damage", ["truncate", "flip", "empty"])
def test_a_damaged_newest_checkpoint_is_reported_and_skipped(tmp_path, damage, caplog):
  for updates in (1, 2):
    checkpoint.save(str(tmp_path), state_like(), dict(updates=updates, frames=0), keep=5)
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
  checkpoint.save(str(tmp_path), state_like(), dict(updates=1, frames=0), keep=1)
  other = {"w": np.zeros((2, 4), np.float32), "b": (np.zeros(3, np.int32),)}
  with pytest.raises(ValueError, match=r"leaf 1 is float32\[2, 3\].*needs float32\[2, 4\]"):
    checkpoint.load(checkpoint.checkpoints(str(tmp_path))[0], other)
  assert checkpoint.restore_latest(str(tmp_path), other) is None


def test_learner_resumes_params_optimizer_counters_and_version(tmp_path, small_config):
  config = dataclasses.replace(small_config, checkpoint_dir=str(tmp_path))
  first = Learner(config)
  first.start()
  try:
    for sequence in range(6):  # three real updates of two unrolls each
      unroll = testing.random_unroll(first.spec, seed=sequence)
      first.intake.enqueue(unroll, testing.info(sequence=sequence, params_version=1))
    assert [first.step(timeout=10) for _ in range(3)] == [True] * 3
    first.save_checkpoint()
  finally:
    first.close()
  before = first.snapshot()
  assert (before.updates, before.frames, before.version) == (3, 3 * 2 * 5 * 4, 4)
  second = Learner(config)
  try:
    assert second.restored_from is not None
    after = second.snapshot()
    assert (after.updates, after.frames, after.version) == (3, 120, 4)
    same = jax.tree_util.tree_map(np.array_equal, first.state(), second.state())
    assert all(jax.tree_util.tree_leaves(same))
    digests = [
      params_digest(learner.state().params) for learner in (first, second, Learner(small_config))
    ]
    assert digests[0] == digests[1] != digests[2]
  finally:
    second.close()
