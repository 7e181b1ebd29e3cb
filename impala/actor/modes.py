"""The actor's two ways of acting for the learner, one chosen at connect from the run's
settings (`for_run`); the session runs whichever it is, through `run`.

- `Uploading` (--inference actor): a Rollout acts with the newest weights the actor pulls,
  and its unrolls (A3C: their gradients) go up one stream. The actor never waits for a
  learner that keeps up: at most MAX_IN_FLIGHT unrolls are unanswered (more only when the
  learner falls behind, which is how it slows actors down), and new weights are asked for
  at each unroll boundary and picked up at a later boundary once they have arrived.
- `Stepping` (--inference learner): a Stepper of the environments alone (no JAX) sends
  each step's observations and takes the learner's actions.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from impala import specs
from impala.actor.stepper import Stepper
from impala.config import Config, ConfigError
from impala.transport.client import LearnerClient, RunEnded

if TYPE_CHECKING:
  from impala.actor.session import Session

MAX_IN_FLIGHT = 1
# Seconds a stopping actor waits for the replies to the unrolls it has sent.
STOP_PATIENCE = 1.0


class Uploading:
  """Actor-side inference: unrolls (`gradients`: A3C's gradients of them) uploaded."""

  def __init__(self, rollout, gradients: bool):
    self.rollout, self.gradients = rollout, gradients
    self.sending = "sending gradients (a3c)" if gradients else "sending unrolls"

  def encode(
    self, client: LearnerClient, unroll: specs.Unroll, info: specs.UnrollInfo, params
  ) -> bytes:
    """What goes to the learner: the unroll, or (A3C) the gradient taken on it with the
    parameters that acted."""
    if self.gradients:
      return client.encode_gradients(self.rollout.gradients(params, unroll), info)
    return client.encode_unroll(unroll, info, stacked_frames=self.rollout.env.frame_stack > 1)

  def run(
    self, session: Session, client: LearnerClient, stop: threading.Event, max_unrolls: int | None
  ):
    """Acts and uploads until `stop` (or `max_unrolls`); the unrolls that a broken stream
    left unanswered are sent again first, so that nothing is lost."""
    version, params = client.decode_weights(client.weights(session.actor_id, 0).result())
    params = self.rollout.load(params)
    weights = client.weights(session.actor_id, version)
    stream = client.upload_stream()
    try:
      for raw in session.unanswered:
        stream.send(raw)
      # Answered before any new one is made: a learner that refuses the stream (at its
      # limit of streams) does not make the actor pile up unrolls.
      self._take_replies(session, stream, stop, keep=MAX_IN_FLIGHT - 1)
      while session.wants_more(stop, max_unrolls):
        session.report_when_due()
        raw = self.encode(client, *session.unroll(params, version), params)
        session.unanswered.append(raw)
        stream.send(raw)
        self._take_replies(session, stream, stop, keep=MAX_IN_FLIGHT)
        if weights.done():
          newer = client.decode_weights(weights.result())
          if newer is not None:
            version, params = newer[0], self.rollout.load(newer[1])
          weights = client.weights(session.actor_id, version)
      self._take_replies(session, stream, stop, keep=0, patience=STOP_PATIENCE)
    finally:
      stream.close()

  def _take_replies(
    self, session: Session, stream, stop: threading.Event, keep: int, patience: float = 0.0
  ):
    """Takes the replies that have arrived, and waits for more while more than `keep`
    unrolls are unanswered (until `stop`, or for `patience` s once stopping)."""
    deadline = None
    while session.unanswered:
      over = len(session.unanswered) > keep
      reply = stream.next_reply(timeout=0.1 if over else 0.0)
      if reply is not None:
        if reply.run_ended:
          raise RunEnded(reply.run_ended)
        session.unanswered.popleft()
        continue
      if not over:
        return
      if stop.is_set():
        deadline = deadline or time.monotonic() + patience
        if time.monotonic() >= deadline:
          return
      session.stalls += 1


class Stepping:
  """Learner-side inference: each step's observations out, the actions to take back."""

  sending = "sending observations (learner-side inference)"

  def __init__(self, stepper: Stepper):
    self.rollout = stepper

  def run(
    self, session: Session, client: LearnerClient, stop: threading.Event, max_unrolls: int | None
  ):
    """Steps until `stop` (or `max_unrolls`). A step whose actions do not come (a
    reconnect) is sent again as the first of the next stream."""
    stepper, stream = self.rollout, client.act_stream()
    whole = True  # a stream's first step carries whole frame stacks
    try:
      while session.wants_more(stop, max_unrolls):
        session.report_when_due()
        sent = time.perf_counter()
        stream.send(client.encode_observations(stepper.observations(session.actor_id, whole)))
        whole = False
        while (reply := stream.next_reply(timeout=0.1)) is None:
          if stop.is_set():
            return
          session.stalls += 1
        actions, ended = client.decode_actions(reply, stepper.num_envs, stepper.env.num_actions)
        if ended:
          raise RunEnded(ended)
        stepper.inference_seconds += time.perf_counter() - sent
        stepper.step(actions)
        # The unrolls the learner has made of the steps sent: one per T after the first.
        session.sequence = (stepper.steps - 1) // stepper.unroll_length
    finally:
      stream.close()


def for_run(config: Config) -> Uploading | Stepping:
  """The mode of the run that `config` (the handshake's settings) describes."""
  if config.inference == "learner":
    return Stepping(Stepper(config))
  return Uploading(_rollout(config), gradients=config.algorithm == "a3c")


def _rollout(config: Config):
  """A Rollout, which acts with JAX: refused with one line where it is not installed."""
  try:
    from impala.actor.rollout import Rollout
  except ImportError as e:
    raise ConfigError(
      f"the learner's run acts in its actors (--inference actor), and this actor cannot: "
      f"{e} (installed from requirements-actor.txt, it can only serve --inference learner; "
      "install requirements.txt, or start the learner with --inference learner)"
    ) from None
  return Rollout(config)
