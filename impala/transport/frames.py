"""Stacked frames on the wire: an unroll's observations as one new frame per step.

An Atari observation is a stack of the K newest frames, [H, W, K], newest last, with
zero frames before the first frame of an episode (ale-py's vector environment). In an
unroll each frame would appear K times; the actor sends each once instead: the newest
frame of every observation, plus the K-1 older frames of obs_0's stack (the
"history"). The learner rebuilds every stack from those and the episode starts.
"""

from __future__ import annotations

import numpy as np


def split(observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """[T+1, N, H, W, K] stacks -> (newest frames [T+1, N, H, W], history [N, H, W, K-1])."""
  return observations[..., -1], observations[0, ..., :-1]


def rebuild(frames: np.ndarray, history: np.ndarray, done: np.ndarray) -> np.ndarray:
  """The stacks [T+1, N, H, W, K] that `split` took apart.

  `done[t]` says obs_t ends its episode, so obs_t+1 starts the next one: frames from
  before obs_t+1 do not enter its stack nor the next K-2 stacks; zeros stand there.
  """
  t1, n = frames.shape[:2]
  k = history.shape[-1] + 1
  sequence = np.concatenate([np.moveaxis(history, -1, 0), frames])  # [K-1 + T+1, N, H, W]
  # Window t of the sequence is stack t, newest frame last: one copy of a strided view.
  stacks = np.lib.stride_tricks.sliding_window_view(sequence, k, axis=0).copy()
  steps = np.arange(t1)[:, None]
  starts = np.zeros((t1, n), bool)
  starts[1:] = done[:-1]
  # The newest episode start at or before each step; -K where there is none in the unroll
  # (obs_0's history already holds the right frames).
  start = np.maximum.accumulate(np.where(starts, steps, -k), axis=0)
  times = steps[..., None] + np.arange(1 - k, 1)  # [T+1, 1, K]: the step of each frame
  np.moveaxis(stacks, -1, 2)[times < start[..., None]] = 0
  return stacks
