"""Episode returns and lengths as the learner derives them from the trajectories it is
sent, instead of trusting what an actor reports: one actor's episodes continue across
its unrolls, so each sender keeps the episodes under way in its environments."""

from __future__ import annotations

import numpy as np

from impala import specs


class UnderWay:
  """The episodes under way in one sender's environments at the end of its last unroll."""

  def __init__(self, num_envs: int, from_start: bool):
    self.returns = np.zeros(num_envs)
    self.lengths = np.zeros(num_envs, np.int64)
    # Whether the learner saw each episode from its start: one it joined halfway (a gap
    # in the sender's sequence) is not reported when it ends.
    self.whole = np.full(num_envs, from_start)


def ended(unroll: specs.Unroll, under_way: UnderWay) -> tuple[np.ndarray, np.ndarray]:
  """(returns, lengths) of the whole episodes that end in `unroll`, continuing and
  updating `under_way`. The step taken from a final observation is the environment's
  reset step: it adds no reward and no length (what the actor counts, too)."""
  done = unroll.terminated | unroll.truncated  # [T+1, N]: obs_t ends its episode
  returns, lengths = [], []
  for t in range(unroll.rewards.shape[0]):
    live = ~done[t]
    under_way.returns += np.where(live, unroll.rewards[t], 0.0)
    under_way.lengths += live
    ends = done[t + 1]
    if ends.any():
      whole = ends & under_way.whole
      returns.append(under_way.returns[whole])
      lengths.append(under_way.lengths[whole])
      under_way.returns[ends], under_way.lengths[ends], under_way.whole[ends] = 0.0, 0, True
  if not returns:
    return np.zeros(0), np.zeros(0, np.int64)
  return np.concatenate(returns), np.concatenate(lengths)


def check_report(info: specs.UnrollInfo, spec: specs.UnrollSpec, max_abs: float):
  """InvalidUnroll unless an actor's own report of the episodes that ended in one unroll
  could be true (A3C sends gradients, no trajectory to derive them from): at most one
  end in every two steps of each environment, lengths within the steps it has taken,
  returns within --max-abs-input per step."""
  t, n = spec.unroll_length, spec.num_envs
  ends, lengths = len(info.episode_returns), info.episode_lengths
  if ends > n * ((t + 1) // 2):
    raise specs.InvalidUnroll(
      f"episode_returns: {ends} episodes cannot end in {t} steps of {n} environments",
      "bad_report",
    )
  steps = t * (info.sequence + 1)
  if ends and not (lengths.min() >= 1 and lengths.max() <= steps):
    raise specs.InvalidUnroll(
      f"episode_lengths: must be in [1, {steps}] (the steps taken by unroll {info.sequence})",
      "bad_report",
    )
  if ends and (np.abs(info.episode_returns) > max_abs * lengths).any():
    raise specs.InvalidUnroll(
      "episode_returns: larger than --max-abs-input times the episode's length", "bad_report"
    )
