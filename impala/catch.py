"""bsuite's Catch (Osband et al. 2020) as a dm_env
environment, and the adapter that makes any dm_env environment a gymnasium one.

Catch is ported from bsuite 0.3.6 (bsuite/environments/catch.py, Apache 2.0) rather
than imported: importing bsuite pulls in pandas and scikit-image (hundreds of MB in the
images), and its scikit-image needs a networkx that the checkov pin refuses.
tests/test_environments.py checks the port step for step against bsuite itself, run in a
virtual environment of its own (.ci/run makes it).
"""

from __future__ import annotations

from collections.abc import Callable

import dm_env
import gymnasium as gym
import numpy as np
from dm_env import specs

_ACTIONS = (-1, 0, 1)  # left, stay, right


class Catch(dm_env.Environment):
  """A ball falls straight down a `rows` x `columns` board, from a random column of the
  top row; the paddle on the bottom row moves left, stays or moves right each step.
  Reward +1 for catching the ball, -1 for missing it, when it reaches the bottom row
  (the episode's last step); 0 otherwise. Observation: the board, 1.0 at ball and paddle."""

  def __init__(self, rows: int = 10, columns: int = 5, seed: int | None = None):
    self._rows, self._columns = rows, columns
    self._rng = np.random.RandomState(seed)
    self._board = np.zeros((rows, columns), np.float32)
    self._reset_next_step = True

  def reset(self) -> dm_env.TimeStep:
    self._reset_next_step = False
    self._ball_x, self._ball_y = self._rng.randint(self._columns), 0
    self._paddle_x, self._paddle_y = self._columns // 2, self._rows - 1
    return dm_env.restart(self._observation())

  def step(self, action: int) -> dm_env.TimeStep:
    if self._reset_next_step:
      return self.reset()
    self._paddle_x = int(np.clip(self._paddle_x + _ACTIONS[action], 0, self._columns - 1))
    self._ball_y += 1
    if self._ball_y == self._paddle_y:
      self._reset_next_step = True
      reward = 1.0 if self._paddle_x == self._ball_x else -1.0
      return dm_env.termination(reward=reward, observation=self._observation())
    return dm_env.transition(reward=0.0, observation=self._observation())

  def observation_spec(self) -> specs.BoundedArray:
    return specs.BoundedArray(self._board.shape, self._board.dtype, 0.0, 1.0, "observation")

  def action_spec(self) -> specs.DiscreteArray:
    return specs.DiscreteArray(len(_ACTIONS), name="action")

  def _observation(self) -> np.ndarray:
    self._board.fill(0.0)
    self._board[self._ball_y, self._ball_x] = 1.0
    self._board[self._paddle_y, self._paddle_x] = 1.0
    return self._board.copy()


class DmEnvAdapter(gym.Env):
  """A dm_env environment (array observations, one discrete action) as a gymnasium one.

  `make_env(seed)` builds the environment; `reset(seed=...)` builds it anew with that
  seed (dm_env environments take their seed when built). A last time step with
  discount 0 is a termination, with a discount > 0 a truncation.
  """

  def __init__(self, make_env: Callable[[int | None], dm_env.Environment]):
    self._make_env = make_env
    self._env = make_env(None)
    obs, action = self._env.observation_spec(), self._env.action_spec()
    low, high = (
      np.broadcast_to(getattr(obs, bound, default), obs.shape).astype(obs.dtype)
      for bound, default in (("minimum", -np.inf), ("maximum", np.inf))
    )
    self.observation_space = gym.spaces.Box(low, high, obs.shape, obs.dtype)
    self.action_space = gym.spaces.Discrete(action.num_values)

  def reset(self, *, seed: int | None = None, options: dict | None = None):
    super().reset(seed=seed)
    if seed is not None:
      self._env = self._make_env(seed)
    return self._env.reset().observation, {}

  def step(self, action):
    step = self._env.step(int(action))
    terminated = step.last() and step.discount == 0
    return (step.observation, float(step.reward), terminated, step.last() and not terminated, {})


def register():
  """Registers bsuite/catch with gymnasium (suites.py)."""
  if "bsuite/catch" not in gym.registry:
    gym.register("bsuite/catch", entry_point="impala.catch:make_gymnasium")


def make_gymnasium(rows: int = 10, columns: int = 5) -> DmEnvAdapter:
  """The `bsuite/catch` gymnasium environment."""
  return DmEnvAdapter(lambda seed: Catch(rows, columns, seed))
