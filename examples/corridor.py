"""Your own environment: a gymnasium.Env, registered under an id (see README.md)."""

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
  """Walk to the right end of 8 cells: reward 1 there, and each step costs 0.01."""

  observation_space = gym.spaces.Box(0, 1, (8,), np.float32)
  action_space = gym.spaces.Discrete(2)  # 0: left, 1: right

  def reset(self, seed=None, options=None):
    super().reset(seed=seed)
    self.cell = 0
    return np.eye(8, dtype=np.float32)[self.cell], {}

  def step(self, action):
    self.cell = max(0, self.cell + (1 if action == 1 else -1))
    end = self.cell == 7
    return np.eye(8, dtype=np.float32)[self.cell], 1.0 if end else -0.01, end, False, {}


gym.register("Corridor-v0", entry_point=Corridor, max_episode_steps=100)
