"""The actor's side of learner-side inference (--inference learner): the run's
environments, stepped with the actions the learner sends back for their observations.
It needs no JAX: an actor of this mode installs requirements-actor.txt alone."""

from __future__ import annotations

import time

import numpy as np

from impala import environments, specs
from impala.config import Config


class Stepper:
  """The environments of one run (`config` holds the run's settings, as the handshake
  gave them) and their current step: what learner-side inference sends the learner, and
  what a Rollout's own policy acts on."""

  def __init__(self, config: Config):
    self.settings = config.run_settings()
    self.unroll_length = config.unroll_length
    self.envs = environments.make_batch(
      config.env_id, config.num_envs, config.env_kwargs, config.env_module
    )
    self.env = environments.spec_of(self.envs)
    n = self.num_envs = config.num_envs
    self.obs, _ = self.envs.reset(seed=config.seed)
    self.rewards = np.zeros(n, np.float32)  # of the step that led to `obs`
    self.terminated = np.zeros(n, bool)
    self.truncated = np.zeros(n, bool)
    self.steps = 0  # since the environments were reset
    self.frames = 0
    self.env_seconds = 0.0  # stepping the environments
    self.inference_seconds = 0.0  # in the policy, or waiting for the learner's actions

  def observations(self, actor_id: str, whole: bool) -> specs.Step:
    """The current step; stacked frames as the newest frame alone unless `whole` (a
    stream's first step: the learner rebuilds the stacks from there)."""
    obs = self.obs if whole or self.env.frame_stack == 1 else self.obs[..., -1]
    return specs.Step(actor_id, self.steps, obs, self.rewards, self.terminated, self.truncated)

  def step(self, actions: np.ndarray):
    started = time.perf_counter()
    self.obs, rewards, self.terminated, self.truncated, _ = self.envs.step(actions)
    self.env_seconds += time.perf_counter() - started
    self.rewards = np.asarray(rewards, np.float32)
    self.steps += 1
    self.frames += self.num_envs
