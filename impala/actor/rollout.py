"""The rollout: a batch of environments stepped by a jitted policy, cut into unrolls."""

from __future__ import annotations

import time

import jax
import numpy as np

from impala import algorithms, networks, specs
from impala.actor.stepper import Stepper
from impala.config import Config


def make_gradient(config: Config, network: networks.Network):
  """`gradient(params, unroll) -> d loss / d params` (A3C), jitted."""
  loss = algorithms.loss_for_run(config, network.unroll)
  return jax.jit(lambda params, unroll: jax.grad(loss, has_aux=True)(params, unroll)[0])


class Rollout(Stepper):
  """The environments and policy of one run (`config` holds the run's settings, as the
  handshake gave them), and where the current episodes stand: a Stepper whose actions
  come from its own policy."""

  def __init__(self, config: Config):
    super().__init__(config)
    self.spec = specs.UnrollSpec.for_run(config, self.env)
    self.network = networks.for_run(config, self.env)
    self.policy = networks.make_policy(self.network)
    self.gradient = make_gradient(config, self.network) if config.algorithm == "a3c" else None
    self.rng = jax.random.PRNGKey(config.seed)
    n = config.num_envs
    self.done = np.zeros(n, bool)  # the current observation ends its episode
    self.first = np.ones(n, bool)  # the current observation starts an episode
    self.core_state = self.network.initial_state(n)
    self.episode_return = np.zeros(n, np.float32)
    self.episode_length = np.zeros(n, np.int32)

  load = staticmethod(jax.device_put)  # the learner's parameters, onto this actor's device

  def gradients(self, params, unroll: specs.Unroll) -> dict:
    """A3C: the gradient of the loss on `unroll`, on the host."""
    return jax.device_get(self.gradient(params, unroll))

  def unroll(self, params) -> tuple[specs.Unroll, np.ndarray, np.ndarray]:
    """Steps all environments `unroll_length` times; returns the unroll and the returns
    and lengths of the episodes that ended in it.

    The current observation is stored as obs_0 of this unroll and was obs_T of
    the previous one: consecutive unrolls overlap by one observation, so the
    learner can bootstrap from obs_T without the actor sending any step twice.
    """
    out = self.spec.empty()
    # The state the network uses at obs_0: zero where obs_0 starts an episode.
    core_state = tuple(
      np.where(self.first[:, None], 0.0, s).astype(np.float32) for s in self.core_state
    )
    returns, lengths = [], []

    out.observations[0], out.terminated[0], out.truncated[0] = (
      self.obs,
      self.terminated,
      self.truncated,
    )
    clock = time.perf_counter
    for t in range(self.spec.unroll_length):
      started = clock()
      self.rng, action, step_logits, self.core_state = self.policy(
        params, self.rng, self.obs, self.first, self.core_state
      )
      out.actions[t] = action
      out.behaviour_logits[t] = step_logits
      self.inference_seconds += clock() - started
      self.step(out.actions[t])
      out.observations[t + 1], out.rewards[t], out.terminated[t + 1], out.truncated[t + 1] = (
        self.obs,
        self.rewards,
        self.terminated,
        self.truncated,
      )
      # A step taken from a final observation is the reset step: no reward, no length.
      self.episode_return += out.rewards[t]
      self.episode_length += ~self.done
      self.first = self.done
      self.done = self.terminated | self.truncated
      if self.done.any():
        returns.append(self.episode_return[self.done])
        lengths.append(self.episode_length[self.done])
        self.episode_return[self.done] = 0.0
        self.episode_length[self.done] = 0

    return (
      out._replace(core_state=core_state),
      np.concatenate(returns) if returns else np.zeros(0, np.float32),
      np.concatenate(lengths) if lengths else np.zeros(0, np.int32),
    )
