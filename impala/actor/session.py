"""The actor's session with the learner: handshake, redirect to another learner,
reconnects with backoff, the unanswered uploads that survive a reconnect, and the
actor's figures. How it acts for the run is its mode (modes.py)."""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import random
import socket
import threading
import time

import grpc

from impala import specs
from impala.actor import modes
from impala.config import RUN_SETTINGS, Config
from impala.transport.client import RETRYABLE, LearnerClient, RunEnded

log = logging.getLogger("impala.actor")

# Seconds between the log lines that say the learner is still out of reach.
RETRY_LOG_EVERY = 60.0


BACKOFF_CAP = 5.0  # seconds


class Backoff:
  """Exponential backoff with full jitter: 0.1 s doubling up to BACKOFF_CAP s."""

  def __init__(self, first: float = 0.1, cap: float = BACKOFF_CAP):
    self.first, self.cap, self.attempt = first, cap, 0

  def next(self) -> float:
    self.attempt += 1
    return random.uniform(0, min(self.cap, self.first * 2**self.attempt))

  def reset(self):
    self.attempt = 0


class Session:
  """Acts for the learner: a Rollout of the run's environments, whose unrolls (A3C: their
  gradients) it uploads, with the learner's newest parameters; or, with learner-side
  inference, a Stepper of them, whose observations it sends for the learner's actions."""

  def __init__(self, config: Config, given: frozenset = frozenset()):
    """`given`: the settings given to this actor by flags or environment variables; a run
    setting among them that the handshake overrides is warned about."""
    self.config, self.given = config, given
    self.actor_id = config.actor_id or f"{socket.gethostname()}-{os.getpid()}"
    self.incarnation = random.SystemRandom().getrandbits(64)  # see Unroll.incarnation
    self.sequence = 0
    self.stalls = 0  # 0.1 s waits for a learner that fell behind (backpressure)
    self.reconnects = 0
    self.mode = None  # how it acts for the run (modes.py), chosen from the handshake
    self.rollout = None  # the mode's environments: a Stepper, or a Rollout
    self.run_id = ""  # of the learner this actor acts for
    self.unanswered = collections.deque()  # serialized unrolls sent but not yet answered
    self.ended = ""  # why the learner's run ended, once it has said so
    self.started = time.monotonic()
    self._mark = (self.started, 0, 0)  # (time, frames, unrolls) of the last rate line

  def joined(self, run_id: str):
    """The handshake named the learner's run. Another run than before (a restarted
    learner, or another one on this address) is said, and the unrolls that its
    predecessor did not answer are dropped: their parameters versions are another
    learner's."""
    if self.run_id and run_id != self.run_id:
      log.warning(
        "the learner at %s is now run %s (was %s): a restarted learner, or another one; "
        "%d unanswered unrolls dropped",
        self.config.grpc_host,
        run_id,
        self.run_id,
        len(self.unanswered),
      )
      self.unanswered.clear()
    self.run_id = run_id

  def prepare(self, run_config: Config):
    """Builds the rollout for the run; keeps it when a reconnect brings the same run."""
    if self.rollout is not None and self.rollout.settings == run_config.run_settings():
      return
    for name in sorted(self.given & set(RUN_SETTINGS)):
      ours, run = getattr(self.config, name), getattr(run_config, name)
      if name == "seed" or ours != run:
        log.warning(
          "--%s %s is ignored: the learner's run sets %s",
          name.replace("_", "-"),
          ours,
          "each actor's seed" if name == "seed" else f"{name}={run}",
        )
    self.unanswered.clear()  # unrolls of another run's shapes
    self.mode = modes.for_run(run_config)
    self.rollout = self.mode.rollout

  def report(self, now: float | None = None):
    """The rate line: frames and unrolls since the last one."""
    now = time.monotonic() if now is None else now
    frames = self.rollout.frames if self.rollout else 0
    then, frames_then, unrolls_then = self._mark
    interval = max(now - then, 1e-9)
    log.info(
      "%s frames (%s/s), %s unrolls (%.1f/s), %d stalls, %d reconnects",
      f"{frames:,}",
      f"{(frames - frames_then) / interval:,.0f}",
      f"{self.sequence:,}",
      (self.sequence - unrolls_then) / interval,
      self.stalls,
      self.reconnects,
    )
    self._mark = (now, frames, self.sequence)

  def report_when_due(self):
    """The rate line, once every --log-every s."""
    if time.monotonic() >= self._mark[0] + self.config.log_every:
      self.report()

  def final_line(self, why: str) -> str:
    frames = self.rollout.frames if self.rollout else 0
    return (
      f"{self.actor_id} stopped ({why}): {frames:,} frames, {self.sequence:,} unrolls "
      f"in {time.monotonic() - self.started:.1f} s"
    )

  def counters(self) -> dict:
    """What the actor has done so far (see metrics.ACTOR_DOCS)."""
    r = self.rollout
    return dict(
      frames=r.frames if r else 0,
      unrolls=self.sequence,
      env_step_seconds=r.env_seconds if r else 0.0,
      inference_seconds=r.inference_seconds if r else 0.0,
      reconnects=self.reconnects,
      stalls=self.stalls,
    )

  def unroll(self, params, params_version: int) -> tuple[specs.Unroll, specs.UnrollInfo]:
    """The rollout's next unroll, with what the learner needs to know of it."""
    unroll, returns, lengths = self.rollout.unroll(params)
    info = specs.UnrollInfo(
      self.actor_id, self.sequence, params_version, returns, lengths, self.incarnation
    )
    self.sequence += 1
    return unroll, info

  def wants_more(self, stop: threading.Event, max_unrolls: int | None) -> bool:
    return not stop.is_set() and (max_unrolls is None or self.sequence < max_unrolls)

  def run(self, stop: threading.Event, max_unrolls: int | None = None):
    """Acts until `stop` is set (or `max_unrolls` were sent, or the learner's run ended:
    see `ended`), reconnecting when the learner is away.

    Raises grpc.RpcError for errors a reconnect cannot fix (e.g. a protocol mismatch).
    """
    backoff, away = Backoff(), Away(self.config.grpc_host)
    while self.wants_more(stop, max_unrolls):
      client = LearnerClient(self.config)
      try:
        setup, config = client.hello(self.actor_id)
        if setup.learner_address:  # several learners: the first one sends each actor to one
          client.close()
          client = LearnerClient(dataclasses.replace(self.config, grpc_host=setup.learner_address))
          setup, config = client.hello(self.actor_id)
        self.joined(setup.run_id)
        backoff.reset()
        away.back()
        self.prepare(config)
        log.info(
          "connected to learner %s: run %s, %s x %d environments, %s (actor %s, index %d)",
          client.config.grpc_host,
          setup.run_id,
          config.env_id,
          config.num_envs,
          self.mode.sending,
          self.actor_id,
          setup.actor_index,
        )
        self.mode.run(self, client, stop, max_unrolls)
      except RunEnded as e:
        self.unanswered.clear()  # the run that would have answered them is over
        if not self.config.wait_for_next_run:
          self.ended = e.reason
          return
        log.info("the learner's run %s ended (%s); waiting for the next run", self.run_id, e)
        stop.wait(backoff.next())
      except grpc.RpcError as e:
        if e.code() not in RETRYABLE:
          raise
        delay = backoff.next()
        self.reconnects += 1
        away.retry(e)
        stop.wait(delay)
      finally:
        client.close()


