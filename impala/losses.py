"""The losses, as pure functions: IMPALA's V-trace actor-critic (Espeholt et al. 2018),
A3C's n-step advantage actor-critic (Mnih et al. 2016), and APPO's V-trace targets with
PPO's clipped surrogate (Schulman et al. 2017; as in Sample Factory, Petrenko et al. 2020).

All three are `vtrace_loss` with two parts of their own: whose log-probabilities the
importance weights divide by (the `behaviour`), and the `policy_term`. The actions'
distribution is a third part (distributions.py), so a loss serves any action space."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import rlax

from impala import specs
from impala.distributions import Categorical


def recorded(batch: specs.Unroll, log_pi_a: jax.Array, distribution) -> jax.Array:
  """The behaviour policy the actor recorded in the unroll (IMPALA, APPO)."""
  return distribution.log_prob(batch.behaviour_logits, batch.actions)


def on_policy(batch: specs.Unroll, log_pi_a: jax.Array, distribution) -> jax.Array:
  """The batch was acted by the parameters themselves (A3C): its recorded behaviour is not
  used and every importance weight is 1. V-trace's targets are then the n-step returns
  bootstrapped from the unroll's last value, and its policy-gradient advantage
  r_t + gamma * G_t+1 - V(x_t), which is A3C's loss."""
  return jax.lax.stop_gradient(log_pi_a)


def policy_gradient(log_pi_a, log_mu_a, vtrace: rlax.VTraceOutput, v_tm1, mask) -> jax.Array:
  """V-trace's policy gradient: -advantage * log pi(a)."""
  return -jnp.mean(jax.lax.stop_gradient(vtrace.pg_advantage) * log_pi_a * mask)


def clipped_surrogate(ppo_clip: float) -> Callable:
  """APPO's policy term: PPO's clipped surrogate of the ratio pi/mu to the behaviour
  policy, clipped to [1 - ppo_clip, 1 + ppo_clip], with the advantage
  r_t + gamma * v_s(t+1) - V(x_t) of the V-trace targets, normalized over the batch. It
  may then take several steps on one batch, the ratio keeping each close to what acted."""

  def term(log_pi_a, log_mu_a, vtrace: rlax.VTraceOutput, v_tm1, mask) -> jax.Array:
    count = jnp.maximum(mask.sum(), 1)
    advantage = jax.lax.stop_gradient(vtrace.q_estimate - v_tm1)
    mean = jnp.sum(advantage * mask) / count
    std = jnp.sqrt(jnp.sum(jnp.square(advantage - mean) * mask) / count)
    advantage = (advantage - mean) / (std + 1e-8)
    ratio = jnp.exp(log_pi_a - log_mu_a)
    clipped = jnp.clip(ratio, 1.0 - ppo_clip, 1.0 + ppo_clip)
    surrogate = jnp.minimum(ratio * advantage, clipped * advantage)
    return -jnp.mean(jnp.where(mask > 0, surrogate, 0.0))

  return term


def vtrace_loss(
  unroll_fn: Callable,
  *,
  discount: float,
  baseline_cost: float,
  entropy_cost: float,
  clip_rho: float = 1.0,
  clip_pg_rho: float = 1.0,
  max_abs_reward: float = 0.0,
  behaviour: Callable = recorded,
  policy_term: Callable = policy_gradient,
  distribution=Categorical,
) -> Callable:
  """Returns `loss(params, batch: specs.Unroll) -> (loss, metrics)`; `unroll_fn(params,
  obs, first, state)` replays the network over [T+1, B, ...]. The value term regresses on
  the V-trace targets. Reset steps (the step after an episode's final observation, see
  environments.py) get an importance weight of 0: their V-trace error and advantage are
  then exactly 0, nothing flows through them into earlier steps, and a truncated episode
  bootstraps from the value of its real final observation."""

  def loss_fn(params, batch: specs.Unroll):
    done = batch.terminated | batch.truncated  # [T+1, B]
    # The actor already reset the core state for obs_0 when needed.
    first = jnp.concatenate([jnp.zeros_like(done[:1]), done[:-1]], axis=0)
    out = unroll_fn(params, batch.observations, first, batch.core_state)
    policy_tm1, v_tm1, v_t = out.logits[:-1], out.value[:-1], out.value[1:]

    valid = ~done[:-1]  # [T, B]
    mask = valid.astype(jnp.float32)
    discount_t = discount * (~batch.terminated[1:]).astype(jnp.float32)
    r_t = batch.rewards
    if max_abs_reward:
      r_t = jnp.clip(r_t, -max_abs_reward, max_abs_reward)

    log_pi_a = distribution.log_prob(policy_tm1, batch.actions)
    log_mu_a = behaviour(batch, log_pi_a, distribution)
    rho_tm1 = jnp.where(valid, jnp.exp(log_pi_a - log_mu_a), 0.0)

    vtrace = jax.vmap(
      rlax.vtrace_td_error_and_advantage, in_axes=(1, 1, 1, 1, 1, None, None, None), out_axes=1
    )
    out_vt = vtrace(
      v_tm1, v_t, r_t, discount_t, jax.lax.stop_gradient(rho_tm1), 1.0, clip_rho, clip_pg_rho
    )

    pg_loss = policy_term(log_pi_a, log_mu_a, out_vt, v_tm1, mask)
    baseline_loss = 0.5 * jnp.mean(jnp.square(out_vt.errors) * mask)
    entropy = jnp.mean(distribution.entropy(policy_tm1) * mask)
    loss = pg_loss + baseline_cost * baseline_loss - entropy_cost * entropy
    metrics = dict(
      loss=loss,
      policy_loss=pg_loss,
      baseline_loss=baseline_loss,
      entropy=entropy,
      mean_rho=jnp.sum(rho_tm1 * mask) / jnp.maximum(mask.sum(), 1),
    )
    return loss, metrics

  return loss_fn


def impala_loss(unroll_fn: Callable, **costs) -> Callable:
  """IMPALA's loss: V-trace's targets and policy gradient, off the recorded behaviour."""
  return vtrace_loss(unroll_fn, **costs)


def a3c_loss(unroll_fn: Callable, **costs) -> Callable:
  """A3C's loss: the same, on policy (see `on_policy`)."""
  return vtrace_loss(unroll_fn, behaviour=on_policy, **costs)


def appo_loss(unroll_fn: Callable, *, ppo_clip: float, **costs) -> Callable:
  """APPO's loss: V-trace's targets with PPO's clipped surrogate (see `clipped_surrogate`)."""
  return vtrace_loss(unroll_fn, policy_term=clipped_surrogate(ppo_clip), **costs)


def costs(config) -> dict:
  """The loss settings of a run (`config` a Config) that every loss takes."""
  return dict(
    discount=config.discount,
    baseline_cost=config.baseline_cost,
    entropy_cost=config.entropy_cost,
    clip_rho=config.clip_rho,
    clip_pg_rho=config.clip_pg_rho,
    max_abs_reward=config.max_abs_reward,
  )
