"""Numeric checks of the V-trace loss on tiny hand-written arrays."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from impala import losses, networks, specs

GAMMA = 0.9


def fake_unroll(params, obs, first, state):
  """A 'network' whose outputs are its parameters, so tests choose values and logits."""
  return networks.AgentOutput(params["logits"], params["value"])


def make_batch(rewards, terminated=None, truncated=None, behaviour_logits=None, actions=None):
  t = len(rewards)

  def flags(x):
    return np.array(x if x is not None else [False] * (t + 1), bool)[:, None]

  return specs.Unroll(
    observations=np.zeros((t + 1, 1, 1), np.float32),
    terminated=flags(terminated),
    truncated=flags(truncated),
    actions=np.array(actions if actions is not None else [0] * t, np.int32)[:, None],
    rewards=np.array(rewards, np.float32)[:, None],
    behaviour_logits=(
      np.zeros((t, 1, 2), np.float32)
      if behaviour_logits is None
      else np.array(behaviour_logits, np.float32)[:, None]
    ),
    core_state=(),
  )


def loss_parts(values, batch, logits=None, loss=losses.impala_loss, **kw):
  t = batch.rewards.shape[0]
  params = {
    "value": jnp.array(values, jnp.float32)[:, None],
    "logits": jnp.zeros((t + 1, 1, 2)) if logits is None else jnp.array(logits)[:, None],
  }
  loss_fn = loss(fake_unroll, discount=GAMMA, baseline_cost=1.0, entropy_cost=0.0, **kw)
  (_, metrics), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(params, batch)
  return metrics, grads


def baseline_errors(grads, t):
  # d(0.5 * mean(err^2)) / d v_tm1 = -err / T for each step: recover err = vs - v.
  return -np.asarray(grads["value"][:t, 0]) * t


def test_on_policy_targets_are_n_step_returns():
  values = [0.5, 1.0, 2.0, 4.0]
  batch = make_batch([1.0, 1.0, 1.0])
  metrics, grads = loss_parts(values, batch)
  vs0 = 1 + GAMMA + GAMMA**2 + GAMMA**3 * 4.0
  vs1 = 1 + GAMMA + GAMMA**2 * 4.0
  vs2 = 1 + GAMMA * 4.0
  expected = np.array([vs0 - 0.5, vs1 - 1.0, vs2 - 2.0])
  np.testing.assert_allclose(baseline_errors(grads, 3), expected, rtol=1e-5)
  np.testing.assert_allclose(metrics["baseline_loss"], 0.5 * np.mean(expected**2), rtol=1e-5)
  # Uniform policy, so log pi(a) = log 0.5; advantages equal the errors on-policy.
  np.testing.assert_allclose(metrics["policy_loss"], -np.mean(expected * np.log(0.5)), rtol=1e-5)
  np.testing.assert_allclose(metrics["mean_rho"], 1.0)


def test_termination_cuts_bootstrap_and_masks_reset_step():
  # obs_2 is terminal; step 2 (from obs_2) is the reset step and must not count.
  values = [0.5, 1.0, 2.0, 4.0]
  batch = make_batch([1.0, 1.0, 0.0], terminated=[False, False, True, False])
  _, grads = loss_parts(values, batch)
  expected = np.array([1 + GAMMA * 1 - 0.5, 1 - 1.0, 0.0])
  np.testing.assert_allclose(baseline_errors(grads, 3), expected, rtol=1e-5, atol=1e-6)


def test_truncation_bootstraps_from_final_observation():
  # obs_2 ends a time-limited episode: step 1 bootstraps from V(obs_2) = 2.0.
  values = [0.5, 1.0, 2.0, 4.0]
  batch = make_batch([1.0, 1.0, 0.0], truncated=[False, False, True, False])
  _, grads = loss_parts(values, batch)
  expected = np.array([1 + GAMMA * (1 + GAMMA * 2.0) - 0.5, 1 + GAMMA * 2.0 - 1.0, 0.0])
  np.testing.assert_allclose(baseline_errors(grads, 3), expected, rtol=1e-5, atol=1e-6)


def test_importance_weights_are_clipped():
  # Behaviour chose action 0 with prob ~0.12; the learner's uniform policy gives 0.5: rho ~4.
  behaviour = [[-1.0, 1.0]] * 2
  values = [0.0, 0.0, 0.0]
  batch = make_batch([1.0, 1.0], behaviour_logits=behaviour)
  metrics, grads = loss_parts(values, batch, clip_rho=1.0)
  rho = 0.5 / jax.nn.softmax(jnp.array([-1.0, 1.0]))[0]
  np.testing.assert_allclose(metrics["mean_rho"], rho, rtol=1e-5)
  # With rho-bar = c-bar = 1, targets are the on-policy ones: 1 + gamma, 1.
  np.testing.assert_allclose(baseline_errors(grads, 2), [1 + GAMMA, 1.0], rtol=1e-5)


@pytest.mark.parametrize("max_abs_reward,expected", [(0.0, 10.0), (1.0, 1.0)])
def test_reward_clipping(max_abs_reward, expected):
  batch = make_batch([10.0], terminated=[False, True])
  _, grads = loss_parts([0.0, 0.0], batch, max_abs_reward=max_abs_reward)
  np.testing.assert_allclose(baseline_errors(grads, 1), [expected], rtol=1e-5)


def test_a3c_ignores_behaviour_logits_and_takes_n_step_returns():
  """On policy (A3C): the same targets as an on-policy IMPALA batch, whatever the logits the
  batch carries, and the gradient also flows through the policy of every step."""
  values = [0.5, 1.0, 2.0, 4.0]
  logits = [[0.3, -0.2]] * 4
  # Action 1 was near certain under the stale logits: off policy, rho would be about 0.4.
  stale = make_batch([1.0, 1.0, 1.0], behaviour_logits=[[-3.0, 3.0]] * 3, actions=[1, 1, 1])
  a3c, a3c_grads = loss_parts(values, stale, logits=logits, loss=losses.a3c_loss)
  reference, reference_grads = loss_parts(
    values,
    make_batch([1.0, 1.0, 1.0], behaviour_logits=logits[:3], actions=[1, 1, 1]),
    logits=logits,
  )
  np.testing.assert_allclose(a3c["mean_rho"], 1.0, rtol=1e-6)
  for name in ("baseline_loss", "policy_loss", "loss"):
    np.testing.assert_allclose(a3c[name], reference[name], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), a3c_grads, reference_grads)
  off_policy, _ = loss_parts(values, stale, logits=logits)
  assert not np.isclose(off_policy["policy_loss"], a3c["policy_loss"])
