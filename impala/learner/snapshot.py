"""One immutable view of a learner's figures, and the one set of names they go by.

The console line, progress.jsonl, TensorBoard, Prometheus, the final summary and the
benchmarks all render a `Snapshot`; nobody else reads the learner's state.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

# Counts that only grow (Prometheus: impala_<name>_total). They add up:
# received = accepted + duplicates + stale + sum(rejected) + abandoned.
COUNTERS = (
  "frames",
  "updates",
  "skipped_updates",
  "episodes",
  "received",
  "accepted",
  "duplicates",
  "stale",
  "abandoned",
  "unauthenticated",
  "unfinished",
)


@dataclasses.dataclass(frozen=True)
class Snapshot:
  learner: int  # this learner's index
  learners: int
  version: int  # of the newest parameters; actors start at 0, "nothing yet"
  frames: int  # environment steps consumed by updates (all learners)
  updates: int
  skipped_updates: int  # updates whose gradients or loss were not finite: state kept as it was
  episodes: int  # episodes that ended in the trajectories this learner took
  received: int  # uploads that reached this learner, decodable or not
  accepted: int  # queued for training
  duplicates: int  # resent after a reconnect, already taken: dropped
  stale: int  # acted by parameters older than --max-policy-lag: dropped
  rejected: Mapping[str, int]  # reason -> count: malformed or invalid
  abandoned: int  # the learner stopped, or the actor left, while it waited
  unauthenticated: int  # calls refused for a missing or wrong token
  unfinished: int  # unrolls under assembly (learner-side inference) when their actor left
  return_mean_100: float  # mean of the last 100 episode returns of every learner
  episodes_in_mean: int  # how many that mean is over (at most 100 per learner)
  learner_return_mean_100: float  # the same, of this learner's episodes alone
  length_mean_100: float  # this learner's last 100 episode lengths
  policy_lag: float  # mean over the last batch: version - acting version
  policy_lag_mean: float  # the same over every batch this learner took since it started
  queue_depth: int  # uploads waiting for a batch
  actors_connected: int  # actors heard from in the last 10 s
  unrolls_by_actor: Mapping[str, int]  # actor id -> accepted
  actor_last_seen: Mapping[str, float]  # actor id -> Unix time it was last heard from
  metrics: Mapping[str, float]  # of the newest update: losses, gradient and param norms

  def counters(self) -> dict:
    return {name: getattr(self, name) for name in COUNTERS}

  def figures(self) -> dict:
    """What the progress records and the final summary both show, under these names."""
    return dict(
      **self.counters(),
      rejected=dict(self.rejected),
      version=self.version,
      return_mean_100=self.return_mean_100,
      episodes_in_mean=self.episodes_in_mean,
      policy_lag=self.policy_lag,
      policy_lag_mean=self.policy_lag_mean,
    )

  def accounting(self) -> dict:
    return dict(
      received=self.received,
      accepted=self.accepted,
      duplicates=self.duplicates,
      stale=self.stale,
      rejected=dict(self.rejected),
      abandoned=self.abandoned,
    )


def take(
  learner: int,
  learners: int,
  intake,
  actors,
  metrics: dict,
  *,
  version: int,
  frames: int,
  updates: int,
  skipped_updates: int,
  policy_lag: float,
  policy_lag_mean: float,
  votes,
) -> Snapshot:
  """A Snapshot of a learner's own figures, its intake's (an Intake), its actors' (an
  ActorRegistry) and `votes`, the Control row summed over learners in the newest update."""
  counts, returns, lengths = intake.counts()
  count = int(votes.return_count)
  return Snapshot(
    learner=learner,
    learners=learners,
    version=version,
    frames=frames,
    updates=updates,
    skipped_updates=skipped_updates,
    episodes=counts.episodes,
    received=counts.received,
    accepted=counts.accepted,
    duplicates=counts.duplicates,
    stale=counts.stale,
    rejected=dict(counts.rejected),
    abandoned=counts.abandoned,
    unauthenticated=counts.unauthenticated,
    unfinished=counts.unfinished,
    return_mean_100=votes.return_mean(),
    episodes_in_mean=count,
    learner_return_mean_100=mean(returns),
    length_mean_100=mean(lengths),
    policy_lag=policy_lag,
    policy_lag_mean=policy_lag_mean,
    queue_depth=intake.queue.qsize(),
    actors_connected=actors.connected(),
    unrolls_by_actor=dict(counts.by_actor),
    actor_last_seen=actors.last_seen(),
    metrics=metrics,
  )


def mean(values: list) -> float:
  return float(np.mean(values)) if values else math.nan
