"""The data that flows from actors to the learner, and the one declaration of its shapes.

`UnrollSpec` says what every field of an unroll holds for a run; the actor's buffers,
the learner's checks, its placeholder batch and the test and benchmark factories
(impala/testing.py) all take their shapes from it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Unroll(NamedTuple):
  """T steps of N environments, time-major.

  obs_0 .. obs_T are stored; obs_T is also obs_0 of the actor's next unroll
  (the one-step bootstrap overlap), so every transition obs_t -> obs_t+1 of the
  actor's stream appears in exactly one unroll.
  """

  observations: np.ndarray  # [T+1, N, ...]
  terminated: np.ndarray  # [T+1, N] bool: obs_t is a terminal observation
  truncated: np.ndarray  # [T+1, N] bool: obs_t is the last of a time-limited episode
  actions: np.ndarray  # [T, N] int32
  rewards: np.ndarray  # [T, N] float32
  behaviour_logits: np.ndarray  # [T, N, A] float32
  core_state: tuple  # LSTM state used at obs_0, each [N, H]; () without LSTM


class UnrollInfo(NamedTuple):
  """Bookkeeping that travels with an unroll but does not enter the loss."""

  actor_id: str
  sequence: int
  params_version: int
  episode_returns: np.ndarray  # [E] float32, episodes that ended in this unroll
  episode_lengths: np.ndarray  # [E] int32
  incarnation: int = 0  # random per actor process; names its sequence


class Step(NamedTuple):
  """One step of an actor's N environments, sent for learner-side inference."""

  actor_id: str
  step: int  # the actor's steps since its environments were reset
  observations: (
    np.ndarray
  )  # [N, ...] obs_t (stacked frames: the newest frame after a stream's first)
  rewards: np.ndarray  # [N] float32: reward of the step that led to obs_t
  terminated: np.ndarray  # [N] bool: obs_t is a terminal observation
  truncated: np.ndarray  # [N] bool: obs_t is the last of a time-limited episode


class InvalidUnroll(ValueError):
  """An upload that does not fit the run; the message names the field, `reason` is the
  counter it is tallied under."""

  def __init__(self, message: str, reason: str):
    super().__init__(message)
    self.reason = reason


