"""Learner-side inference (--inference learner), as SEED RL does it: actors step their
environments only and send each step's observations; the learner batches the requests of
all its actors, runs one jitted policy step on its device with its newest parameters,
keeps every environment's recurrent state, and assembles the unrolls itself into the
intake that uploaded unrolls use (same checks, accounting and backpressure).

An `Assembly` is one actor stream's side of this: the unroll under way. `Inference` is
the batcher: one thread that takes the waiting requests, up to --inference-batch
environments, once every open stream has asked or --inference-wait-ms have passed.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable

import jax
import numpy as np

from impala import networks, specs
from impala.config import Config

log = logging.getLogger("impala.learner")


class Assembly:
  """The unroll one Act stream is making: the observations, rewards and flags its actor
  sends, the actions and logits of the policy, and the recurrent state and frame stacks
  of its environments. Used by the stream's thread alone.

  Its unrolls are numbered from 0 when the actor's environments were just reset (the
  learner sees their episodes from the start) and from 1 otherwise (a reconnect: the
  intake then does not count the episodes it joined halfway).
  """

  def __init__(self, spec: specs.UnrollSpec, frame_stack: int, max_abs: float, first: specs.Step):
    self.spec, self.frame_stack, self.max_abs = spec, frame_stack, max_abs
    self.actor_id = first.actor_id
    self.incarnation = random.getrandbits(64)  # a stream's unrolls are a sequence of their own
    self.sequence = 0 if first.step == 0 else 1
    self.next_step = first.step
    self.first = np.ones(spec.num_envs, bool)  # the next observation starts an episode
    self._stack = None  # the frame stacks of the current observations
    self._buffers = spec.empty()
    self.core_state = self._buffers.core_state  # zeros
    self._t = -1  # index of the current observation in the buffers; -1 before the first
    self._core_at_0 = self.core_state
    self._oldest = 0  # the oldest parameters version that acted in the unroll
    # What the policy acts on next (set by `observe`), and its actions (by `acted`).
    self.obs, self.starts, self.actions = None, None, None

  @property
  def unfinished(self) -> bool:
    """Whether steps of an unroll under way would be lost if the stream ended now."""
    return self._t > 0

  def observe(self, step: specs.Step) -> tuple[specs.Unroll, specs.UnrollInfo] | None:
    """Takes the actor's next step, or raises specs.InvalidUnroll; returns the unroll it
    completes, if it does. Then `obs` and `starts` are what the policy acts on."""
    if step.step != self.next_step:
      raise specs.InvalidUnroll(
        f"step: expected {self.next_step} (one more than the stream's last), got {step.step}",
        "wrong_step",
      )
    n = self.spec.num_envs
    for name, dtype in (("rewards", np.float32), ("terminated", bool), ("truncated", bool)):
      value = getattr(step, name)
      if value.shape != (n,) or value.dtype != dtype:
        raise specs.InvalidUnroll(
          f"{name}: expected {np.dtype(dtype).name}[{n}], got "
          f"{value.dtype.name}{list(value.shape)}",
          "wrong_shape",
        )
    obs = self._observations(step.observations)
    if self._t >= 0:
      specs.check_magnitude("rewards", step.rewards, self.max_abs)
    if obs.dtype.kind == "f":
      specs.check_magnitude("observations", obs, self.max_abs)
    self.next_step += 1
    completed = None
    b = self._buffers
    if self._t >= 0:
      self._t += 1
      b.rewards[self._t - 1] = step.rewards
    else:
      self._t = 0
    b.observations[self._t], b.terminated[self._t], b.truncated[self._t] = (
      obs,
      step.terminated,
      step.truncated,
    )
    if self._t == self.spec.unroll_length:
      completed = self._complete()
    self.obs, self.starts = obs, self.first
    if self._t == 0:  # the state the network uses at obs_0: zero where obs_0 starts an episode
      self._core_at_0 = tuple(np.where(self.starts[:, None], 0.0, s) for s in self.core_state)
    self.first = step.terminated | step.truncated
    return completed

  def acted(self, actions: np.ndarray, logits: np.ndarray, core_state: tuple, version: int):
    """The policy's answer to the current observations."""
    self.actions = actions
    self._buffers.actions[self._t] = actions
    self._buffers.behaviour_logits[self._t] = logits
    self.core_state = core_state
    self._oldest = version if self._t == 0 else min(self._oldest, version)

  def _observations(self, obs: np.ndarray) -> np.ndarray:
    """The observations of a step; stacked frames are rebuilt from the newest frame (the
    stream's first step sends whole stacks)."""
    shape, dtype = (self.spec.num_envs, *self.spec.observation_shape), self.spec.observation_dtype
    newest = self.frame_stack > 1 and self._stack is not None
    expected = shape[:-1] if newest else shape
    if obs.shape != expected or obs.dtype != dtype:
      what = "the newest frames" if newest else "observations"
      raise specs.InvalidUnroll(
        f"observations: expected {what} {np.dtype(dtype).name}{list(expected)}, got "
        f"{obs.dtype.name}{list(obs.shape)}",
        "wrong_shape",
      )
    if self.frame_stack == 1:
      return obs
    if newest:
      stack = np.concatenate([self._stack[..., 1:], obs[..., None]], axis=-1)
      stack[self.first, ..., :-1] = 0  # no frames from before an episode's first
      obs = stack
    self._stack = obs
    return obs

  def _complete(self) -> tuple[specs.Unroll, specs.UnrollInfo]:
    t = self.spec.unroll_length
    done, b = self._buffers, self.spec.empty()
    b.observations[0], b.terminated[0], b.truncated[0] = (
      done.observations[t],
      done.terminated[t],
      done.truncated[t],
    )
    self._buffers, self._t = b, 0
    nothing = np.zeros(0, np.float32)
    info = specs.UnrollInfo(
      self.actor_id,
      self.sequence,
      self._oldest,
      nothing,
      nothing.astype(np.int32),
      self.incarnation,
    )
    self.sequence += 1
    return done._replace(core_state=self._core_at_0), info


