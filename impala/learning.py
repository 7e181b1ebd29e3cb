"""The learner: a bounded queue of unrolls, a batcher thread and one jitted `sgd_step`
(A3C: a queue of the actors' gradients and one jitted `apply_step`).

Its whole surface toward actors is `hello`, `enqueue` and `params_for_actor`; it
knows nothing of gRPC (server.py adapts it), so it can be tested in-process.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import hashlib
import math
import queue
import threading
import time
import uuid
from typing import Callable, NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from impala import checkpoint, distributed, environments, losses, networks, types
from impala.config import Config, ConfigError

# With several learners: seconds a learner waits for a batch of its own before it takes
# part in an update with an empty share (its peers wait for it meanwhile).
SYNC_PATIENCE = 1.0


class NotReady(RuntimeError):
  """Learner 0 cannot assign actors yet: the other learners are still starting."""


class InvalidUnroll(ValueError):
  """An unroll that does not match the run's configuration; the message names the field,
  `reason` is the counter it is tallied under."""

  def __init__(self, message: str, reason: str):
    super().__init__(message)
    self.reason = reason


def keep_freed_memory():
  """Makes glibc keep freed memory up to 32 MB blocks and 256 MB in all for reuse.

  The learner receives and frees MB-sized messages at a high rate; by default glibc
  hands each one back to the kernel and page-faults it in again for the next
  (measured: Atari-sized ingest gains about a quarter). No-op elsewhere than glibc.
  """
  try:
    libc = ctypes.CDLL("libc.so.6")
  except OSError:
    return
  m_trim_threshold, m_mmap_threshold = -1, -3
  libc.mallopt(m_mmap_threshold, 32 << 20)
  libc.mallopt(m_trim_threshold, 256 << 20)


# The settings that define the environment and the network: saved with each checkpoint,
# so that `python -m impala.evaluate` can rebuild what it was trained on.
RUN_SETTINGS = ("env_id", "env_kwargs", "torso", "hidden_sizes", "lstm_size", "seed")


class TrainingState(NamedTuple):
  params: dict             # what the actors act with
  opt_state: optax.OptState
  average_params: dict     # exponential moving average of params: what evaluation uses


def initial_state(params: dict, optimizer: optax.GradientTransformation) -> TrainingState:
  return TrainingState(params, optimizer.init(params), params)


def make_optimizer(config: Config) -> optax.GradientTransformation:
  return optax.chain(
      optax.clip_by_global_norm(config.max_grad_norm),
      optax.rmsprop(config.learning_rate, decay=config.rmsprop_decay, eps=config.rmsprop_eps))


# What each learner adds to every update, one row of numbers: whether it brought a batch
# ("weight" 1, else 0), the sum and count of its last 100 episode returns, and its stop
# votes. The update returns the sum over learners, so every learner takes the same
# decisions (versions, frames, stopping) after the same update.
CONTROL = ("weight", "return_sum", "return_count", "terminate", "out_of_time")
WITH_A_BATCH = np.eye(len(CONTROL), dtype=np.float32)[0]  # a batch, no returns, no votes


def make_apply(optimizer: optax.GradientTransformation, average_decay: float) -> Callable:
  """`apply(state, grads) -> state`: one optimizer step, and the moving average."""

  def apply(state: TrainingState, grads: dict) -> TrainingState:
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    average = optax.incremental_update(params, state.average_params, 1.0 - average_decay)
    return TrainingState(params, opt_state, average)

  return apply


def norms(state: TrainingState, grads: dict) -> dict:
  return dict(grad_norm=optax.tree.norm(grads), param_norm=optax.tree.norm(state.params))


def make_apply_step(optimizer: optax.GradientTransformation, average_decay: float) -> Callable:
  """A3C: `apply_step(state, grads) -> (state, metrics)`, jitted: an actor's gradient
  applied as it comes, with the one optimizer state."""
  apply = make_apply(optimizer, average_decay)

  @jax.jit
  def apply_step(state: TrainingState, grads: dict):
    state = apply(state, grads)
    return state, norms(state, grads)

  return apply_step


def make_sgd_step(loss_fn: Callable, optimizer: optax.GradientTransformation,
                  mesh: Mesh, average_decay: float = 0.99) -> Callable:
  """`sgd_step(state, batch, control) -> (state, metrics, totals)`, jitted over `mesh`.

  Each device takes the gradient of the loss on its part of the batch; the gradients
  of the devices whose learner brought a batch are averaged across the mesh (the
  all-reduce), and every device applies that same update to its replica of the state.
  `control` holds each device's CONTROL row; `totals` is their sum over learners. When
  no learner brought a batch the state is left as it is.
  """
  devices_per_learner = len(mesh.local_devices)
  apply = make_apply(optimizer, average_decay)

  def step(state: TrainingState, batch: types.Unroll, control: jax.Array):
    weight = control[0, 0]
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
    # One all-reduce of everything, as one vector: each is a round trip between learners.
    contribution = jax.tree.map(lambda x: jnp.where(weight > 0, x, 0.0), (grads, metrics))
    flat, unflatten = jax.flatten_util.ravel_pytree((contribution, control[0]))
    (grads, metrics), totals = unflatten(jax.lax.psum(flat, distributed.AXIS))
    shares = totals[0]  # devices that took a gradient: each of the mean over its part
    grads, metrics = jax.tree.map(lambda x: x / jnp.maximum(shares, 1.0), (grads, metrics))
    state = jax.lax.cond(shares > 0, lambda state: apply(state, grads), lambda state: state,
                         state)
    metrics.update(norms(state, grads))
    return state, metrics, totals / devices_per_learner

  # check_vma=False: rlax's V-trace scan does not mark its carry as varying across the
  # mesh; the outputs are replicated all the same (psums, and updates computed from them).
  return jax.jit(jax.shard_map(
      step, mesh=mesh, in_specs=(P(), distributed.BATCH_SPEC, P(distributed.AXIS)),
      out_specs=(P(), P(), P()), check_vma=False))


def make_network(config: Config, spec: environments.EnvSpec) -> networks.Network:
  return networks.make(config.torso, config.hidden_sizes, config.lstm_size,
                       spec.observation_shape, spec.num_actions)


def dummy_batch(config: Config, spec: environments.EnvSpec,
                network: networks.Network) -> types.Unroll:
  """A batch of zeros with the shapes of a real one (for compiling and benchmarks)."""
  t, b = config.unroll_length, config.num_envs * config.batch_size
  return types.Unroll(
      observations=np.zeros((t + 1, b) + spec.observation_shape, spec.observation_dtype),
      terminated=np.zeros((t + 1, b), bool), truncated=np.zeros((t + 1, b), bool),
      actions=np.zeros((t, b), np.int32), rewards=np.zeros((t, b), np.float32),
      behaviour_logits=np.zeros((t, b, spec.num_actions), np.float32),
      core_state=network.initial_state(b))


def _concatenate_aligned(parts: list[np.ndarray], axis: int) -> np.ndarray:
  """np.concatenate into a 64-byte-aligned array: jax.device_put on CPU then uses its
  memory as it is instead of copying it once more."""
  shape = list(parts[0].shape)
  shape[axis] = sum(p.shape[axis] for p in parts)
  nbytes = int(np.prod(shape)) * parts[0].dtype.itemsize
  buffer = np.empty(nbytes + 64, np.uint8)
  start = -buffer.ctypes.data % 64
  out = buffer[start:start + nbytes].view(parts[0].dtype).reshape(shape)
  return np.concatenate(parts, axis=axis, out=out)


def stack(unrolls: list[types.Unroll]) -> types.Unroll:
  """Concatenates unrolls along the batch axis (axis 1; axis 0 for core states)."""
  fields = [_concatenate_aligned(parts, 1) for parts in zip(*(u[:-1] for u in unrolls))]
  core = tuple(_concatenate_aligned(parts, 0) for parts in zip(*(u.core_state for u in unrolls)))
  return types.Unroll(*fields, core)


def _counter():
  return dataclasses.field(default_factory=collections.Counter)


@dataclasses.dataclass
class Stats:
  """Counters of a run; read them under `Learner.lock`. They add up:
  received = accepted + duplicates + stale + sum(rejected) + abandoned."""
  frames: int = 0                  # environment steps consumed by updates
  updates: int = 0
  received: int = 0                # unrolls that reached the learner, decodable or not
  accepted: int = 0                # queued for training
  duplicates: int = 0              # resent after a reconnect, already taken: dropped
  stale: int = 0                   # acted by parameters older than --max-policy-lag: dropped
  rejected: collections.Counter = _counter()  # reason -> count: malformed or invalid
  abandoned: int = 0               # the learner stopped, or the actor left, while it waited
  by_actor: collections.Counter = _counter()  # actor id -> accepted
  unauthenticated: int = 0         # calls refused for a missing or wrong token
  episodes: int = 0
  returns: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=100))
  lengths: collections.deque = dataclasses.field(default_factory=lambda: collections.deque(maxlen=100))
  policy_lag: float = 0.0          # mean over the last batch: learner version - acting version

  @property
  def return_mean_100(self) -> float:
    return float(np.mean(self.returns)) if self.returns else float("nan")

  def accounting(self) -> dict:
    return dict(received=self.received, accepted=self.accepted, duplicates=self.duplicates,
                stale=self.stale, rejected=dict(self.rejected), abandoned=self.abandoned)


class _Sender(NamedTuple):
  """One actor process's sequence of unrolls: the newest sequence number taken."""
  lock: threading.Lock
  last: list  # [sequence], -1 before the first


