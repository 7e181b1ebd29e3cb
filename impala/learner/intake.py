"""Admission of the actors' uploads: checks, duplicates, staleness, backpressure, and the
accounting of what became of each one."""

from __future__ import annotations

import collections
import dataclasses
import queue
import threading
from collections.abc import Callable

from impala import specs


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
  episodes: int = 0
  by_actor: collections.Counter = dataclasses.field(default_factory=collections.Counter)


class _Sender:
  """One actor process's sequence of uploads: the newest sequence number taken."""

  def __init__(self):
    self.lock = threading.Lock()  # one at a time: a resend may race its first delivery
    self.last = -1


class Intake:
  """Checks each upload and queues it for the batcher, or says why not.

  `check(upload)` raises specs.InvalidUnroll; `version()` is the learner's newest
  parameters version; `seen(actor_id)` is told of every upload.
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
    self._senders: dict[tuple[str, int], _Sender] = {}
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
      self._check(upload)
    except specs.InvalidUnroll as e:
      self.reject(e.reason)
      raise
    with self.lock:
      self._counts.received += 1
      self._busy += 1
      sender = self._senders.setdefault((info.actor_id, info.incarnation), _Sender())
    outcome = None  # abandoned, unless admitted
    try:
      self._seen(info.actor_id)
      with sender.lock:
        outcome = self._admit(upload, info, sender.last, keep_waiting)
        if outcome in ("accepted", "stale"):
          sender.last = info.sequence
    finally:
      with self.lock:
        self._count(outcome, info)
        self._busy -= 1
        self._idle.notify_all()
    return outcome

  def _count(self, outcome: str | None, info: specs.UnrollInfo):
    c = self._counts
    if outcome == "accepted":
      c.accepted += 1
      c.by_actor[info.actor_id] += 1
      c.episodes += len(info.episode_returns)
      self._returns.extend(info.episode_returns.tolist())
      self._lengths.extend(info.episode_lengths.tolist())
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

  def returns(self) -> list[float]:
    """The last 100 episode returns of accepted uploads."""
    with self.lock:
      return list(self._returns)

  def counts(self) -> tuple[Counts, list[float], list[int]]:
    """A copy of the counts, with the last 100 episode returns and lengths."""
    with self.lock:
      c = self._counts
      counts = dataclasses.replace(
        c, rejected=collections.Counter(c.rejected), by_actor=collections.Counter(c.by_actor)
      )
      return counts, list(self._returns), list(self._lengths)

  def close(self, timeout: float = 5.0):
    """Abandons waiting uploads, and waits (up to `timeout` s) until each is counted:
    the learner is stopping, and its last figures must add up."""
    self.closed.set()
    with self.lock:
      self._idle.wait_for(lambda: self._busy == 0, timeout)
