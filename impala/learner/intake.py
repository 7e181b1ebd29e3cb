"""Admission of the actors' uploads: checks, duplicates, staleness, backpressure, and the
accounting of what became of each one."""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
from collections.abc import Callable

from impala import specs
from impala.learner import episodes
from impala.learner.registry import Recent

FORGOTTEN = "(forgotten)"  # unrolls_by_actor: the accepted unrolls of actors forgotten since


@dataclasses.dataclass
class Counts:
  """What became of the uploads; see snapshot.COUNTERS for how they add up."""

  received: int = 0
  accepted: int = 0
  duplicates: int = 0
  stale: int = 0
  rejected: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  abandoned: int = 0
  unauthenticated: int = 0
  unfinished: int = 0
  episodes: int = 0
  by_actor: collections.Counter = dataclasses.field(default_factory=collections.Counter)


class _Sender:
  """One actor process's sequence of uploads: the newest sequence number taken, and the
  episodes under way in its environments."""

  def __init__(self):
    self.lock = threading.Lock()  # one at a time: a resend may race its first delivery
    self.last = -1
    self.under_way: episodes.UnderWay | None = None

  def episodes(self, upload, info: specs.UnrollInfo) -> tuple:
    """(returns, lengths) of the episodes that end in an upload taken next: derived from a
    trajectory; an actor's report (already checked) only when it sent no trajectory."""
    if not isinstance(upload, specs.Unroll):
      return info.episode_returns, info.episode_lengths
    if self.under_way is None or info.sequence != self.last + 1:  # first, or after a gap
      n = upload.rewards.shape[1]
      self.under_way = episodes.UnderWay(n, from_start=info.sequence == self.last + 1 == 0)
    return episodes.ended(upload, self.under_way)


class Intake:
  """Checks each upload and queues it for the batcher, or says why not.

  `check(upload, info)` raises specs.InvalidUnroll; `version()` is the learner's newest
  parameters version; `seen(actor_id)` is told of every upload. Episode statistics are
  derived from the trajectories (see episodes.py).
  """

  def __init__(
    self,
    check: Callable,
    version: Callable[[], int],
    seen: Callable[[str], None],
    queue_size: int,
    max_policy_lag: int = 0,
  ):
    self.queue: queue.Queue = queue.Queue(queue_size)
    self.lock = threading.Lock()
    self.closed = threading.Event()
    self._busy = 0  # enqueue calls under way
    self._idle = threading.Condition(self.lock)
    self._check, self._version, self._seen = check, version, seen
    self._max_policy_lag = max_policy_lag
    self._counts = Counts()
    self._senders = Recent()  # (actor id, incarnation) -> _Sender
    self._by_actor = Recent(forget=self._forget)  # actor id -> [accepted]
    self._forgotten = 0
    self._returns: collections.deque = collections.deque(maxlen=100)
    self._lengths: collections.deque = collections.deque(maxlen=100)

  def enqueue(
    self, upload, info: specs.UnrollInfo, keep_waiting: Callable[[], bool] = lambda: True
  ) -> str | None:
    """Checks an upload (a trajectory, or A3C's gradients) and queues it; returns
    "accepted", "duplicate" (taken before: dropped) or "stale" (dropped), or None when
    it was abandoned.

    While the queue is full it waits (the backpressure that slows actors down), for as
    long as `keep_waiting()` holds and the intake is open. Raises specs.InvalidUnroll.
    """
    try:
      self._check(upload, info)
      if info.params_version > self._version():
        raise specs.InvalidUnroll(
          f"params_version: {info.params_version} is ahead of the learner's newest "
          f"version {self._version()}",
          "version_ahead",
        )
    except specs.InvalidUnroll as e:
      self.reject(e.reason)
      raise
    with self.lock:
      self._counts.received += 1
      self._busy += 1
      sender = self._senders.use((info.actor_id, info.incarnation), _Sender)
    outcome, ended = None, None  # abandoned, unless admitted
    try:
      self._seen(info.actor_id)
      with sender.lock:
        outcome = self._admit(upload, info, sender.last, keep_waiting)
        if outcome in ("accepted", "stale"):
          ended = sender.episodes(upload, info)
          sender.last = info.sequence
    finally:
      with self.lock:
        self._count(outcome, info, ended)
        self._busy -= 1
        self._idle.notify_all()
    return outcome

  def _forget(self, actor_id: str, accepted: list):
    self._forgotten += accepted[0]

  def _count(self, outcome: str | None, info: specs.UnrollInfo, ended):
    c = self._counts
    if outcome == "accepted":
      c.accepted += 1
      self._by_actor.use(info.actor_id, lambda: [0])[0] += 1
      returns, lengths = ended
      c.episodes += len(returns)
      self._returns.extend(returns.tolist())
      self._lengths.extend(lengths.tolist())
    elif outcome == "duplicate":
      c.duplicates += 1
    elif outcome == "stale":
      c.stale += 1
    else:
      c.abandoned += 1

  def _admit(self, upload, info, last_sequence: int, keep_waiting) -> str | None:
    if info.sequence <= last_sequence:
      return "duplicate"
    lag = self._version() - info.params_version
    if self._max_policy_lag and lag > self._max_policy_lag:
      return "stale"
    while True:
      try:
        self.queue.put((upload, info), timeout=0.1)
        return "accepted"
      except queue.Full:
        if self.closed.is_set() or not keep_waiting():
          return None

  def reject(self, reason: str):
    """Counts an upload refused as malformed or invalid (`reason`)."""
    with self.lock:
      self._counts.received += 1
      self._counts.rejected[reason] += 1

  def count_unauthenticated(self):
    with self.lock:
      self._counts.unauthenticated += 1

  def count_unfinished(self):
    """Counts an unroll that the learner was assembling when its actor left."""
    with self.lock:
      self._counts.unfinished += 1

  def returns(self) -> list[float]:
    """The last 100 episode returns of accepted uploads."""
    with self.lock:
      return list(self._returns)

  def counts(self) -> tuple[Counts, list[float], list[int]]:
    """A copy of the counts, with the last 100 episode returns and lengths."""
    with self.lock:
      c = self._counts
      by_actor = collections.Counter({a: n[0] for a, n in self._by_actor.values().items()})
      if self._forgotten:
        by_actor[FORGOTTEN] = self._forgotten
      counts = dataclasses.replace(c, rejected=collections.Counter(c.rejected), by_actor=by_actor)
      return counts, list(self._returns), list(self._lengths)

  def close(self, timeout: float = 5.0):
    """Abandons waiting uploads, and waits (up to `timeout` s) until each is counted:
    the learner is stopping, and its last figures must add up."""
    self.closed.set()
    with self.lock:
      self._idle.wait_for(lambda: self._busy == 0, timeout)
