"""The learner: the training state, one update at a time, and the versioned parameters
handed to actors.

Its inputs come from a batcher (assembled from the intake's queue), its update is the
algorithm's; both are passed in (parts.py composes them). It knows nothing of gRPC, so it
can be tested in-process.
"""

from __future__ import annotations

import hashlib
import threading
import uuid

import jax
import numpy as np

from impala import algorithms, distributed
from impala.config import Config
from impala.learner import saving, snapshot
from impala.learner.batcher import Batcher
from impala.learner.intake import Intake
from impala.learner.registry import ActorRegistry
from impala.learner.snapshot import Snapshot

# With several learners: seconds a learner waits for a batch of its own before it takes
# part in an update with an empty share (its peers wait for it meanwhile).
SYNC_PATIENCE = 1.0


class Learner:
  """State + step + their figures. `design` (parts.Design) says what it learns and how;
  `intake`, `actors` and `batches` feed it and are counted in its snapshots."""

  def __init__(
    self, config: Config, design, intake: Intake, actors: ActorRegistry, batches: Batcher
  ):
    """With several learners, call `distributed.initialize` first; all learners then
    construct theirs together (learner 0's state, restored or new, is everyone's)."""
    self.config = config
    self.env, self.spec, self.network = design.env, design.spec, design.network
    self.mesh, self.algorithm = design.mesh, design.algorithm
    self.index, self.num_learners = config.learner_index, config.num_learners
    self.intake, self.actors, self._batches = intake, actors, batches
    self.run_id = uuid.uuid4().hex[:12]
    self.lock = threading.Lock()
    # restored_from: the checkpoint resumed (actors start at version 0); lineage: names the
    # run's checkpoints (its first run id); seconds_before: the run's time before this one.
    self.restored_from, state, counters, record = _first_state(config, design)
    self.lineage = record.get("lineage") or self.run_id
    self.seconds_before = float(record.get("seconds", 0.0))
    self._updates, self._frames, self._version = counters
    self._state = distributed.replicate(self.mesh, state)
    self._with_a_batch = distributed.per_device(self.mesh, distributed.WITH_A_BATCH.row())
    self._placeholder = None
    self._metrics, self._totals = {}, distributed.Control()
    self._lag = Lag()
    self._skipped = Skipped()
    self.activity = "starting"  # what the learner waits for now, as the progress records say
    self.ended = ""  # the stop reason, once the run is over: actors are told so
    self._done = self._newest()  # the newest update known to be computed
    self._frames_per_input = (
      config.unroll_length * config.num_envs * design.algorithm.unrolls_per_update
    )

  @property
  def version(self) -> int:  # of the newest parameters
    return self._version

  @property
  def frames(self) -> int:  # environment frames consumed by updates
    return self._frames

  @property
  def updates(self) -> int:
    return self._updates

  def params_for_actor(self) -> tuple[int, dict]:
    """(version, numpy params) of the newest parameters; waits for the update in flight."""
    with self.lock:
      version, params = self._version, self._state.params
    return version, distributed.local(params)

  def acting_params(self) -> tuple[int, dict]:
    """(version, params on the device) of the newest update computed, without waiting for
    one in flight: what learner-side inference acts with."""
    with self.lock:
      state, _, _, _, version = self._ready()
    return version, state.params

  def compile(self):
    """Compiles the update ahead of the first input (several learners: all together)."""
    self._placeholder = self.algorithm.placeholder()
    control = distributed.per_device(self.mesh, distributed.Control().row())
    jax.block_until_ready(self.algorithm.update(self._state, self._placeholder, control))

  def step(self, timeout: float = 0.1, terminate: bool = False, out_of_time: bool = False) -> bool:
    """Runs one update; returns whether it did. `terminate` and `out_of_time` are this
    learner's votes to stop; `votes()` then holds what all learners brought. Alone, a
    learner updates when an input is ready within `timeout` s. Several learners update
    together, each with an empty share when it got no input within SYNC_PATIENCE s (or
    votes to stop): one whose actors are gone neither blocks the others nor misses a vote.
    An update with no input at all changes nothing."""
    alone = self.num_learners == 1
    stopping = terminate or out_of_time
    wait = timeout if alone else 0.0 if stopping else SYNC_PATIENCE
    self.activity = "a batch"
    # Alone, a learner that votes to stop starts no more updates: the stop holds.
    batch, infos = (None, []) if alone and stopping else self._batches.next(wait)
    returns = self.intake.returns()
    votes = distributed.Control(
      batch is not None, sum(returns), len(returns), terminate, out_of_time
    )
    if alone and batch is None:
      self._totals = votes
      return False
    self.activity = "the update"
    state, metrics, totals = (
      self._update(batch, votes) if alone else self._update_together(batch, votes)
    )
    brought = round(totals.weight)
    with self.lock:
      self._totals = totals
      self._lag.add(self._version, infos)
      if brought:
        self._skipped.add(metrics["skipped"])
        self._metrics, self._state = metrics, state  # device arrays until someone reads them
        self._version += 1
        self._updates += 1
        self._frames += brought * self._frames_per_input
        if not alone:  # its totals are read: it is computed
          self._done = self._newest()
    return brought > 0

  def _update(self, batch, votes: distributed.Control) -> tuple:
    """A learner alone agrees with itself: the control row on the device will do. One
    update in flight: JAX would otherwise queue dozens when the learner is the bottleneck,
    each a version the actors get only once it is computed (measured on MinAtar: a policy
    lag of 60-100 updates where the queue made 32); the batcher readies the next input."""
    jax.block_until_ready(self._state)
    with self.lock:
      self._done = self._newest()
      self._skipped.settle()
    state, metrics, _ = self.algorithm.update(self._state, batch, self._with_a_batch)
    return state, metrics, votes

  def _update_together(self, batch, votes: distributed.Control) -> tuple:
    """Several learners: waits for the update, to agree on what comes next."""
    if batch is None:
      batch = self._placeholder or self.algorithm.placeholder()
    state, metrics, totals = self.algorithm.update(
      self._state, batch, distributed.per_device(self.mesh, votes.row())
    )
    return state, metrics, distributed.Control.of_row(distributed.local(totals))

  def _newest(self) -> tuple:
    return self._state, self._metrics, self._updates, self._frames, self._version

  def _ready(self) -> tuple:
    """(state, metrics, updates, frames, version) of the newest update if it is computed,
    else of the newest one known to be: what can be read without waiting."""
    newest = self._newest()
    arrays = jax.tree.leaves(newest[:2])
    return newest if all(x.is_ready() for x in arrays if isinstance(x, jax.Array)) else self._done

  def newest(self, wait: bool = True) -> tuple:
    """(state, metrics, updates, frames, version) of the newest update, or without `wait`
    of the newest one computed."""
    with self.lock:
      return self._newest() if wait else self._ready()

  def votes(self) -> distributed.Control:
    """What all learners brought to the newest update (one learner: its own)."""
    return self._totals

  def snapshot(self, metrics: bool = False, wait: bool = True) -> Snapshot:
    """The learner's figures now; with `metrics`, the losses and norms of the newest
    update, which waits for it to be computed (without `wait`: of the newest one that
    is)."""
    with self.lock:
      self._skipped.settle(wait=metrics and wait)
      newest = (self._newest() if wait else self._ready())[1]
      mark = dict(version=self._version, frames=self._frames, updates=self._updates)
      mark.update(skipped_updates=self._skipped.count, votes=self._totals, **self._lag.figures())
    values = {k: float(v) for k, v in distributed.local(newest).items()} if metrics else {}
    return snapshot.take(self.index, self.num_learners, self.intake, self.actors, values, **mark)

  def state(self, wait: bool = True) -> algorithms.TrainingState:
    """A host copy of the training state (without `wait`: of the newest update computed)."""
    return distributed.local(self.newest(wait)[0])


