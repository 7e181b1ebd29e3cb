"""A trained policy in your own code: load a run, a checkpoint or a final model, and call
it on observations.

    from impala.policy import load
    policy = load("runs/CartPole-v1-20261202-070000")   # a run directory, or a file
    actions = policy(observations)                      # [N, ...] -> [N] int32

Evaluation as a function: `impala.evaluate.evaluate(path, episodes=100)`.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from impala import algorithms, checkpoint, environments, networks, rundir
from impala.config import Config, ConfigError


def newest(path: str, models: bool = True) -> tuple[str, dict]:
  """(file, record) of what `path` holds that has the most updates: `path` itself if it is
  a file; in a folder (a run directory or a --checkpoint-dir) its final model (unless not
  `models`) or its newest readable checkpoint (a resumed run's are newer than its model)."""
  if os.path.isfile(path):
    candidates = [path]
  else:
    model = os.path.join(path, rundir.MODEL)
    candidates = checkpoint.checkpoints(path) + checkpoint.checkpoints(
      os.path.join(path, rundir.CHECKPOINTS)
    )
    candidates += [model] if models and os.path.isfile(model) else []
  found = []
  for candidate in candidates:
    try:
      record = checkpoint.record_of(candidate)
    except ValueError:
      continue
    found.append((record.get("updates", 0), record.get("kind") == "model", candidate, record))
  if not found:
    raise ConfigError(f"no readable checkpoint or model at {path!r}")
  return max(found, key=lambda f: f[:2])[2:]


def load_params(path: str, averaged: bool = True) -> tuple[Config, dict, str]:
  """(run config, params, file) of what `path` holds (see `newest`): the moving average of
  the parameters, or (`averaged=False`, checkpoints only) the newest ones."""
  path, record = newest(path, models=averaged)
  config = Config(**record["config"])
  env = environments.describe(config.env_id, config.env_kwargs, config.env_module)
  params = networks.for_run(config, env).init(jax.random.PRNGKey(0))
  if record.get("kind") == "model":
    if not averaged:
      raise ConfigError(f"{path} is a final model: it holds the averaged parameters only")
    return config, checkpoint.load(path, params)[0], path
  like = algorithms.initial_state(params, algorithms.make_optimizer(config))
  state = checkpoint.load(path, like)[0]
  return config, state.average_params if averaged else state.params, path


class Policy:
  """Actions for a batch of observations, from a run's parameters. A recurrent policy
  keeps its state between calls: pass `first` (which observations start an episode), or
  `reset()` it."""

  def __init__(self, config: Config, params, greedy: bool = True, seed: int = 0):
    self.config, self.params = config, params
    env = environments.describe(config.env_id, config.env_kwargs, config.env_module)
    self.observation_shape = env.observation_shape
    self.network = networks.for_run(config, env)
    self._step = networks.make_policy(self.network, greedy)
    self._rng = jax.random.PRNGKey(seed)
    self._state, self._batch = None, 0

  def reset(self):
    self._state = None

  def __call__(self, observations, first=None) -> np.ndarray:
    """Actions [N] for observations [N, ...] (one observation: one action)."""
    observations = np.asarray(observations)
    single = observations.shape == tuple(self.observation_shape)
    batch = observations[None] if single else observations
    n = len(batch)
    if self._state is None or n != self._batch:
      self._state, self._batch, first = self.network.initial_state(n), n, np.ones(n, bool)
    first = np.zeros(n, bool) if first is None else np.broadcast_to(np.asarray(first, bool), (n,))
    self._rng, actions, _, self._state = self._step(
      self.params, self._rng, batch, first, self._state
    )
    actions = np.asarray(actions)
    return actions[0] if single else actions


def load(path: str, greedy: bool = True, params: str = "averaged", seed: int = 0) -> Policy:
  """The policy of a run directory, a checkpoint folder or file, or a final model:
  `greedy` (its most likely actions) or sampled; the moving average of the parameters
  (`params="averaged"`) or the newest."""
  config, values, _ = load_params(path, params == "averaged")
  return Policy(config, values, greedy, seed)
