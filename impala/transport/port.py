"""The port: all the server asks of the learner, as function calls on arrays (seed_rl's
`Server.bind`). The learner side implements it (learner/port.py); the server knows
nothing else of the learner, so either can be tested, or replaced, alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from impala import specs


class NotReady(RuntimeError):
  """The learner cannot take the actor yet (several learners: the others are starting);
  the actor retries."""


class Steps(Protocol):
  """One Act stream's unroll under way (learner-side inference)."""

  actions: np.ndarray  # the actions of the newest step, once acted on

  def observe(self, step: specs.Step) -> tuple[specs.Unroll, specs.UnrollInfo] | None:
    """Takes the actor's next step; returns the unroll it completes, if it does. Raises
    specs.InvalidUnroll."""


class Port(Protocol):
  """What the gRPC server calls. Uploads and steps arrive decoded; weights leave as arrays."""

  run_id: str  # changes when the learner restarts

  def ended(self) -> str:
    """Why the run ended, once it has ("" before): its actors are told so."""

  def version(self) -> int:
    """The newest parameters' version."""

  def settings(self) -> dict:
    """The run settings an actor gets in the handshake."""

  def hello(self, actor_id: str) -> tuple[int, int, str]:
    """(index, seed, another learner's address or "") for an actor; raises NotReady."""

  def admit(self, upload, info: specs.UnrollInfo, keep_waiting: Callable[[], bool]) -> bool:
    """Checks and queues an upload; False if it was abandoned (the actor left, or the
    learner is stopping). Raises specs.InvalidUnroll."""

  def reject(self, reason: str):
    """Counts an upload or step refused before it could be checked (malformed, ...)."""

  def refused(self):
    """Counts a call refused for a missing or wrong token."""

  def weights(self) -> tuple[int, dict]:
    """(version, numpy params) of the newest parameters."""

  def open_steps(self, first: specs.Step) -> Steps:
    """An Act stream's assembly, from its first step. Raises specs.InvalidUnroll."""

  def act(self, steps: Steps, keep_waiting: Callable[[], bool]) -> bool:
    """Runs the policy on the newest step of `steps`; False if the stream or the learner
    stopped first."""

  def close_steps(self, steps: Steps | None):
    """An Act stream ended (`steps`: None if it sent no valid step)."""
