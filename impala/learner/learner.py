"""The learner: the training state, one update at a time, checkpoints, and the versioned
parameters handed to actors.

Uploads reach it through its intake (checked, de-duplicated, queued) and its batcher
(assembled into the update's input); the update is the algorithm's, passed in. It knows
nothing of gRPC (transport/server.py adapts it), so it can be tested in-process.
"""

from __future__ import annotations

import hashlib
import threading
import uuid

import jax
import numpy as np

from impala import algorithms, checkpoint, distributed, environments, networks, presets, specs
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
    self.env = environments.describe(config.env_id, config.env_kwargs)
    self.spec = specs.UnrollSpec.for_run(config, self.env)
    self.network = networks.for_run(config, self.env)
    self.mesh = distributed.make_mesh()
    self.algorithm = algorithm or algorithms.make(config, self.network, self.spec, self.mesh)
    self.run_id = uuid.uuid4().hex[:12]
    self.lock = threading.Lock()
    state = self.algorithm.init(self.network.init(jax.random.PRNGKey(config.seed)))
    # restored_from: the checkpoint this learner resumed from. Actors start at version 0.
    self.restored_from, state, counters = (
      _restore(config, state)
      if (config.checkpoint_dir and self.index == 0)
      else (None, state, (0, 0, 1))
    )
    counters = np.array(counters, np.int64)
    state, counters = distributed.from_learner_0((jax.device_get(state), counters.view(np.uint8)))
    self._updates, self._frames, self._version = counters.view(np.int64).tolist()
    self._state = distributed.replicate(self.mesh, state)
    self._with_a_batch = distributed.per_device(self.mesh, algorithms.WITH_A_BATCH.row())
    self._placeholder = None
    self._host_params = (0, None)  # (version, numpy params), fetched on demand
    self._policy_lag, self._metrics, self._totals = 0.0, {}, algorithms.Control()
    self._lag_sum, self._lag_batches = 0.0, 0
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
    wait = timeout if alone else 0.0 if terminate or out_of_time else SYNC_PATIENCE
    batch, infos = self._batcher.next(wait)
    returns = self.intake.returns()
    votes = algorithms.Control(
      batch is not None, sum(returns), len(returns), terminate, out_of_time
    )
    if alone and batch is None:
      self._totals = votes
      return False
    if alone:  # it agrees with itself: the control row that is on the device will do
      # One update in flight: JAX would otherwise queue dozens when the learner is the
      # bottleneck, each a version the actors get only once it is computed (measured on
      # MinAtar: a policy lag of 60-100 updates where the queue made 32). The batcher
      # has the next input on the device meanwhile.
      jax.block_until_ready(self._state)
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
        self._metrics, self._state = metrics, state  # device arrays until someone reads them
        self._version += 1
        self._updates += 1
        self._frames += brought * self._frames_per_input
    return brought > 0

  def votes(self) -> algorithms.Control:
    """What all learners brought to the newest update (one learner: its own)."""
    return self._totals

  def snapshot(self, metrics: bool = False) -> Snapshot:
    """The learner's figures now; with `metrics`, the newest update's too (which waits
    for that update to finish)."""
    with self.lock:
      newest = self._metrics
      mark = dict(version=self._version, frames=self._frames, updates=self._updates)
      lag_mean = self._lag_sum / self._lag_batches if self._lag_batches else 0.0
      mark.update(policy_lag=self._policy_lag, policy_lag_mean=lag_mean, votes=self._totals)
    values = {k: float(v) for k, v in distributed.local(newest).items()} if metrics else {}
    return snapshot.take(self.index, self.num_learners, self.intake, self.actors, values, **mark)

  def save_checkpoint(self) -> str:
    """Writes params, optimizer state, counters, version and the run's settings (one
    consistent snapshot). The update draws no random numbers: the seed is all the RNG
    state there is."""
    with self.lock:
      state = self._state
      record = dict(
        updates=self._updates,
        frames=self._frames,
        version=self._version,
        seed=self.config.seed,
        run_id=self.run_id,
        config=presets.public(self.config),
      )
    return checkpoint.save(
      self.config.checkpoint_dir, distributed.local(state), record, self.config.keep_checkpoints
    )

  def state(self) -> algorithms.TrainingState:
    """A host copy of the training state."""
    with self.lock:
      state = self._state
    return distributed.local(state)


def params_digest(params: dict) -> str:
  """SHA-256 of the parameters' bytes: equal on learners that hold equal parameters."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    digest.update(np.asarray(leaf).tobytes())
  return digest.hexdigest()


def _restore(config: Config, state: algorithms.TrainingState) -> tuple:
  """(path, state, (updates, frames, version)) of the newest checkpoint that fits `state`;
  (None, state, (0, 0, 1)) when there is none."""
  restored = checkpoint.restore_latest(config.checkpoint_dir, state)
  if restored is None:
    return None, state, (0, 0, 1)
  path, state, record = restored
  return path, state, (record["updates"], record["frames"], record["version"])


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
