"""The actors a learner knows: their indices and seeds, which learner each one uses, and
when each was last heard from."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

import numpy as np

from impala import distributed
from impala.transport.port import NotReady

CONNECTED_WITHIN = 10.0  # seconds: an actor heard from this recently counts as connected
# What the learner remembers of actors: the newest MAX_ACTORS, each for FORGET_AFTER s
# after it was last heard from; a client inventing ids cannot grow its tables.
MAX_ACTORS = 10_000
FORGET_AFTER = 3600.0


class Recent:
  """A table of the keys used most recently: at most `size` of them, each kept `ttl` s
  after its last use; `forget(key, value)` is told of each one dropped. Not locked."""

  def __init__(self, size: int | None = None, ttl: float = FORGET_AFTER, forget: Callable = None):
    self.size = MAX_ACTORS if size is None else size
    self.ttl, self._forget = ttl, forget
    self._items: collections.OrderedDict = collections.OrderedDict()  # key -> (value, time)

  def use(self, key, make: Callable):
    """The value of `key` (made with `make()` if there is none), now the most recent."""
    now = time.monotonic()
    value = self._items.pop(key, (None,))[0]
    if value is None:
      value = make()
    self._items[key] = (value, now)
    while self._items and (
      len(self._items) > self.size or now - next(iter(self._items.values()))[1] > self.ttl
    ):
      old, (dropped, _) = self._items.popitem(last=False)
      if self._forget:
        self._forget(old, dropped)
    return value

  def times(self) -> dict:
    """key -> time.monotonic() of its last use."""
    return {key: t for key, (_, t) in self._items.items()}

  def values(self) -> dict:
    return {key: value for key, (value, _) in self._items.items()}

  def __len__(self):
    return len(self._items)


class ActorRegistry:
  """Hands each actor a stable index and seed, and (learner 0 of several) its learner."""

  def __init__(self, index: int, num_learners: int, seed: int):
    self.index, self.num_learners, self._seed = index, num_learners, seed
    self.lock = threading.Lock()
    self.addresses = [""] if num_learners == 1 else []  # where actors reach each learner
    self._routes = Recent()  # learner 0: actor id -> the learner it was assigned
    self._indices = Recent()  # actor id -> its index among this learner's
    self._seen = Recent()  # actor id -> True, by when it was last heard from
    self._made = dict(routes=0, indices=0)  # handed out so far: none is handed out twice

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
        self._routes.use(actor_id, lambda: self._next("routes") % k)
        if (self.index == 0)
        else self.index
      )
      if learner != self.index:
        return -1, 0, self.addresses[learner]
      index = self._indices.use(actor_id, lambda: self._next("indices")) * k + self.index
      self._seen.use(actor_id, lambda: True)
    seed = int(np.random.SeedSequence([self._seed, index]).generate_state(1)[0])
    return index, seed, ""

  def _next(self, kind: str) -> int:
    self._made[kind] += 1
    return self._made[kind] - 1

  def seen(self, actor_id: str):
    with self.lock:
      self._seen.use(actor_id, lambda: True)

  def last_seen(self) -> dict[str, float]:
    """Actor id -> Unix time it was last heard from."""
    now_wall, now = time.time(), time.monotonic()
    with self.lock:
      return {actor: now_wall - (now - t) for actor, t in self._seen.times().items()}

  def connected(self) -> int:
    """Actors heard from in the last CONNECTED_WITHIN seconds."""
    now = time.monotonic()
    with self.lock:
      return sum(now - t < CONNECTED_WITHIN for t in self._seen.times().values())
