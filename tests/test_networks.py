"""Shape tests of every network, and the agreement of `step` with `unroll`."""

import jax
import numpy as np
import pytest

from impala import networks

T, B, A = 3, 2, 5
CASES = [
  ("mlp", (4,), np.float32, 0),
  ("mlp", (4,), np.float32, 8),
  ("minatar", (10, 10, 4), bool, 0),
  ("minatar", (10, 10, 6), bool, 8),
  ("shallow", (84, 84, 4), np.uint8, 0),
  ("deep", (84, 84, 4), np.uint8, 0),
  ("deep", (84, 84, 4), np.uint8, 16),
]


@pytest.mark.parametrize("torso,shape,dtype,lstm", CASES)
def test_shapes_and_step_matches_unroll(torso, shape, dtype, lstm):
  net = networks.make_network(torso, (16, 16), lstm, shape, A)
  params = net.init(jax.random.PRNGKey(0))
  rng = np.random.default_rng(0)
  obs = (
    rng.integers(0, 255, (T, B) + shape)
    if dtype == np.uint8
    else rng.integers(0, 2, (T, B) + shape)
    if dtype is bool
    else rng.normal(size=(T, B) + shape)
  ).astype(dtype)
  first = np.array([[True, True], [False, True], [False, False]])
  out = net.unroll(params, obs, first, net.initial_state(B))
  assert out.logits.shape == (T, B, A) and out.value.shape == (T, B)
  assert np.isfinite(out.logits).all() and np.isfinite(out.value).all()
  state = net.initial_state(B)
  for t in range(T):
    step_out, state = net.step(params, obs[t], first[t], state)
    np.testing.assert_allclose(step_out.logits, out.logits[t], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(step_out.value, out.value[t], rtol=1e-4, atol=1e-5)
  assert len(state) == (2 if lstm else 0)


def test_lstm_resets_at_episode_start():
  net = networks.make_network("mlp", (8,), 8, (4,), 2)
  params = net.init(jax.random.PRNGKey(1))
  obs = np.random.default_rng(1).normal(size=(1, 4)).astype(np.float32)
  fresh, _ = net.step(params, obs, np.array([False]), net.initial_state(1))
  _, state = net.step(params, obs * 3, np.array([False]), net.initial_state(1))
  carried, _ = net.step(params, obs, np.array([False]), state)
  reset, _ = net.step(params, obs, np.array([True]), state)
  assert not np.allclose(carried.logits, fresh.logits)
  np.testing.assert_allclose(reset.logits, fresh.logits, rtol=1e-6)


def test_a_reset_zeroes_the_state_of_its_environment_only():
  net = networks.make_network("mlp", (8,), 8, (4,), 2)
  params = net.init(jax.random.PRNGKey(1))
  obs = np.random.default_rng(2).normal(size=(2, 4)).astype(np.float32)
  _, state = net.step(params, obs * 3, np.array([False, False]), net.initial_state(2))
  carried, _ = net.step(params, obs, np.array([False, False]), state)
  fresh, _ = net.step(params, obs, np.array([False, False]), net.initial_state(2))
  mixed, _ = net.step(params, obs, np.array([True, False]), state)
  np.testing.assert_allclose(mixed.logits[0], fresh.logits[0], rtol=1e-6)
  np.testing.assert_allclose(mixed.logits[1], carried.logits[1], rtol=1e-6)
  assert not np.allclose(carried.logits[0], fresh.logits[0])
