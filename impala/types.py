"""The data that flows from actors to the learner, as numpy or JAX arrays."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Unroll(NamedTuple):
  """T steps of N environments, time-major.

  obs_0 .. obs_T are stored; obs_T is also obs_0 of the actor's next unroll
  (the one-step bootstrap overlap), so every transition obs_t -> obs_t+1 of the
  actor's stream appears in exactly one unroll.
  """
  observations: np.ndarray      # [T+1, N, ...]
  terminated: np.ndarray        # [T+1, N] bool: obs_t is a terminal observation
  truncated: np.ndarray         # [T+1, N] bool: obs_t is the last of a time-limited episode
  actions: np.ndarray           # [T, N] int32
  rewards: np.ndarray           # [T, N] float32
  behaviour_logits: np.ndarray  # [T, N, A] float32
  core_state: tuple             # LSTM state used at obs_0, each [N, H]; () without LSTM


class UnrollInfo(NamedTuple):
  """Bookkeeping that travels with an unroll but does not enter the loss."""
  actor_id: str
  sequence: int
  params_version: int
  episode_returns: np.ndarray   # [E] float32, episodes that ended in this unroll
  episode_lengths: np.ndarray   # [E] int32
  incarnation: int = 0          # random per actor process; names its sequence