class Learner:
  """Consumes unrolls from actors, updates parameters, hands out versioned params."""

  def __init__(self, config: Config):
    """With several learners, call `distributed.initialize` first; all learners then
    construct theirs together (learner 0's state, restored or new, is everyone's)."""
    keep_freed_memory()
    self.config = config
    self.index, self.num_learners = config.learner_index, config.num_learners
    if jax.process_count() != self.num_learners:
      raise ConfigError(f"bad value for --num-learners: {self.num_learners} (the JAX job has "
                        f"{jax.process_count()} processes)")
    if (config.num_envs * config.batch_size) % jax.local_device_count():
      raise ConfigError(f"bad value for --batch-size: {config.batch_size} (num_envs * batch_size "
                        f"must be a multiple of the {jax.local_device_count()} devices)")
    self.spec = environments.describe(config.env_id, config.env_kwargs)
    self.run_id = uuid.uuid4().hex[:12]
    self.network = make_network(config, self.spec)
    self.mesh = distributed.make_mesh()
    optimizer = make_optimizer(config)
    state = initial_state(self.network.init(jax.random.PRNGKey(config.seed)), optimizer)
    self.a3c = config.algorithm == "a3c"
    self._unrolls_per_update = 1 if self.a3c else config.batch_size
    if self.a3c:
      self._apply_step = make_apply_step(optimizer, config.average_decay)
      self._gradient_layout = jax.tree.map(lambda p: (p.shape, p.dtype), state.params)
    else:
      self._sgd_step = make_sgd_step(losses.make(config, self.network.unroll), optimizer,
                                     self.mesh, config.average_decay)

    self.lock = threading.Lock()
    self.stats = Stats()
    self.version = 1                 # actors start with version 0: "nothing yet"
    self.restored_from = None        # path of the checkpoint this learner resumed from
    self.last_metrics: dict = {}     # of the newest update: losses, gradient and param norms
    self.totals = dict.fromkeys(CONTROL, 0.0)  # CONTROL summed over learners, newest update
    self.addresses = [""] if self.num_learners == 1 else []  # for actors: connect_learners
    if config.checkpoint_dir and self.index == 0:
      state = self._restore(config.checkpoint_dir, state)
    counters = np.array([self.stats.updates, self.stats.frames, self.version], np.int64)
    state, counters = distributed.from_learner_0((jax.device_get(state), counters.view(np.uint8)))
    self.stats.updates, self.stats.frames, self.version = counters.view(np.int64).tolist()
    self._state = distributed.replicate(self.mesh, state)
    self._with_a_batch = distributed.per_device(self.mesh, WITH_A_BATCH)  # a learner alone
    self._routes: dict[str, int] = {}  # learner 0: actor id -> the learner it was assigned
    self._senders: dict[tuple[str, int], _Sender] = {}
    self._host_params = (0, None)    # (version, numpy params), fetched on demand
    self._actors: dict[str, int] = {}
    self.last_seen: dict[str, float] = {}
    self._unrolls: queue.Queue = queue.Queue(config.queue_size)
    self._batches: queue.Queue = queue.Queue(2)
    self._stop = threading.Event()
    self._batcher = threading.Thread(target=self._batch_loop, name="batcher", daemon=True)
    self._batcher.start()

  # --- The actors' side -------------------------------------------------------------

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
      learner = self._routes.setdefault(actor_id, len(self._routes) % k) if (
          self.index == 0) else self.index
      if learner != self.index:
        return -1, 0, self.addresses[learner]
      index = self._actors.setdefault(actor_id, len(self._actors)) * k + self.index
      self.last_seen[actor_id] = time.monotonic()
    seed = int(np.random.SeedSequence([self.config.seed, index]).generate_state(1)[0])
    return index, seed, ""

  def count_unauthenticated(self):
    with self.lock:
      self.stats.unauthenticated += 1

  def reject(self, reason: str):
    """Counts an unroll refused as malformed or invalid (`reason`)."""
    with self.lock:
      self.stats.received += 1
      self.stats.rejected[reason] += 1

  def enqueue(self, unroll: types.Unroll | dict, info: types.UnrollInfo,
              keep_waiting: Callable[[], bool] = lambda: True) -> str | None:
    """Checks an unroll (A3C: the gradients taken on it) and queues it for training;
    returns "accepted", "duplicate" (taken before: dropped) or "stale" (dropped), or None
    when it was abandoned.

    While the queue is full it waits (the backpressure that slows actors down), for as
    long as `keep_waiting()` holds and the learner runs. Raises InvalidUnroll.
    """
    try:
      self.check(unroll)
    except InvalidUnroll as e:
      self.reject(e.reason)
      raise
    with self.lock:
      self.stats.received += 1
      sender = self._senders.setdefault((info.actor_id, info.incarnation),
                                        _Sender(threading.Lock(), [-1]))
      self.last_seen[info.actor_id] = time.monotonic()
    with sender.lock:  # one at a time per sender: a resend may race its first delivery
      outcome = self._admit(unroll, info, sender.last[0], keep_waiting)
      if outcome in ("accepted", "stale"):
        sender.last[0] = info.sequence
    with self.lock:
      s = self.stats
      if outcome == "accepted":
        s.accepted += 1
        s.by_actor[info.actor_id] += 1
        s.episodes += len(info.episode_returns)
        s.returns.extend(info.episode_returns.tolist())
        s.lengths.extend(info.episode_lengths.tolist())
      elif outcome == "duplicate":
        s.duplicates += 1
      elif outcome == "stale":
        s.stale += 1
      else:
        s.abandoned += 1
    return outcome

  def _admit(self, unroll, info, last_sequence: int, keep_waiting) -> str | None:
    if info.sequence <= last_sequence:
      return "duplicate"
    lag = self.version - info.params_version
    if self.config.max_policy_lag and lag > self.config.max_policy_lag:
      return "stale"
    while True:
      try:
        self._unrolls.put((unroll, info), timeout=0.1)
        return "accepted"
      except queue.Full:
        if self._stop.is_set() or not keep_waiting():
          return None

  def queue_depth(self) -> int:
    return self._unrolls.qsize()

  def actors_connected(self) -> int:
    """Actors heard from in the last 10 s; call under `lock`."""
    now = time.monotonic()
    return sum(now - seen < 10.0 for seen in self.last_seen.values())

  def params_for_actor(self) -> tuple[int, dict]:
    """(version, numpy params) of the newest parameters; fetched from the device once per version."""
    with self.lock:
      version, params, cached = self.version, self._state.params, self._host_params
    if cached[0] == version:
      return cached
    # Waits for the update in flight: not under the lock.
    fetched = (version, distributed.local(params))
    with self.lock:
      if self._host_params[0] < version:
        self._host_params = fetched
    return fetched

  def check(self, unroll: types.Unroll | dict):
    """Raises InvalidUnroll naming the first field that does not fit the configuration."""
    if isinstance(unroll, dict) != self.a3c:
      sent = "gradients" if isinstance(unroll, dict) else "trajectory"
      raise InvalidUnroll(f"{sent}: this learner trains {self.config.algorithm}, whose actors "
                          f"send {'gradients' if self.a3c else 'trajectories'}",
                          "wrong_algorithm")
    if self.a3c:
      return self._check_gradients(unroll)
    c, spec = self.config, self.spec
    t, n, a = c.unroll_length, c.num_envs, spec.num_actions
    expected = {
        "observations": ((t + 1, n) + spec.observation_shape, spec.observation_dtype),
        "terminated": ((t + 1, n), np.dtype(bool)),
        "truncated": ((t + 1, n), np.dtype(bool)),
        "actions": ((t, n), np.dtype(np.int32)),
        "rewards": ((t, n), np.dtype(np.float32)),
        "behaviour_logits": ((t, n, a), np.dtype(np.float32)),
    }
    for name, (shape, dtype) in expected.items():
      value = getattr(unroll, name)
      if value.dtype != dtype or value.shape != shape:
        raise InvalidUnroll(f"{name}: expected {dtype.name}{list(shape)}, "
                            f"got {value.dtype.name}{list(value.shape)}", "wrong_shape")
    for name in ("rewards", "behaviour_logits") + (
        ("observations",) if spec.observation_dtype.kind == "f" else ()):
      if not np.isfinite(getattr(unroll, name)).all():
        raise InvalidUnroll(f"{name}: contains NaN or infinity", "not_finite")
    if unroll.actions.size and not (0 <= unroll.actions.min() and unroll.actions.max() < a):
      raise InvalidUnroll(f"actions: out of range [0, {a})", "action_out_of_range")
    state_shape = (n, c.lstm_size)
    if c.lstm_size:
      if len(unroll.core_state) != 2 or any(
          s.shape != state_shape or s.dtype != np.float32 for s in unroll.core_state):
        raise InvalidUnroll(f"core_state: expected 2 float32{list(state_shape)}", "wrong_shape")
    elif unroll.core_state:
      raise InvalidUnroll("core_state: this network has no LSTM, expected none", "wrong_shape")

  def _check_gradients(self, grads: dict):
    names = {(m, n) for m, leaves in grads.items() for n in leaves}
    expected = {(m, n) for m, leaves in self._gradient_layout.items() for n in leaves}
    if names != expected:
      m, n = min(names ^ expected)
      raise InvalidUnroll(f"gradients: {m}/{n} {'missing' if (m, n) in expected else 'unknown'}",
                          "wrong_shape")
    for m, n in sorted(names):
      value, (shape, dtype) = grads[m][n], self._gradient_layout[m][n]
      if value.shape != shape or value.dtype != dtype:
        raise InvalidUnroll(f"gradients: {m}/{n}: expected {dtype.name}{list(shape)}, got "
                            f"{value.dtype.name}{list(value.shape)}", "wrong_shape")
      if not np.isfinite(value).all():
        raise InvalidUnroll(f"gradients: {m}/{n}: contains NaN or infinity", "not_finite")

  # --- Checkpoints ------------------------------------------------------------------

  def _restore(self, directory: str, state: TrainingState) -> TrainingState:
    restored = checkpoint.restore_latest(directory, state)
    if restored is None:
      return state
    self.restored_from, state, record = restored
    self.stats.updates, self.stats.frames = record["updates"], record["frames"]
    self.version = record["version"]
    return state

  def save_checkpoint(self) -> str:
    """Writes params, optimizer state, counters and version (one consistent snapshot).

    The update itself draws no random numbers: the seed is all the RNG state there is.
    """
    with self.lock:
      state = self._state
      record = dict(updates=self.stats.updates, frames=self.stats.frames, version=self.version,
                    seed=self.config.seed, run_id=self.run_id,
                    config={k: getattr(self.config, k) for k in RUN_SETTINGS})
    return checkpoint.save(self.config.checkpoint_dir, distributed.local(state), record,
                           self.config.keep_checkpoints)

  def params_digest(self) -> str:
    """SHA-256 of the parameters' bytes: equal on learners that hold equal parameters."""
    digest = hashlib.sha256()
    for leaf in jax.tree.leaves(distributed.local(self._state.params)):
      digest.update(leaf.tobytes())
    return digest.hexdigest()

  def return_mean(self) -> tuple[float, int]:
    """Mean of the last 100 episode returns of every learner, and how many there are
    (at most 100 per learner), as of the newest update: the same on all learners."""
    total, count = self.totals["return_sum"], int(self.totals["return_count"])
    return (total / count if count else math.nan), count

  # --- Training ---------------------------------------------------------------------

  def _batch_loop(self):
    """Assembles the next batch (and copies it to the device) while the update runs."""
    pending = []
    while not self._stop.is_set():
      try:
        pending.append(self._unrolls.get(timeout=0.1))
      except queue.Empty:
        continue
      if len(pending) == self._unrolls_per_update:
        unrolls, infos = zip(*pending)
        pending = []
        batch = (distributed.replicate(self.mesh, unrolls[0]) if self.a3c
                 else distributed.shard_batch(self.mesh, stack(list(unrolls))))
        while not self._stop.is_set():
          try:
            self._batches.put((batch, infos), timeout=0.1)
            break
          except queue.Full:
            continue

  def compile(self):
    """Compiles `sgd_step` ahead of the first batch (run it while actors start); with
    several learners, all compile together."""
    if self.a3c:
      zeros = jax.tree.map(jnp.zeros_like, self._state.params)
      jax.block_until_ready(self._apply_step(self._state, zeros))
      return
    self._empty = distributed.shard_batch(
        self.mesh, dummy_batch(self.config, self.spec, self.network))
    control = distributed.per_device(self.mesh, np.zeros(len(CONTROL), np.float32))
    jax.block_until_ready(self._sgd_step(self._state, self._empty, control))

  def step(self, timeout: float = 0.1, terminate: bool = False, out_of_time: bool = False
           ) -> bool:
    """Runs one update; returns whether it did. `terminate` and `out_of_time` are this
    learner's votes to stop; `totals` then holds what all learners brought.

    Alone, a learner updates when a batch is ready within `timeout` s. Several learners
    update together: each takes part in every update, with an empty share when it got
    no batch within SYNC_PATIENCE s (or votes to stop), so a learner whose actors are
    gone neither blocks the others nor misses a vote. An update with no batch at all
    changes nothing.
    """
    alone = self.num_learners == 1
    wait = timeout if alone else 0.0 if terminate or out_of_time else SYNC_PATIENCE
    try:
      batch, infos = self._batches.get(timeout=wait)
    except queue.Empty:
      batch, infos = None, ()
    with self.lock:
      returns = self.stats.returns
      row = np.array([batch is not None, sum(returns), len(returns), terminate, out_of_time],
                     np.float32)
    if alone and batch is None:
      self.totals = dict(zip(CONTROL, row.tolist()))
      return False
    if self.a3c:
      state, metrics = self._apply_step(self._state, batch)
    elif alone:  # it agrees with itself: the control row that is on the device will do
      state, metrics, _ = self._sgd_step(self._state, batch, self._with_a_batch)
    else:  # wait for the update, to agree on what comes next
      state, metrics, totals = self._sgd_step(
          self._state, self._empty if batch is None else batch,
          distributed.per_device(self.mesh, row))
      row = distributed.local(totals)
    self.totals = dict(zip(CONTROL, row.tolist()))
    batches = round(self.totals["weight"])
    c = self.config
    with self.lock:
      if infos:
        acted = np.array([info.params_version for info in infos])
        self.stats.policy_lag = float(np.mean(self.version - acted))
      if batches:
        self.last_metrics = metrics  # device arrays: fetched only when someone logs them
        self._state = state
        self.version += 1
        self.stats.updates += 1
        self.stats.frames += batches * c.unroll_length * c.num_envs * self._unrolls_per_update
    return batches > 0

  def close(self):
    self._stop.set()
    self._batcher.join(timeout=5)
