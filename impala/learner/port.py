"""The learner's side of the transport's port (transport/port.py): the calls the gRPC
server makes, each handed to the part that owns it."""

from __future__ import annotations

from collections.abc import Callable

from impala import specs
from impala.learner.inference import Assembly, Inference
from impala.learner.intake import Intake
from impala.learner.learner import Learner
from impala.learner.registry import ActorRegistry


class LearnerPort:
  """Implements transport.port.Port on a learner, its intake, its actors and its
  learner-side inference."""

  def __init__(self, learner: Learner, intake: Intake, actors: ActorRegistry, inference: Inference):
    self._learner, self._intake, self._actors, self._inference = learner, intake, actors, inference
    self.run_id = learner.run_id
    self._frame_stack = learner.env.frame_stack

  def ended(self) -> str:
    return self._learner.ended

  def version(self) -> int:
    return self._learner.version

  def settings(self) -> dict:
    return self._learner.config.run_settings()

  def hello(self, actor_id: str) -> tuple[int, int, str]:
    return self._actors.hello(actor_id)

  def admit(self, upload, info: specs.UnrollInfo, keep_waiting: Callable[[], bool]) -> bool:
    return self._intake.enqueue(upload, info, keep_waiting=keep_waiting) is not None

  def reject(self, reason: str):
    self._intake.reject(reason)

  def refused(self):
    self._intake.count_unauthenticated()

  def weights(self) -> tuple[int, dict]:
    return self._learner.params_for_actor()

  def open_steps(self, first: specs.Step) -> Assembly:
    learner = self._learner
    steps = Assembly(learner.spec, self._frame_stack, learner.config.max_abs_input, first)
    self._inference.opened()
    return steps

  def act(self, steps: Assembly, keep_waiting: Callable[[], bool]) -> bool:
    return self._inference.act(steps, keep_waiting)

  def close_steps(self, steps: Assembly | None):
    if steps is None:
      return
    self._inference.closed()
    if steps.unfinished:
      self._intake.count_unfinished()