class Away:
  """Says that the learner is out of reach: on the first failed attempt, then once every
  RETRY_LOG_EVERY s while it lasts, with the reason (a name that does not resolve is
  named as such)."""

  def __init__(self, address: str):
    self.address, self.since, self.said, self.attempts = address, None, 0.0, 0

  def retry(self, error: grpc.RpcError):
    now = time.monotonic()
    self.attempts += 1
    if self.since is None:
      self.since, self.said = now, now
      log.warning(
        "learner %s: %s; retrying with backoff (up to %.0f s), said again every %.0f s",
        self.address,
        reason(error, self.address),
        BACKOFF_CAP,
        RETRY_LOG_EVERY,
      )
    elif now - self.said >= RETRY_LOG_EVERY:
      self.said = now
      log.warning(
        "learner %s still out of reach after %.0f s and %d attempts: %s",
        self.address,
        now - self.since,
        self.attempts,
        reason(error, self.address),
      )

  def back(self):
    if self.since is not None:
      log.info("learner %s reached after %.0f s", self.address, time.monotonic() - self.since)
    self.since, self.attempts = None, 0


def reason(error: grpc.RpcError, address: str) -> str:
  """Why an RPC to the learner failed, in words."""
  details = (error.details() or "").strip()
  host = address.rpartition(":")[0]
  if any(word in details.lower() for word in ("dns", "resolv", "lookup")):
    return f"cannot resolve host {host!r} (DNS)"
  if "onnection refused" in details:
    return "connection refused (no learner listens there yet?)"
  first = details.splitlines()[0][:160] if details else ""
  return f"{error.code().name}" + (f" ({first})" if first else "")
