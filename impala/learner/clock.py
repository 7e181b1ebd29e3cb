"""The run's clock, on a thread of its own: progress records whatever the learner is doing,
the time cap, and the way out of an update or a compilation that holds the run."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from impala import algorithms, progress
from impala.learner.learner import Learner
from impala.learner.stopping import Exit


def report(learner: Learner, elapsed: float, since: tuple, console, run_log) -> tuple:
  """Shows (and logs) the learner's figures; returns the new (time, frames, updates) mark."""
  snapshot = learner.snapshot(metrics=True, wait=False)  # on the clock: never held up
  rate = float(algorithms.learning_rate(learner.config)(snapshot.updates))
  record = progress.record(snapshot, elapsed, since, rate, learner.activity)
  console.show(record)
  if run_log:
    run_log.write(record)
  return time.monotonic(), record["frames"], record["updates"]


class Clock:
  """A progress record every --log-every s (saying what the learner waits for),
  `out_of_time` once --max-seconds have passed, and `held(exit)` if the run has not
  stopped GRACE s after that, or after a signal asked it to stop (`request`): an update or
  a compilation holds the main thread. Its time goes on from the run's time before this
  process (a resumed run); --max-seconds counts this process's."""

  GRACE = 5.0

  def __init__(self, config, started: float, learner: Learner, console, run_log):
    self.out_of_time = threading.Event()
    self.requested = threading.Event()  # a signal asked the run to stop
    self.signalled: Exit | None = None  # and for what
    self._config, self._started, self._learner = config, started, learner
    self._offset = learner.seconds_before
    self._console, self._run_log = console, run_log
    first = learner.snapshot()
    self._mark = (time.monotonic(), first.frames, first.updates)
    self._lock = threading.Lock()  # one record at a time
    self._stopped = threading.Event()
    self._thread = threading.Thread(target=self._run, name="clock", daemon=True)
    self._held: Callable[[Exit | None], None] = lambda signalled: None

  def start(self, held: Callable[[Exit | None], None]):
    """Starts the clock; `held(signalled)` is called on its thread if the run overruns."""
    self._held = held
    self._thread.start()

  def request(self, exit: Exit):
    """A stop asked for by a signal (called from the handler)."""
    if not self.requested.is_set():
      self.signalled, self._requested_at = exit, time.monotonic()
      self.requested.set()

  def elapsed(self) -> float:
    """The run's seconds so far."""
    return self._offset + time.monotonic() - self._started

  def report(self):
    with self._lock:
      self._mark = report(self._learner, self.elapsed(), self._mark, self._console, self._run_log)

  def stop(self):
    self._stopped.set()

  def _run(self):
    limit = self._config.max_seconds
    deadline = self._started + limit if limit else math.inf
    next_record = time.monotonic() + self._config.log_every
    while not self._stopped.wait(max(0.0, min(next_record - time.monotonic(), 0.5))):
      now = time.monotonic()
      if now >= next_record:
        self.report()
        next_record = max(next_record + self._config.log_every, now)
      if now >= deadline:
        self.out_of_time.set()
      if now >= deadline + self.GRACE:
        return self._held(None)
      if self.requested.is_set() and now >= self._requested_at + self.GRACE:
        return self._held(self.signalled)
