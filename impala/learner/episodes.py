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
