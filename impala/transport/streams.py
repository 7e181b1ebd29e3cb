"""The learner's actor streams (Upload and Act), bounded: at most so many at once, so many
per actor id, and each closed once idle (a stream that sends nothing would hold one of the
server's threads for good)."""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator

import grpc

log = logging.getLogger("impala.learner")


class Streams:
  """The upload streams being served: at most `limit` at once, `per_actor` for one actor
  id, and each closed once it has waited `idle_timeout` s for its next unroll (a stream
  that sends nothing would hold its thread for good). `on_full(full)` is told, under the
  lock, when the streams reach and leave `limit`."""

  def __init__(self, limit: int, per_actor: int, idle_timeout: float, on_full: Callable):
    self.limit, self.per_actor, self.idle_timeout = limit, per_actor, idle_timeout
    self._on_full = on_full
    self._lock = threading.Lock()
    self._open: dict[int, list] = {}  # key -> [context, waiting since or None, actor id]
    self._by_actor: collections.Counter = collections.Counter()
    self._keys = itertools.count()
    self._closed = threading.Event()
    self._closer = threading.Thread(target=self._close_idle, name="idle-streams", daemon=True)

  def start(self):
    """Starts closing idle streams."""
    self._closer.start()

  def open(self, context) -> int | None:
    """The new stream's key, or None when `limit` streams are open."""
    with self._lock:
      if len(self._open) >= self.limit:
        return None
      key = next(self._keys)
      self._open[key] = [context, time.monotonic(), None]
      if len(self._open) == self.limit:
        self._on_full(True)
    return key

  def receive(self, key: int, requests: Iterator[bytes]) -> Iterator[bytes]:
    """The stream's requests; ends when the client ends it or the stream is closed."""
    entry = self._open[key]
    while True:
      entry[1] = time.monotonic()
      try:
        raw = next(requests)
      except (StopIteration, grpc.RpcError):  # ended, cancelled (idle), or disconnected
        return
      entry[1] = None
      yield raw

  def identify(self, key: int, actor_id: str) -> str | None:
    """Names the actor that sends on the stream; returns the actor that the stream is
    already another's, or "" if `actor_id` holds `per_actor` streams already."""
    with self._lock:
      entry = self._open[key]
      if entry[2] == actor_id:
        return None
      if entry[2] is not None:
        return entry[2]
      if self._by_actor[actor_id] >= self.per_actor:
        return ""
      entry[2] = actor_id
      self._by_actor[actor_id] += 1
      return None

  def close(self, key: int):
    with self._lock:
      if len(self._open) == self.limit:
        self._on_full(False)
      actor = self._open.pop(key)[2]
      if actor is not None:
        self._by_actor[actor] -= 1
        if not self._by_actor[actor]:
          del self._by_actor[actor]

  def stop(self):
    self._closed.set()

  def _close_idle(self):
    while not self._closed.wait(min(1.0, self.idle_timeout / 4)):
      now = time.monotonic()
      with self._lock:
        idle = [
          e for e in self._open.values() if e[1] is not None and now - e[1] > self.idle_timeout
        ]
      for context, _, actor in idle:
        who = f"of actor {actor}" if actor else "that sent nothing"
        log.info("closed an upload stream %s: idle for %.0f s", who, self.idle_timeout)
        context.cancel()
