"""How environments are made and described. Which suites there are, and which ids
belong to which, is the table in suites.py; here is how each `maker` builds a batch:

- gymnasium ids (`CartPole-v1`, ...), with gymnasium's own vectorized version when it
  has one;
- Atari as `ALE/<Game>-v5` through ale-py's vector environment (C++, threaded): the
  IMPALA preprocessing (84x84 grey, 4 frames skipped with max-pooling over the last two,
  up to 30 no-ops at reset, a stack of the 4 newest frames) with v5's sticky actions;
  rewards are left as they are (clip them in the loss: --max-abs-reward 1). `env_kwargs`
  go to `ale_py.vector_env.AtariVectorEnv`, e.g. `{"episodic_life": true}`;
- `bsuite/catch`: bsuite's Catch (dm_env) through an adapter (see catch.py);
- your own: `MODULE:ID` imports MODULE (which registers ID with gymnasium) first, as
  `gym.make` does; so does `--env-module MODULE`, in the learner, its actors and
  evaluation alike;
- MinAtar as `MinAtar/<Game>-v1` (the `minatar` package: 10x10xC boolean images, the
  minimal action set) and POPGym as `popgym-<Name>-v0` (the `popgym` package: memory
  tasks), registered with gymnasium when first named.

Observations that are not a Box (POPGym's Discrete ones, say) are flattened to float32
vectors, a Discrete one becoming one-hot.

Environments are batched gymnasium vector environments in NEXT_STEP autoreset mode:
the step that ends an episode returns its real final observation (terminated or
truncated), and the following step returns the first observation of the next
episode with reward 0. That following "reset step" is not a real transition; the
loss masks it out (see losses.py), which lets truncated episodes bootstrap from
their true final observation.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import sys
from typing import NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from impala import suites
from impala.config import ConfigError


class EnvSpec(NamedTuple):
  """What the learner and the networks need to know about an environment."""

  observation_shape: tuple
  observation_dtype: np.dtype
  num_actions: int
  frame_stack: int = 1  # > 1: observations are stacks [H, W, K] of the K newest frames


ATARI_DEFAULTS = dict(
  stack_num=4, repeat_action_probability=0.25, reward_clipping=False, use_fire_reset=False
)


def load_modules(modules: str, env_id: str = "") -> str:
  """Imports the modules of --env-module (comma-separated) and the MODULE of an id
  MODULE:ID, as gymnasium's `make` does, so that they register their environments;
  returns the id without its module. The working directory is searched too (where a
  user's module is, for the learner, its local actors and evaluation alike)."""
  module, _, name = env_id.rpartition(":")
  wanted = [m.strip() for m in modules.split(",") if m.strip()] + ([module] if module else [])
  if wanted and os.getcwd() not in sys.path and "" not in sys.path:
    sys.path.append(os.getcwd())
  for m in wanted:
    try:
      importlib.import_module(m)
    except ImportError as e:
      raise ConfigError(
        f"bad value for {'--env-id' if m == module else '--env-module'}: cannot import "
        f"module {m!r} ({e})",
        "env_id" if m == module else "env_module",
      ) from None
  return name


def _flat(env: gym.Env) -> gym.Env:
  """`env` with its observations as float32 vectors, unless they are a Box already."""
  space = env.observation_space
  if isinstance(space, gym.spaces.Box):
    return env
  flat = gym.spaces.flatten_space(space)
  box = gym.spaces.Box(flat.low, flat.high, flat.shape, np.float32)
  return gym.wrappers.TransformObservation(
    env, lambda o: gym.spaces.flatten(space, o).astype(np.float32), box
  )


def make_batch(
  env_id: str, num_envs: int, env_kwargs: dict | None = None, modules: str = ""
) -> gym.vector.VectorEnv:
  """A batch of `num_envs` environments; `reset(seed=...)` them before stepping.
  `modules`: --env-module, imported first (see load_modules).

  Uses the environment's own vectorized implementation when gymnasium has one
  (CartPole's is ~100x faster than stepping copies one by one).
  """
  env_kwargs = dict(env_kwargs or {})
  env_id = load_modules(modules, env_id)
  suite = suites.suite_of(env_id)
  if env_id not in gym.registry:
    suites.register(suite)
  return MAKERS[suite.maker](env_id, num_envs, env_kwargs)


def _gymnasium(env_id: str, num_envs: int, env_kwargs: dict) -> gym.vector.VectorEnv:
  """gymnasium's own vector environment where the id has one, else copies stepped in turn
  (observations that are not a Box flattened)."""
  spec = gym.spec(env_id)
  if spec.vector_entry_point is not None:
    envs = gym.make_vec(
      env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **env_kwargs
    )
  else:
    envs = gym.make_vec(
      env_id,
      num_envs=num_envs,
      vectorization_mode="sync",
      vector_kwargs={"autoreset_mode": AutoresetMode.NEXT_STEP},
      wrappers=[_flat],
      **env_kwargs,
    )
  mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
  if mode != AutoresetMode.NEXT_STEP:
    raise ValueError(f"{env_id}: autoreset mode {mode} is not supported (need NEXT_STEP)")
  if not isinstance(envs.single_action_space, gym.spaces.Discrete):
    raise ValueError(
      f"{env_id}: only discrete action spaces are supported, got {envs.single_action_space}"
    )
  return envs


def _atari(env_id: str, num_envs: int, env_kwargs: dict) -> gym.vector.VectorEnv:
  from ale_py.roms import get_all_rom_ids
  from ale_py.vector_env import AtariVectorEnv

  game = env_id.removeprefix("ALE/").rsplit("-", 1)[0]
  rom = re.sub(r"(?<!^)(?=[A-Z])", "_", game).lower()  # SpaceInvaders -> space_invaders
  if rom not in get_all_rom_ids():
    raise ValueError(f"ale-py has no game {game} (ROM {rom!r})")
  return _AtariLayout(AtariVectorEnv(rom, num_envs, **{**ATARI_DEFAULTS, **env_kwargs}))


class _AtariLayout(gym.vector.VectorObservationWrapper):
  """ale-py's [K, H, W] stacks as [H, W, K] (the conv torsos' layout); seeds taken
  modulo 2**31 (ale-py's are C ints)."""

  def __init__(self, envs: gym.vector.VectorEnv):
    super().__init__(envs)
    k, h, w = envs.single_observation_space.shape
    self.single_observation_space = gym.spaces.Box(0, 255, (h, w, k), np.uint8)
    self.observation_space = gym.spaces.Box(0, 255, (envs.num_envs, h, w, k), np.uint8)
    self.metadata = {**envs.metadata, "frame_stack": k}

  def reset(self, *, seed=None, options=None):
    return super().reset(seed=None if seed is None else seed % 2**31, options=options)

  def observations(self, observations: np.ndarray) -> np.ndarray:
    return np.moveaxis(observations, 1, -1)


MAKERS = {"gymnasium": _gymnasium, "ale": _atari}  # suites.Suite.maker -> how


def spec_of(envs: gym.vector.VectorEnv) -> EnvSpec:
  space = envs.single_observation_space
  return EnvSpec(
    tuple(space.shape),
    np.dtype(space.dtype),
    int(envs.single_action_space.n),
    int(envs.metadata.get("frame_stack", 1)),
  )


def describe(env_id: str, env_kwargs: dict | None = None, modules: str = "") -> EnvSpec:
  """The spec of an environment, from one throwaway copy; ConfigError if there is none."""
  try:
    envs = make_batch(env_id, 1, env_kwargs, modules)
  except ConfigError:
    raise
  except (gym.error.Error, ImportError, ValueError, TypeError, RuntimeError) as e:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise ConfigError(
      f"bad value for --env-id/--env-kwargs: cannot make {env_id!r} with "
      f"{json.dumps(env_kwargs or {})}: {reason}"
    ) from None
  try:
    return spec_of(envs)
  finally:
    envs.close()
