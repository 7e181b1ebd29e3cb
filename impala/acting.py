"""The actor: a batch of environments, a jitted policy step, unrolls streamed to the learner
(A3C: the gradients the actor takes on its unrolls, in their place).

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
import signal
import socket
import sys
import threading
import time

import grpc
import jax
import numpy as np

from impala import config as config_lib
from impala import environments, losses, metrics, networks, types
from impala.client import RETRYABLE, LearnerClient
from impala.config import Config

log = logging.getLogger("impala.actor")

MAX_IN_FLIGHT = 2


class Backoff:
  """Exponential backoff with full jitter: 0.1 s doubling up to 5 s."""

  def __init__(self, first: float = 0.1, cap: float = 5.0):
    self.first, self.cap, self.attempt = first, cap, 0

  def next(self) -> float:
    self.attempt += 1
    return random.uniform(0, min(self.cap, self.first * 2 ** self.attempt))

  def reset(self):
    self.attempt = 0


def make_policy(network: networks.Network):
  """`policy(params, rng, obs, first, state) -> (rng, action, logits, state)`, jitted."""

  @jax.jit
  def policy(params, rng, obs, first, state):
    rng, key = jax.random.split(rng)
    out, state = network.step(params, obs, first, state)
    action = jax.random.categorical(key, out.logits).astype(np.int32)
    return rng, action, out.logits, state

  return policy


def make_gradient(config: Config, network: networks.Network):
  """`gradient(params, unroll) -> d loss / d params` (A3C), jitted."""
  loss = losses.make(config, network.unroll)
  return jax.jit(lambda params, unroll: jax.grad(loss, has_aux=True)(params, unroll)[0])


class Actor:
  """Runs environments with the learner's newest parameters and uploads unrolls."""

  def __init__(self, config: Config):
    self.config = config
    self.actor_id = config.actor_id or f"{socket.gethostname()}-{os.getpid()}"
    self.incarnation = random.SystemRandom().getrandbits(64)  # see Unroll.incarnation
    self.sequence = 0
    self.frames = 0
    self.stalls = 0  # 0.1 s waits for a learner that fell behind (backpressure)
    self.reconnects = 0
    self.env_seconds = 0.0        # stepping the environments
    self.inference_seconds = 0.0  # in the policy, until its actions are on the host
    self._unanswered = collections.deque()  # serialized unrolls sent but not yet answered
    self._run_key = None  # what the environments and network were built for

  # --- Setting up from the handshake ----------------------------------------------

  def prepare(self, config: Config):
    """Builds environments and policy; keeps them when a reconnect brings the same config."""
    key = (config.env_id, repr(config.env_kwargs), config.num_envs, config.unroll_length,
           config.seed, config.torso, config.hidden_sizes, config.lstm_size,
           *(getattr(config, name) for name in config_lib.ACTOR_LOSS_SETTINGS))
    if key == self._run_key:
      return
    self._run_key, self.run_config = key, config
    self._unanswered.clear()  # unrolls of another run's shapes
    self.envs = environments.make(config.env_id, config.num_envs, config.env_kwargs)
    self.spec = environments.spec_of(self.envs)
    self.network = networks.make(config.torso, config.hidden_sizes, config.lstm_size,
                                 self.spec.observation_shape, self.spec.num_actions)
    self.policy = make_policy(self.network)
    self.gradient = make_gradient(config, self.network) if config.algorithm == "a3c" else None
    self.rng = jax.random.PRNGKey(config.seed)
    n = config.num_envs
    self.obs, _ = self.envs.reset(seed=config.seed)
    self.done = np.zeros(n, bool)         # the current observation ends its episode
    self.first = np.ones(n, bool)         # the current observation starts an episode
    self.terminated = np.zeros(n, bool)
    self.truncated = np.zeros(n, bool)
    self.core_state = self.network.initial_state(n)
    self.episode_return = np.zeros(n, np.float32)
    self.episode_length = np.zeros(n, np.int32)

  # --- Acting ----------------------------------------------------------------------

  def unroll(self, params, params_version: int) -> tuple[types.Unroll, types.UnrollInfo]:
    """Steps all environments `unroll_length` times.

    The current observation is stored as obs_0 of this unroll and was obs_T of
    the previous one: consecutive unrolls overlap by one observation, so the
    learner can bootstrap from obs_T without the actor sending any step twice.
    """
    t_len, n = self.run_config.unroll_length, self.run_config.num_envs
    obs = np.empty((t_len + 1, n) + self.spec.observation_shape, self.spec.observation_dtype)
    terminated = np.empty((t_len + 1, n), bool)
    truncated = np.empty((t_len + 1, n), bool)
    actions = np.empty((t_len, n), np.int32)
    rewards = np.empty((t_len, n), np.float32)
    logits = np.empty((t_len, n, self.spec.num_actions), np.float32)
    # The state the network uses at obs_0: zero where obs_0 starts an episode.
    core_state = tuple(np.where(self.first[:, None], 0.0, s).astype(np.float32)
                       for s in self.core_state)
    returns, lengths = [], []

    obs[0], terminated[0], truncated[0] = self.obs, self.terminated, self.truncated
    clock = time.perf_counter
    for t in range(t_len):
      started = clock()
      self.rng, action, step_logits, self.core_state = self.policy(
          params, self.rng, self.obs, self.first, self.core_state)
      actions[t] = action
      logits[t] = step_logits
      stepped = clock()
      self.obs, rewards[t], self.terminated, self.truncated, _ = self.envs.step(actions[t])
      self.inference_seconds += stepped - started
      self.env_seconds += clock() - stepped
      obs[t + 1], terminated[t + 1], truncated[t + 1] = self.obs, self.terminated, self.truncated
      # A step taken from a final observation is the reset step: no reward, no length.
      self.episode_return += rewards[t]
      self.episode_length += ~self.done
      self.first = self.done
      self.done = self.terminated | self.truncated
      if self.done.any():
        returns.append(self.episode_return[self.done])
        lengths.append(self.episode_length[self.done])
        self.episode_return[self.done] = 0.0
        self.episode_length[self.done] = 0

    self.frames += t_len * n
    info = types.UnrollInfo(
        self.actor_id, self.sequence, params_version,
        np.concatenate(returns) if returns else np.zeros(0, np.float32),
        np.concatenate(lengths) if lengths else np.zeros(0, np.int32), self.incarnation)
    self.sequence += 1
    unroll = types.Unroll(obs, terminated, truncated, actions, rewards, logits, core_state)
    return unroll, info

  def encode(self, client: LearnerClient, unroll: types.Unroll, info: types.UnrollInfo,
             params) -> bytes:
    """What goes to the learner: the unroll, or (A3C) the gradient taken on it with the
    parameters that acted."""
    if self.gradient is not None:
      return client.encode_gradients(jax.device_get(self.gradient(params, unroll)), info)
    return client.encode_unroll(unroll, info, stacked_frames=self.spec.frame_stack > 1)

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
          _, config = client.hello(self.actor_id)
          log.info("assigned to learner %s", setup.learner_address)
        backoff.reset()
        self.prepare(config)
        self._act(client, stop, max_unrolls)
      except grpc.RpcError as e:
        if e.code() not in RETRYABLE:
          raise
        delay = backoff.next()
        self.reconnects += 1
        log.info("learner %s unavailable (%s); retrying in %.1f s", client.config.grpc_host,
                 e.code().name, delay)
        stop.wait(delay)
      finally:
        client.close()


def _die_with_parent():
  """Local actors (started by the learner) exit when the learner dies, even by SIGKILL."""
  parent = os.environ.get("IMPALA_PARENT_PID")
  if not parent or not sys.platform.startswith("linux"):
    return
  import ctypes
  pr_set_pdeathsig = 1
  ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
  if os.getppid() != int(parent):  # the parent died before prctl took effect
    sys.exit(0)


def main(argv=None) -> int:
  try:
    config = config_lib.from_args(argv, description="IMPALA actor (gRPC client).")
    LearnerClient(config).close()  # reads the token and TLS files: a bad path fails here
    actor = Actor(config)
    if config.metrics_port:
      metrics.serve(metrics.ActorCollector(actor), config.metrics_port)
  except config_lib.ConfigError as e:
    print(f"actor_client.py: error: {e}", file=sys.stderr)
    return 2
  logging.basicConfig(format="%(asctime)s actor %(message)s")
  log.setLevel(logging.INFO)
  _die_with_parent()
  stop = threading.Event()
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: stop.set())
  try:
    actor.run(stop)
  except grpc.RpcError as e:
    print(f"actor_client.py: error: learner {config.grpc_host} refused: "
          f"{e.code().name}: {e.details()}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
