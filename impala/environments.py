"""Everything the project knows about environments: the one place other suites plug in.

Environments are batched gymnasium vector environments in NEXT_STEP autoreset mode:
the step that ends an episode returns its real final observation (terminated or
truncated), and the following step returns the first observation of the next
episode with reward 0. That following "reset step" is not a real transition; the
loss masks it out (see losses.py), which lets truncated episodes bootstrap from
their true final observation.
"""

from __future__ import annotations

from typing import NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode


class EnvSpec(NamedTuple):
  """What the learner and the networks need to know about an environment."""
  observation_shape: tuple
  observation_dtype: np.dtype
  num_actions: int


def make(env_id: str, num_envs: int, env_kwargs: dict | None = None) -> gym.vector.VectorEnv:
  """A batch of `num_envs` environments; `reset(seed=...)` them before stepping.

  Uses the environment's own vectorized implementation when gymnasium has one
  (CartPole's is ~100x faster than stepping copies one by one).
  """
  env_kwargs = dict(env_kwargs or {})
  spec = gym.spec(env_id)
  if spec.vector_entry_point is not None:
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **env_kwargs)
  else:
    envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP}, **env_kwargs)
  mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
  if mode != AutoresetMode.NEXT_STEP:
    raise ValueError(f"{env_id}: autoreset mode {mode} is not supported (need NEXT_STEP)")
  if not isinstance(envs.single_action_space, gym.spaces.Discrete):
    raise ValueError(f"{env_id}: only discrete action spaces are supported, "
                     f"got {envs.single_action_space}")
  return envs


def spec_of(envs: gym.vector.VectorEnv) -> EnvSpec:
  space = envs.single_observation_space
  return EnvSpec(tuple(space.shape), np.dtype(space.dtype), int(envs.single_action_space.n))


def describe(env_id: str, env_kwargs: dict | None = None) -> EnvSpec:
  """The spec of an environment, from one throwaway copy."""
  envs = make(env_id, 1, env_kwargs=env_kwargs)
  try:
    return spec_of(envs)
  finally:
    envs.close()
