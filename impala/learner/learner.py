"""The learner: the training state, one update at a time, checkpoints, and the versioned
parameters handed to actors.

Uploads reach it through its intake (checked, de-duplicated, queued) and its batcher
(assembled into the update's input); the update is the algorithm's, passed in. It knows
nothing of gRPC (transport/server.py adapts it), so it can be tested in-process.
"""

from __future__ import annotations

import hashlib
import math
import threading
import uuid
import warnings

import jax
import numpy as np

from impala import algorithms, checkpoint, distributed, environments, networks, presets, specs
from impala import config as config_lib
from impala.config import Config, ConfigError
from impala.learner import batcher, intake, registry, snapshot
from impala.learner.snapshot import Snapshot

# With several learners: seconds a learner waits for a batch of its own before it takes
# part in an update with an empty share (its peers wait for it meanwhile).
SYNC_PATIENCE = 1.0


class Learner:
  """State + step + save/restore, fed by `intake`; `start()` it, then `step()` it."""

  def __init__(self, config: Config, algorithm: algorithms.Algorithm | None = None):
    """`algorithm` defaults to the configured one. With several learners, call
    `distributed.initialize` first; all learners then construct theirs together
    (learner 0's state, restored or new, is everyone's)."""
    _check_devices(config)
    self.config = config
    self.index, self.num_learners = config.learner_index, config.num_learners
    self.env = environments.describe(config.env_id, config.env_kwargs, config.env_module)
    self.spec = specs.UnrollSpec.for_run(config, self.env)
    self.network = networks.for_run(config, self.env)
    _check_sizes(config, self.spec, self.network)
    if config.checkpoint_dir and config.learner_index == 0:
      try:
        checkpoint.check_directory(config.checkpoint_dir)
      except OSError as e:
        raise ConfigError(
          f"bad value for --checkpoint-dir: {config.checkpoint_dir!r} (not a folder this "
          f"learner can write: {e.strerror or e})",
          "checkpoint_dir",
        ) from None
    self.mesh = distributed.make_mesh()
    self.algorithm = algorithm or algorithms.make(config, self.network, self.spec, self.mesh)
    self.run_id = uuid.uuid4().hex[:12]
    self.lock = threading.Lock()
    state = self.algorithm.init(self.network.init(jax.random.PRNGKey(config.seed)))
    # restored_from: the checkpoint this learner resumed from. Actors start at version 0.
    # lineage: names the run's checkpoint files (its first learner's run id).
    # seconds_before: the run's time before this process (its clock goes on from there).
    self.restored_from, state, counters, record = (
      _restore(config, state)
      if (config.checkpoint_dir and self.index == 0)
      else (None, state, (0, 0, 1), {})
    )
    self.lineage = record.get("lineage") or self.run_id
    self.seconds_before = float(record.get("seconds", 0.0))
    counters = np.array(counters, np.int64)
    state, counters = distributed.from_learner_0((jax.device_get(state), counters.view(np.uint8)))
    self._updates, self._frames, self._version = counters.view(np.int64).tolist()
    self._state = distributed.replicate(self.mesh, state)
    self._with_a_batch = distributed.per_device(self.mesh, algorithms.WITH_A_BATCH.row())
    self._placeholder = None
    self._host_params = (0, None)  # (version, numpy params), fetched on demand
    self._policy_lag, self._metrics, self._totals = 0.0, {}, algorithms.Control()
    self._lag_sum, self._lag_batches = 0.0, 0
    self._skipped, self._unsettled = 0, None  # the newest update's "skipped", unread
    self.activity = "starting"  # what the learner waits for now, as the progress records say
    self.ended = ""  # the stop reason, once the run is over: actors are told so
    self._done = self._newest()  # the newest update known to be computed
    self._frames_per_input = (
      config.unroll_length * config.num_envs * self.algorithm.unrolls_per_update
    )
    self.actors = registry.ActorRegistry(self.index, self.num_learners, config.seed)
    self.intake = intake.Intake(
      self.algorithm.check,
      lambda: self._version,
      self.actors.seen,
      config.queue_size,
      config.max_policy_lag,
    )
    self._batcher = batcher.Batcher(
      self.intake.queue, self.algorithm.assemble, self.algorithm.unrolls_per_update
    )

  @property
  def version(self) -> int:
    """Version of the newest parameters."""
    return self._version

  @property
  def frames(self) -> int:
    """Environment frames consumed by updates."""
    return self._frames

  def start(self):
    """Starts assembling inputs from the intake."""
    self._batcher.start()

  def close(self):
    self.intake.close()
    self._batcher.close()

  def params_for_actor(self) -> tuple[int, dict]:
    """(version, numpy params) of the newest parameters; fetched from the device once per version."""
    with self.lock:
      version, params, cached = self._version, self._state.params, self._host_params
    if cached[0] == version:
      return cached
    fetched = (version, distributed.local(params))  # waits for the update in flight
    with self.lock:
      if self._host_params[0] < version:
        self._host_params = fetched
    return fetched

  def acting_params(self) -> tuple[int, dict]:
    """(version, params on the device) of the newest update computed, without waiting for
    one in flight: what learner-side inference acts with."""
    with self.lock:
      state, _, _, _, version = self._ready()
    return version, state.params

  def compile(self):
    """Compiles the update ahead of the first input (several learners: all together)."""
    self._placeholder = self.algorithm.placeholder()
    control = distributed.per_device(self.mesh, algorithms.Control().row())
    jax.block_until_ready(self.algorithm.update(self._state, self._placeholder, control))

  def step(self, timeout: float = 0.1, terminate: bool = False, out_of_time: bool = False) -> bool:
    """Runs one update; returns whether it did. `terminate` and `out_of_time` are this
    learner's votes to stop; `votes()` then holds what all learners brought.

    Alone, a learner updates when an input is ready within `timeout` s. Several learners
    update together, each with an empty share when it got no input within SYNC_PATIENCE
    s (or votes to stop): one whose actors are gone neither blocks the others nor misses
    a vote. An update with no input at all changes nothing.
    """
    alone = self.num_learners == 1
    stopping = terminate or out_of_time
    wait = timeout if alone else 0.0 if stopping else SYNC_PATIENCE
    self.activity = "a batch"
    # Alone, a learner that votes to stop starts no more updates: the stop holds.
    batch, infos = (None, []) if alone and stopping else self._batcher.next(wait)
    returns = self.intake.returns()
    votes = algorithms.Control(
      batch is not None, sum(returns), len(returns), terminate, out_of_time
    )
    if alone and batch is None:
      self._totals = votes
      return False
    self.activity = "the update"
    if alone:  # it agrees with itself: the control row that is on the device will do
      # One update in flight: JAX would otherwise queue dozens when the learner is the
      # bottleneck, each a version the actors get only once it is computed (measured on
      # MinAtar: a policy lag of 60-100 updates where the queue made 32). The batcher
      # has the next input on the device meanwhile.
      jax.block_until_ready(self._state)
      with self.lock:
        self._done = self._newest()
        self._settle()
      state, metrics, _ = self.algorithm.update(self._state, batch, self._with_a_batch)
      totals = votes
    else:  # wait for the update, to agree on what comes next
      if batch is None:
        batch = self._placeholder or self.algorithm.placeholder()
      state, metrics, totals = self.algorithm.update(
        self._state, batch, distributed.per_device(self.mesh, votes.row())
      )
      totals = algorithms.Control.of_row(distributed.local(totals))
    brought = round(totals.weight)
    with self.lock:
      self._totals = totals
      if infos:
        self._policy_lag = float(np.mean([self._version - i.params_version for i in infos]))
        self._lag_sum += self._policy_lag
        self._lag_batches += 1
      if brought:
        self._settle()
        self._metrics, self._state = metrics, state  # device arrays until someone reads them
        self._unsettled = metrics["skipped"]
        self._version += 1
        self._updates += 1
        self._frames += brought * self._frames_per_input
        if not alone:  # its totals are read: it is computed
          self._done = self._newest()
    return brought > 0

  def _newest(self) -> tuple:
    return self._state, self._metrics, self._updates, self._frames, self._version

  def _ready(self) -> tuple:
    """(state, metrics, updates, frames, version) of the newest update if it is computed,
    else of the newest one known to be: what can be read without waiting."""
    newest = self._newest()
    arrays = jax.tree.leaves(newest[:2])
    return newest if all(x.is_ready() for x in arrays if isinstance(x, jax.Array)) else self._done

  def finish_update(self, timeout: float) -> bool:
    """Waits up to `timeout` s for the update in flight; returns whether it is computed."""
    with self.lock:
      newest = self._newest()[:2]
    waiter = threading.Thread(target=jax.block_until_ready, args=(newest,), daemon=True)
    waiter.start()
    waiter.join(timeout)
    return not waiter.is_alive()

  def _settle(self, wait: bool = True):
    """Counts the newest update if it was skipped; reading it waits for it, unless not
    `wait`."""
    if self._unsettled is not None and (wait or self._unsettled.is_ready()):
      self._skipped += float(distributed.local(self._unsettled)) > 0
      self._unsettled = None

  def votes(self) -> algorithms.Control:
    """What all learners brought to the newest update (one learner: its own)."""
    return self._totals

  def snapshot(self, metrics: bool = False, wait: bool = True) -> Snapshot:
    """The learner's figures now; with `metrics`, the losses and norms of the newest
    update, which waits for it to be computed (without `wait`: of the newest one that
    is)."""
    with self.lock:
      self._settle(wait=metrics and wait)
      newest = (self._newest() if wait else self._ready())[1]
      mark = dict(version=self._version, frames=self._frames, updates=self._updates)
      mark.update(skipped_updates=self._skipped)
      lag_mean = self._lag_sum / self._lag_batches if self._lag_batches else 0.0
      mark.update(policy_lag=self._policy_lag, policy_lag_mean=lag_mean, votes=self._totals)
    values = {k: float(v) for k, v in distributed.local(newest).items()} if metrics else {}
    return snapshot.take(self.index, self.num_learners, self.intake, self.actors, values, **mark)

  def save_checkpoint(self, wait: bool = True, seconds: float = 0.0) -> str:
    """Writes params, optimizer state, counters, version and the run's settings (one
    consistent snapshot): of the newest update, or without `wait` of the newest one
    computed; `seconds`: the run's time so far. The update draws no random numbers: the
    seed is all the RNG state there is."""
    state, record = self._record(wait, seconds)
    return checkpoint.save(
      self.config.checkpoint_dir, distributed.local(state), record, self.config.keep_checkpoints
    )

  def save_model(self, path: str, seconds: float = 0.0) -> str:
    """Writes the final model to `path`: the moving average of the parameters of the newest
    update computed, with the checkpoint's record and the return reached."""
    state, record = self._record(False, seconds)
    reached = self.snapshot(wait=False).return_mean_100
    record.update(kind="model", return_mean_100=reached if math.isfinite(reached) else None)
    return checkpoint.write(path, distributed.local(state.average_params), record)

  def _record(self, wait: bool, seconds: float) -> tuple[algorithms.TrainingState, dict]:
    with self.lock:
      state, _, updates, frames, version = self._newest() if wait else self._ready()
      record = dict(
        updates=updates,
        frames=frames,
        version=version,
        seconds=round(seconds, 2),
        seed=self.config.seed,
        run_id=self.run_id,
        lineage=self.lineage,
        config=presets.public(self.config),
      )
    return state, record

  def state(self, wait: bool = True) -> algorithms.TrainingState:
    """A host copy of the training state (without `wait`: of the newest update computed)."""
    with self.lock:
      state = self._state if wait else self._ready()[0]
    return distributed.local(state)