class UnrollSpec(NamedTuple):
  """The shapes and dtypes of a run's unrolls: T steps of N environments."""

  unroll_length: int
  num_envs: int
  observation_shape: tuple
  observation_dtype: np.dtype
  num_actions: int
  lstm_size: int = 0

  @classmethod
  def for_run(cls, config, env) -> UnrollSpec:
    """The spec of a run's unrolls: `config` a Config, `env` an environments.EnvSpec."""
    return cls(
      config.unroll_length,
      config.num_envs,
      tuple(env.observation_shape),
      np.dtype(env.observation_dtype),
      env.num_actions,
      config.lstm_size,
    )

  def layout(self, n: int | None = None) -> Unroll:
    """An Unroll of (shape, dtype) pairs, for `n` environments (default: num_envs)."""
    t, n = self.unroll_length, self.num_envs if n is None else n
    f32 = np.dtype(np.float32)
    flags = ((t + 1, n), np.dtype(bool))
    return Unroll(
      ((t + 1, n) + tuple(self.observation_shape), np.dtype(self.observation_dtype)),
      flags,
      flags,
      ((t, n), np.dtype(np.int32)),
      ((t, n), f32),
      ((t, n, self.num_actions), f32),
      (((n, self.lstm_size), f32),) * 2 if self.lstm_size else (),
    )

  def zeros(self, n: int | None = None) -> Unroll:
    return self._allocate(np.zeros, n)

  def empty(self, n: int | None = None) -> Unroll:
    """Buffers to fill (a core state of zeros)."""
    return self._allocate(np.empty, n)

  def _allocate(self, allocate, n) -> Unroll:
    layout = self.layout(n)
    return Unroll(
      *(allocate(shape, dtype) for shape, dtype in layout[:-1]),
      tuple(np.zeros(shape, dtype) for shape, dtype in layout.core_state),
    )

  def check(self, unroll: Unroll, max_abs: float = np.inf):
    """Raises InvalidUnroll naming the first field that does not fit, or whose floats
    are not finite or exceed `max_abs` in magnitude."""
    layout = self.layout()
    for name, (shape, dtype) in zip(Unroll._fields[:-1], layout[:-1]):
      value = getattr(unroll, name)
      if value.dtype != dtype or value.shape != shape:
        raise InvalidUnroll(
          f"{name}: expected {dtype.name}{list(shape)}, got {value.dtype.name}{list(value.shape)}",
          "wrong_shape",
        )
    bounded = ("rewards", "behaviour_logits") + (
      ("observations",) if np.dtype(self.observation_dtype).kind == "f" else ()
    )
    for name in bounded:
      check_magnitude(name, getattr(unroll, name), max_abs)
    a = self.num_actions
    if unroll.actions.size and not (0 <= unroll.actions.min() and unroll.actions.max() < a):
      raise InvalidUnroll(f"actions: out of range [0, {a})", "action_out_of_range")
    if not layout.core_state:
      if unroll.core_state:
        raise InvalidUnroll("core_state: this network has no LSTM, expected none", "wrong_shape")
      return
    (shape, dtype), _ = layout.core_state
    if len(unroll.core_state) != 2 or any(
      s.shape != shape or s.dtype != dtype for s in unroll.core_state
    ):
      raise InvalidUnroll(f"core_state: expected 2 float32{list(shape)}", "wrong_shape")
    for state in unroll.core_state:
      check_magnitude("core_state", state, max_abs)

  def check_report(self, info: UnrollInfo, max_abs: float):
    """InvalidUnroll unless an actor's own report of the episodes that ended in one unroll
    could be true (A3C sends gradients, no trajectory to derive them from): at most one
    end in every two steps of each environment, lengths within the steps it has taken,
    returns within --max-abs-input per step."""
    t, n = self.unroll_length, self.num_envs
    ends, lengths = len(info.episode_returns), info.episode_lengths
    if ends > n * ((t + 1) // 2):
      raise InvalidUnroll(
        f"episode_returns: {ends} episodes cannot end in {t} steps of {n} environments",
        "bad_report",
      )
    steps = t * (info.sequence + 1)
    if ends and not (lengths.min() >= 1 and lengths.max() <= steps):
      raise InvalidUnroll(
        f"episode_lengths: must be in [1, {steps}] (the steps taken by unroll {info.sequence})",
        "bad_report",
      )
    if ends and (np.abs(info.episode_returns) > max_abs * lengths).any():
      raise InvalidUnroll(
        "episode_returns: larger than --max-abs-input times the episode's length", "bad_report"
      )


def check_magnitude(name: str, values: np.ndarray, max_abs: float):
  """InvalidUnroll unless every value is finite and within [-max_abs, max_abs]: finite
  float32s as large as 3e38 still overflow the loss, and the parameters with it."""
  if not np.isfinite(values).all():
    raise InvalidUnroll(f"{name}: contains NaN or infinity", "not_finite")
  if values.size and np.abs(values).max() > max_abs:
    raise InvalidUnroll(
      f"{name}: magnitude {np.abs(values).max():.3g} exceeds the bound {max_abs:g} "
      "(--max-abs-input)",
      "too_large",
    )


def _concatenate_aligned(parts: list[np.ndarray], axis: int) -> np.ndarray:
  """np.concatenate into a 64-byte-aligned array: jax.device_put on CPU then uses its
  memory as it is instead of copying it once more."""
  shape = list(parts[0].shape)
  shape[axis] = sum(p.shape[axis] for p in parts)
  nbytes = int(np.prod(shape)) * parts[0].dtype.itemsize
  buffer = np.empty(nbytes + 64, np.uint8)
  start = -buffer.ctypes.data % 64
  out = buffer[start : start + nbytes].view(parts[0].dtype).reshape(shape)
  return np.concatenate(parts, axis=axis, out=out)


def stack(unrolls: list[Unroll]) -> Unroll:
  """Concatenates unrolls along the batch axis (axis 1; axis 0 for core states)."""
  fields = [_concatenate_aligned(parts, 1) for parts in zip(*(u[:-1] for u in unrolls))]
  core = tuple(_concatenate_aligned(parts, 0) for parts in zip(*(u.core_state for u in unrolls)))
  return Unroll(*fields, core)
