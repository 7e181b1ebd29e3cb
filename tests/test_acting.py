"""The actor's unrolls on real CartPole environments, without a learner."""

import jax
import numpy as np

from impala.actor import Session
from impala.config import Config


def test_unrolls_overlap_by_one_step_and_count_episodes():
  config = Config(num_envs=8, unroll_length=50, seed=3)
  actor = Session(config)
  actor.prepare(config)
  params = actor.rollout.network.init(jax.random.PRNGKey(0))
  unrolls = [actor.unroll(params, 7) for _ in range(4)]
  for (a, _), (b, _) in zip(unrolls, unrolls[1:]):
    np.testing.assert_array_equal(a.observations[-1], b.observations[0])
    np.testing.assert_array_equal(a.terminated[-1], b.terminated[0])
    np.testing.assert_array_equal(a.truncated[-1], b.truncated[0])
  assert [info.sequence for _, info in unrolls] == [0, 1, 2, 3]
  assert all(info.params_version == 7 for _, info in unrolls)
  assert actor.rollout.frames == 4 * 50 * 8

  returns = np.concatenate([info.episode_returns for _, info in unrolls])
  lengths = np.concatenate([info.episode_lengths for _, info in unrolls])
  # Each observation obs_1..obs_T belongs to one unroll: every episode end is reported once.
  ended = np.concatenate([u.terminated[1:] | u.truncated[1:] for u, _ in unrolls])
  assert len(returns) == ended.sum() > 0
  # CartPole pays 1 per real step: returns equal lengths, and reset steps (taken from a
  # final observation) pay nothing.
  from_final = np.concatenate([u.terminated[:-1] | u.truncated[:-1] for u, _ in unrolls])
  rewards = np.concatenate([u.rewards for u, _ in unrolls])
  np.testing.assert_array_equal(returns, lengths.astype(np.float32))
  assert (rewards[from_final] == 0).all() and (rewards[~from_final] == 1).all()


def test_the_lstm_state_carries_across_unrolls_and_the_learner_replays_what_acted():
  """The core state sent with an unroll is the one the actor ended the previous unroll
  with (zeroed where obs_0 starts an episode), and replaying the unroll from it the way
  the loss does gives the very logits the actor acted with, resets inside it included."""
  config = Config(num_envs=8, unroll_length=40, seed=5, lstm_size=16)
  actor = Session(config)
  actor.prepare(config)
  network = actor.rollout.network
  params = network.init(jax.random.PRNGKey(2))
  previous, _ = actor.unroll(params, 0)
  ended_with = [np.array(s) for s in actor.rollout.core_state]
  unroll, _ = actor.unroll(params, 0)
  # obs_0 begins an episode when the observation before it ended one (the reset step).
  starts = previous.terminated[-2] | previous.truncated[-2]
  for sent, ended in zip(unroll.core_state, ended_with):
    np.testing.assert_array_equal(sent[~starts], ended[~starts])
    assert (sent[starts] == 0).all() and np.abs(sent[~starts]).sum() > 0
  done = unroll.terminated | unroll.truncated
  assert done[1:-1].any(), "no episode ended inside the unroll: the test shows nothing"
  first = np.concatenate([np.zeros_like(done[:1]), done[:-1]])  # as losses.py derives it
  replayed = network.unroll(params, unroll.observations, first, unroll.core_state)
  np.testing.assert_allclose(replayed.logits[:-1], unroll.behaviour_logits, rtol=1e-4, atol=1e-5)
