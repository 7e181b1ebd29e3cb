"""The actors a learner knows: their indices and seeds, which learner each one uses, and
when each was last heard from."""

from __future__ import annotations

import threading
import time

import numpy as np

from impala import distributed

CONNECTED_WITHIN = 10.0  # seconds: an actor heard from this recently counts as connected


class NotReady(RuntimeError):
  """Learner 0 cannot assign actors yet: the other learners are still starting."""


class ActorRegistry:
  """Hands each actor a stable index and seed, and (learner 0 of several) its learner."""

  def __init__(self, index: int, num_learners: int, seed: int):
    self.index, self.num_learners, self._seed = index, num_learners, seed
    self.lock = threading.Lock()
    self.addresses = [""] if num_learners == 1 else []  # where actors reach each learner
    self._routes: dict[str, int] = {}  # learner 0: actor id -> the learner it was assigned
    self._indices: dict[str, int] = {}
    self._last_seen: dict[str, float] = {}  # actor id -> time.monotonic()

  def connect_learners(self, address: str):
    """Learns at which address actors reach each learner, `address` being this one's
    (several learners: all call it once, at the same point of their start)."""
    self.addresses = distributed.gather_text(address)

  def hello(self, actor_id: str) -> tuple[int, int, str]:
    """Registers an actor; returns its (stable) index, the seed of its environments and
    the address of the learner it is to use instead of this one ("" for none).

    Actors are given learner 0's address; with several learners it assigns them to the
    learners in turn, and an actor that comes back keeps its learner. Indices are unique
    across learners (learner i gives i, i + K, i + 2K, ...).
    """
    k = self.num_learners
    if len(self.addresses) < k:
      raise NotReady(f"learner {self.index} is waiting for the other learners to start")
    with self.lock:
      learner = (
        self._routes.setdefault(actor_id, len(self._routes) % k)
        if (self.index == 0)
        else self.index
      )
      if learner != self.index:
        return -1, 0, self.addresses[learner]
      index = self._indices.setdefault(actor_id, len(self._indices)) * k + self.index
      self._last_seen[actor_id] = time.monotonic()
    seed = int(np.random.SeedSequence([self._seed, index]).generate_state(1)[0])
    return index, seed, ""

  def seen(self, actor_id: str):
    with self.lock:
      self._last_seen[actor_id] = time.monotonic()

  def last_seen(self) -> dict[str, float]:
    """Actor id -> Unix time it was last heard from."""
    now_wall, now = time.time(), time.monotonic()
    with self.lock:
      return {actor: now_wall - (now - t) for actor, t in self._last_seen.items()}

  def connected(self) -> int:
    """Actors heard from in the last CONNECTED_WITHIN seconds."""
    now = time.monotonic()
    with self.lock:
      return sum(now - t < CONNECTED_WITHIN for t in self._last_seen.values())