class Skipped:
  """Updates whose gradients or loss were not finite (the state kept as it was), each
  counted once its flag is read: reading it waits for its update."""

  def __init__(self):
    self.count, self._unread = 0, None

  def add(self, flag: jax.Array):
    """The newest update's flag; the one before it is counted now."""
    self.settle()
    self._unread = flag

  def settle(self, wait: bool = True):
    """Counts the newest update's flag, unless it is not computed and not `wait`."""
    if self._unread is not None and (wait or self._unread.is_ready()):
      self.count += float(distributed.local(self._unread)) > 0
      self._unread = None


class Lag:
  """Policy lag: the newest parameters' version less the version that acted, over the last
  batch and over every batch since the learner started."""

  def __init__(self):
    self.last, self._sum, self._batches = 0.0, 0.0, 0

  def add(self, version: int, infos):
    if infos:
      self.last = float(np.mean([version - i.params_version for i in infos]))
      self._sum += self.last
      self._batches += 1

  def figures(self) -> dict:
    mean = self._sum / self._batches if self._batches else 0.0
    return dict(policy_lag=self.last, policy_lag_mean=mean)


def _first_state(config: Config, design) -> tuple:
  """(restored from, state, [updates, frames, version], the checkpoint's record): learner
  0's, restored or new, which every learner takes."""
  state = design.algorithm.init(design.network.init(jax.random.PRNGKey(config.seed)))
  restored_from, state, counters, record = (
    saving.restore(config, state)
    if (config.checkpoint_dir and config.learner_index == 0)
    else (None, state, (0, 0, 1), {})
  )
  counters = np.array(counters, np.int64)
  state, counters = distributed.from_learner_0((jax.device_get(state), counters.view(np.uint8)))
  return restored_from, state, counters.view(np.int64).tolist(), record


def params_digest(params: dict) -> str:
  """SHA-256 of the parameters' bytes: equal on learners that hold equal parameters."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    digest.update(np.asarray(leaf).tobytes())
  return digest.hexdigest()
