"""The losses, as pure functions: IMPALA's V-trace actor-critic (Espeholt et al. 2018),
A3C's n-step advantage actor-critic (Mnih et al. 2016), and APPO's V-trace targets with
PPO's clipped surrogate (Schulman et al. 2017; as in Sample Factory, Petrenko et al. 2020)."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import rlax

from impala import specs
from impala.config import Config


def make(config: Config, unroll_fn: Callable) -> Callable:
  """The loss of the configured algorithm (see `impala_loss`)."""
  return impala_loss(
    unroll_fn,
    discount=config.discount,
    baseline_cost=config.baseline_cost,
    entropy_cost=config.entropy_cost,
    clip_rho=config.clip_rho,
    clip_pg_rho=config.clip_pg_rho,
    max_abs_reward=config.max_abs_reward,
    on_policy=config.algorithm == "a3c",
    ppo_clip=config.ppo_clip if config.algorithm == "appo" else 0.0,
  )


def impala_loss(
  unroll_fn: Callable,
  *,
  discount: float,
  baseline_cost: float,
  entropy_cost: float,
  clip_rho: float = 1.0,
  clip_pg_rho: float = 1.0,
  max_abs_reward: float = 0.0,
  on_policy: bool = False,
  ppo_clip: float = 0.0,
) -> Callable:
  """Returns `loss(params, batch: specs.Unroll) -> (loss, metrics)`.

  `on_policy`: the batch was acted by `params` themselves (A3C), its behaviour logits
  are not used, and every importance weight is 1: V-trace's targets are then the
  n-step returns bootstrapped from the unroll's last value, and its policy-gradient
  advantage r_t + gamma * G_t+1 - V(x_t), which is A3C's loss.

  `unroll_fn(params, obs, first, state)` replays the network over [T+1, B, ...].
  Reset steps (the step after an episode's final observation, see
  environments.py) get an importance weight of 0: their V-trace error and
  advantage are then exactly 0, nothing flows through them into earlier steps,
  and a truncated episode bootstraps from the value of its real final observation.

  `ppo_clip` > 0 (APPO): the policy term is PPO's clipped surrogate of the ratio
  pi/mu to the behaviour policy, clipped to [1 - ppo_clip, 1 + ppo_clip], with the
  advantage r_t + gamma * v_s(t+1) - V(x_t) of the V-trace targets, normalized over
  the batch; the value term still regresses on the V-trace targets. It may then take
  several steps on one batch, the ratio keeping each close to what acted.
  """

  def loss_fn(params, batch: specs.Unroll):
    done = batch.terminated | batch.truncated  # [T+1, B]
    # The actor already reset the core state for obs_0 when needed.
    first = jnp.concatenate([jnp.zeros_like(done[:1]), done[:-1]], axis=0)
    out = unroll_fn(params, batch.observations, first, batch.core_state)
    logits_tm1, v_tm1, v_t = out.logits[:-1], out.value[:-1], out.value[1:]

    valid = ~done[:-1]  # [T, B]
    discount_t = discount * (~batch.terminated[1:]).astype(jnp.float32)
    r_t = batch.rewards
    if max_abs_reward:
      r_t = jnp.clip(r_t, -max_abs_reward, max_abs_reward)

    log_pi = jax.nn.log_softmax(logits_tm1)
    log_mu = (
      jax.lax.stop_gradient(log_pi) if on_policy else jax.nn.log_softmax(batch.behaviour_logits)
    )
    a_tm1 = batch.actions[..., None]
    log_pi_a = jnp.take_along_axis(log_pi, a_tm1, axis=-1)[..., 0]
    log_mu_a = jnp.take_along_axis(log_mu, a_tm1, axis=-1)[..., 0]
    rho_tm1 = jnp.where(valid, jnp.exp(log_pi_a - log_mu_a), 0.0)

    vtrace = jax.vmap(
      rlax.vtrace_td_error_and_advantage, in_axes=(1, 1, 1, 1, 1, None, None, None), out_axes=1
    )
    out_vt = vtrace(
      v_tm1, v_t, r_t, discount_t, jax.lax.stop_gradient(rho_tm1), 1.0, clip_rho, clip_pg_rho
    )

    mask = valid.astype(jnp.float32)
    if ppo_clip:
      count = jnp.maximum(mask.sum(), 1)
      advantage = jax.lax.stop_gradient(out_vt.q_estimate - v_tm1)
      mean = jnp.sum(advantage * mask) / count
      std = jnp.sqrt(jnp.sum(jnp.square(advantage - mean) * mask) / count)
      advantage = (advantage - mean) / (std + 1e-8)
      ratio = jnp.exp(log_pi_a - log_mu_a)
      clipped = jnp.clip(ratio, 1.0 - ppo_clip, 1.0 + ppo_clip)
      surrogate = jnp.minimum(ratio * advantage, clipped * advantage)
      pg_loss = -jnp.mean(jnp.where(valid, surrogate, 0.0))
    else:
      pg_loss = -jnp.mean(jax.lax.stop_gradient(out_vt.pg_advantage) * log_pi_a * mask)
    baseline_loss = 0.5 * jnp.mean(jnp.square(out_vt.errors) * mask)
    entropy = jnp.mean(-jnp.sum(jnp.exp(log_pi) * log_pi, axis=-1) * mask)
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