class _Request:
  __slots__ = ("assembly", "done", "result")

  def __init__(self, assembly: Assembly):
    self.assembly, self.done, self.result = assembly, threading.Event(), None


class Inference:
  """The policy of every Act stream of a learner, run in batches on its device.

  `params()` is the learner's (version, params) of the newest update computed. Batches
  are padded to a power of two of streams, so the policy compiles a few times at most.
  """

  def __init__(self, config: Config, network: networks.Network, params: Callable):
    self._policy = networks.make_policy(network)
    self._params, self._cached = params, (None, None)
    self._num_envs = config.num_envs
    self._most = max(1, config.inference_batch // config.num_envs)  # requests in one batch
    self._wait = config.inference_wait_ms / 1000
    self._rng = jax.random.PRNGKey(config.seed ^ 0x5EED)
    self._queue: queue.SimpleQueue = queue.SimpleQueue()
    self._lock = threading.Lock()
    self._streams = 0  # open Act streams: a batch need not wait for more requests than that
    self.batches = self.requests = 0
    self._closed = threading.Event()
    self._thread = threading.Thread(target=self._run, name="inference", daemon=True)

  def start(self):
    """Starts the batching thread."""
    self._thread.start()

  def opened(self):
    with self._lock:
      self._streams += 1

  def closed(self):
    with self._lock:
      self._streams -= 1

  def act(self, assembly: Assembly, keep_waiting: Callable[[], bool]) -> bool:
    """Runs the policy on the assembly's current observations (in a batch with other
    streams'); False if the stream or the learner stopped first."""
    request = _Request(assembly)
    self._queue.put(request)
    while not request.done.wait(0.1):
      if self._closed.is_set() or not keep_waiting():
        return False
    if isinstance(request.result, Exception):
      raise request.result
    assembly.acted(*request.result)
    return True

  def stop(self):
    self._closed.set()

  def _run(self):
    while not self._closed.is_set():
      try:
        batch = [self._queue.get(timeout=0.1)]
      except queue.Empty:
        continue
      deadline = time.monotonic() + self._wait
      while len(batch) < min(self._most, self._streams):
        try:
          batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
        except queue.Empty:
          break
      try:
        self._step(batch)
      except Exception as e:  # every waiting stream hears of it; the next batch tries again
        log.exception("learner-side inference failed")
        for request in batch:
          request.result = e
          request.done.set()

  def _step(self, batch: list[_Request]):
    version, params = self._params()
    if version != self._cached[0]:  # one device's copy, also with several devices or learners
      self._cached = (version, jax.tree.map(lambda x: x.addressable_data(0), params))
    params = self._cached[1]
    padded = 1 << (len(batch) - 1).bit_length()
    fill = padded - len(batch)
    first = batch[0].assembly
    obs = np.concatenate([r.assembly.obs for r in batch] + [np.zeros_like(first.obs)] * fill)
    starts = np.concatenate([r.assembly.starts for r in batch] + [first.starts] * fill)
    state = tuple(
      np.concatenate([r.assembly.core_state[i] for r in batch] + [first.core_state[i]] * fill)
      for i in range(len(first.core_state))
    )
    self._rng, actions, logits, state = self._policy(params, self._rng, obs, starts, state)
    actions, logits, state = jax.device_get((actions, logits, state))
    n = self._num_envs
    for i, request in enumerate(batch):
      part = slice(i * n, (i + 1) * n)
      request.result = (actions[part], logits[part], tuple(s[part] for s in state), version)
      request.done.set()
    self.batches += 1
    self.requests += len(batch)
