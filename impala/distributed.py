"""Several learner processes as one JAX job: start-up, the mesh, and arrays in and out of it.

K learners form one `jax.distributed` job. Every update runs on a mesh of all their
devices: each device holds its learner's part of the batch, gradients are summed
across the mesh (gloo on CPU, NCCL on GPU), and the parameters are replicated, so
every learner holds the same ones. With K = 1 the mesh is this process's devices and
nothing leaves the process.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from impala import specs
from impala.config import Config

AXIS = "learners"
# Unroll fields are time-major [T(+1), B, ...]: split along B; core states [B, H] along B.
BATCH_SPEC = specs.Unroll(*([P(None, AXIS)] * 6), P(AXIS))


def initialize(config: Config):
  """Joins the job of `config.num_learners` learners (no-op for one); call before any other
  JAX call. Waits for all learners to start; the coordinator is learner 0."""
  if config.num_learners > 1:
    jax.distributed.initialize(
      coordinator_address=config.coordinator_address,
      num_processes=config.num_learners,
      process_id=config.learner_index,
    )


def make_mesh() -> Mesh:
  return Mesh(np.array(jax.devices()), (AXIS,))


def shard_batch(mesh: Mesh, batch: specs.Unroll) -> specs.Unroll:
  """This learner's batch as its part of the global batch (split over its devices)."""
  if mesh.size == 1:  # one learner on one device: one transfer of it all, twice as fast
    return jax.device_put(batch, mesh.devices.flat[0])
  put = jax.make_array_from_process_local_data
  time_major, batch_major = (NamedSharding(mesh, spec) for spec in (BATCH_SPEC[0], BATCH_SPEC[-1]))
  return specs.Unroll(
    *(put(time_major, x) for x in batch[:-1]), tuple(put(batch_major, x) for x in batch.core_state)
  )


def per_device(mesh: Mesh, row: np.ndarray) -> jax.Array:
  """A [devices, C] array holding this learner's `row` on each of its devices."""
  rows = np.tile(row, (len(mesh.local_devices), 1))
  return jax.make_array_from_process_local_data(NamedSharding(mesh, P(AXIS)), rows)


def replicate(mesh: Mesh, tree):
  """The same host values on every device of the mesh (every learner passes the same)."""
  sharding = NamedSharding(mesh, P())
  return jax.tree.map(
    lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree
  )


def local(tree):
  """Numpy copies of replicated arrays, read from this learner's first device."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def from_learner_0(tree):
  """Learner 0's values of `tree` (host arrays), on every learner."""
  if jax.process_count() == 1:
    return tree
  return multihost_utils.broadcast_one_to_all(tree)


def gather_text(text: str, size: int = 256) -> list[str]:
  """Every learner's `text` (at most `size` bytes of UTF-8), in learner order."""
  raw = text.encode()
  if len(raw) > size:
    raise ValueError(f"{text!r} is longer than {size} bytes")
  if jax.process_count() == 1:
    return [text]
  mine = np.frombuffer(raw.ljust(size, b"\0"), np.uint8)
  return [bytes(row).rstrip(b"\0").decode() for row in multihost_utils.process_allgather(mine)]


class Control(NamedTuple):
  """What each learner adds to every update. The update returns the sum over learners,
  so every learner takes the same decisions (versions, frames, stopping) after it."""

  weight: float = 0.0  # 1 when this learner brought a batch
  return_sum: float = 0.0  # of its last 100 episode returns
  return_count: float = 0.0
  terminate: float = 0.0  # its votes to stop
  out_of_time: float = 0.0

  def return_mean(self) -> float:
    """Mean of the returns the learners brought; NaN when there are none."""
    return self.return_sum / self.return_count if self.return_count else math.nan

  def row(self) -> np.ndarray:
    return np.array(self, np.float32)

  @classmethod
  def of_row(cls, row) -> Control:
    return cls(*(float(x) for x in row))


WITH_A_BATCH = Control(weight=1.0)  # what a learner alone brings to each of its updates
WEIGHT = Control._fields.index("weight")
