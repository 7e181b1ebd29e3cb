"""The actor's session with the learner: handshake, redirect to another learner,
reconnects with backoff, and the window of unanswered uploads.

The actor never waits for a learner that keeps up: unrolls go out on one upload
stream (at most `MAX_IN_FLIGHT` unanswered; more only when the learner falls
behind, which is how it slows actors down), and new weights are asked for at each
unroll boundary and picked up at a later boundary once they have arrived.
"""

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
import jax

from impala import specs
from impala.actor.rollout import Rollout
from impala.config import Config
from impala.transport.client import RETRYABLE, LearnerClient

log = logging.getLogger("impala.actor")

MAX_IN_FLIGHT = 1


class Backoff:
  """Exponential backoff with full jitter: 0.1 s doubling up to 5 s."""

  def __init__(self, first: float = 0.1, cap: float = 5.0):
    self.first, self.cap, self.attempt = first, cap, 0

  def next(self) -> float:
    self.attempt += 1
    return random.uniform(0, min(self.cap, self.first * 2**self.attempt))

  def reset(self):
    self.attempt = 0


class Session:
  """Acts for the learner: a Rollout of the run's environments, whose unrolls (A3C: their
  gradients) it uploads, with the learner's newest parameters."""

  def __init__(self, config: Config):
    self.config = config
    self.actor_id = config.actor_id or f"{socket.gethostname()}-{os.getpid()}"
    self.incarnation = random.SystemRandom().getrandbits(64)  # see Unroll.incarnation
    self.sequence = 0
    self.stalls = 0  # 0.1 s waits for a learner that fell behind (backpressure)
    self.reconnects = 0
    self.rollout: Rollout | None = None  # built from the handshake
    self.run_id = ""  # of the learner this actor acts for
    self._unanswered = collections.deque()  # serialized unrolls sent but not yet answered

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
        len(self._unanswered),
      )
      self._unanswered.clear()
    self.run_id = run_id

  def prepare(self, run_config: Config):
    """Builds the rollout for the run; keeps it when a reconnect brings the same run."""
    if self.rollout is not None and self.rollout.settings == run_config.run_settings():
      return
    self._unanswered.clear()  # unrolls of another run's shapes
    self.rollout = Rollout(run_config)

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

  def encode(
    self, client: LearnerClient, unroll: specs.Unroll, info: specs.UnrollInfo, params
  ) -> bytes:
    """What goes to the learner: the unroll, or (A3C) the gradient taken on it with the
    parameters that acted."""
    gradient = self.rollout.gradient
    if gradient is not None:
      return client.encode_gradients(jax.device_get(gradient(params, unroll)), info)
    return client.encode_unroll(unroll, info, stacked_frames=self.rollout.env.frame_stack > 1)

  def _wants_more(self, stop: threading.Event, max_unrolls: int | None) -> bool:
    return not stop.is_set() and (max_unrolls is None or self.sequence < max_unrolls)

  def _act(self, client: LearnerClient, stop: threading.Event, max_unrolls: int | None):
    version, params = client.decode_weights(client.weights(self.actor_id, 0).result())
    params = jax.device_put(params)
    weights = client.weights(self.actor_id, version)
    stream = client.upload_stream()
    try:
      for raw in self._unanswered:  # sent on a stream that broke: nothing is lost
        stream.send(raw)
      # Answered before any new one is made: a learner that refuses the stream (at its
      # limit of streams) does not make the actor pile up unrolls.
      self._take_replies(stream, stop, keep=MAX_IN_FLIGHT - 1)
      while self._wants_more(stop, max_unrolls):
        raw = self.encode(client, *self.unroll(params, version), params)
        self._unanswered.append(raw)
        stream.send(raw)
        self._take_replies(stream, stop, keep=MAX_IN_FLIGHT)
        if weights.done():
          newer = client.decode_weights(weights.result())
          if newer is not None:
            version, params = newer[0], jax.device_put(newer[1])
          weights = client.weights(self.actor_id, version)
      self._take_replies(stream, stop, keep=0, patience=self.config.rpc_timeout)
    finally:
      stream.close()

  def _take_replies(self, stream, stop: threading.Event, keep: int, patience: float = 0.0):
    """Takes the replies that have arrived, and waits for more while more than `keep`
    unrolls are unanswered (until `stop`, or for `patience` s once stopping)."""
    deadline = None
    while self._unanswered:
      over = len(self._unanswered) > keep
      if stream.next_reply(timeout=0.1 if over else 0.0) is not None:
        self._unanswered.popleft()
        continue
      if not over:
        return
      if stop.is_set():
        deadline = deadline or time.monotonic() + patience
        if time.monotonic() >= deadline:
          return
      self.stalls += 1

  def run(self, stop: threading.Event, max_unrolls: int | None = None):
    """Acts until `stop` is set (or `max_unrolls` were sent), reconnecting when the learner is away.

    Raises grpc.RpcError for errors a reconnect cannot fix (e.g. a protocol mismatch).
    """
    backoff = Backoff()
    while self._wants_more(stop, max_unrolls):
      client = LearnerClient(self.config)
      try:
        setup, config = client.hello(self.actor_id)
        if setup.learner_address:  # several learners: the first one sends each actor to one
          client.close()
          client = LearnerClient(dataclasses.replace(self.config, grpc_host=setup.learner_address))
          setup, config = client.hello(self.actor_id)
          log.info("assigned to learner %s", client.config.grpc_host)
        self.joined(setup.run_id)
        backoff.reset()
        self.prepare(config)
        self._act(client, stop, max_unrolls)
      except grpc.RpcError as e:
        if e.code() not in RETRYABLE:
          raise
        delay = backoff.next()
        self.reconnects += 1
        log.info(
          "learner %s unavailable (%s); retrying in %.1f s",
          client.config.grpc_host,
          e.code().name,
          delay,
        )
        stop.wait(delay)
      finally:
        client.close()