def params_digest(params: dict) -> str:
  """SHA-256 of the parameters' bytes: equal on learners that hold equal parameters."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    digest.update(np.asarray(leaf).tobytes())
  return digest.hexdigest()


def _restore(config: Config, state: algorithms.TrainingState) -> tuple:
  """(path, state, (updates, frames, version), record) of the newest checkpoint of this
  run's task and network that fits `state`; (None, state, (0, 0, 1), {}) when there is
  none. ConfigError when there are only other settings' checkpoints, unless --fresh."""
  public = presets.public(config)
  settings = {name: public[name] for name in config_lib.RESUME_SETTINGS}
  try:
    restored = checkpoint.restore_latest(config.checkpoint_dir, state, settings)
  except checkpoint.Mismatch as e:
    if not config.fresh:
      raise ConfigError(
        f"bad value for --checkpoint-dir: {e}; choose another folder, or pass --fresh to "
        "start a new run beside it",
        "checkpoint_dir",
      ) from None
    restored = None
  if restored is None:
    return None, state, (0, 0, 1), {}
  path, state, record = restored
  counters = (record["updates"], record["frames"], record["version"])
  return path, state, counters, record


def _check_sizes(config: Config, spec: specs.UnrollSpec, network: networks.Network):
  """ConfigError unless the network fits the observations and its weights and an
  unroll each fit in one message."""
  shape = list(spec.observation_shape)
  if config.torso != "mlp" and len(shape) != 3:
    raise ConfigError(
      f"bad value for --torso: {config.torso!r} (a convolutional torso needs image "
      f"observations [H, W, C]; {config.env_id} has {shape}; use mlp)",
      "torso",
    )
  try:
    with warnings.catch_warnings(action="ignore"):  # haiku's, about an empty layer
      layout = jax.eval_shape(network.init, jax.random.PRNGKey(0))
    if any(leaf.size == 0 for leaf in jax.tree.leaves(layout)):
      raise ValueError("the images are too small for it")
  except (ValueError, TypeError) as e:
    raise ConfigError(
      f"bad value for --torso: {config.torso!r} (does not fit observations {shape}: "
      f"{str(e).splitlines()[0]})",
      "torso",
    ) from None
  limit = config.max_message_mb
  weights = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(layout))
  if weights > config.max_message_bytes:
    raise ConfigError(
      f"bad value for --lstm-size/--hidden-sizes: the network's weights are "
      f"{weights / 2**20:,.0f} MiB, over --max-message-mb {limit}"
    )
  layout = spec.layout()
  unroll = sum(
    int(np.prod(shape)) * dtype.itemsize for shape, dtype in (*layout[:-1], *layout.core_state)
  )
  if unroll > config.max_message_bytes:
    raise ConfigError(
      f"bad value for --num-envs/--unroll-length: an unroll of {config.num_envs} "
      f"environments x {config.unroll_length} steps is {unroll / 2**20:,.0f} MiB, over "
      f"--max-message-mb {limit}"
    )


def _check_devices(config: Config):
  if jax.process_count() != config.num_learners:
    raise ConfigError(
      f"bad value for --num-learners: {config.num_learners} (the JAX job has "
      f"{jax.process_count()} processes)"
    )
  devices, batch = jax.local_device_count(), config.num_envs * config.batch_size
  if batch % devices:
    raise ConfigError(
      f"bad value for --batch-size: {config.batch_size} (num_envs * batch_size "
      f"must be a multiple of the {devices} devices)"
    )
  per_device = batch // devices
  if per_device % algorithms.passes(config)[1]:
    raise ConfigError(
      f"bad value for --ppo-minibatches: {config.ppo_minibatches} (must divide the "
      f"{per_device} environments of a batch on each of the {devices} devices)"
    )
