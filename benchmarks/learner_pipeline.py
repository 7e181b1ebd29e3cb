"""Learner pipeline. Updates/s of the learner fed over gRPC, by real actors (2 local
actor processes, the default setup) and by synthetic actors that send ready-made
CartPole unrolls as fast as the learner takes them.

Baseline, same run: the jitted `sgd_step` alone, on a batch already in memory.
"""

from __future__ import annotations

import time

import jax

from benchmarks import common, ingest
from impala import algorithms, distributed, environments, networks, specs
from impala.config import Config

ACTORS, WARMUP, WINDOW = 2, 3.0, 6.0


def seconds_per_update(config: Config, updates: int) -> float:
  """Mean seconds of the jitted `sgd_step` on a batch already on the device(s), over
  `updates` calls. Over the mesh of all learners when run in each of several learner
  processes (all run the same count: the updates are collective)."""
  spec = environments.describe(config.env_id, config.env_kwargs)
  network = networks.for_run(config, spec)
  optimizer = algorithms.make_optimizer(config)
  mesh = distributed.make_mesh()
  sgd_step = algorithms.make_sgd_step(
    algorithms.loss_for_run(config, network.unroll), optimizer, mesh
  )
  params = distributed.local(network.init(jax.random.PRNGKey(0)))
  state = distributed.replicate(mesh, algorithms.initial_state(params, optimizer))
  zeros = specs.UnrollSpec.for_run(config, spec).zeros(config.num_envs * config.batch_size)
  batch = distributed.shard_batch(mesh, zeros)
  control = distributed.per_device(mesh, distributed.WITH_A_BATCH.row())
  state = jax.block_until_ready(sgd_step(state, batch, control))[0]  # compiles
  start = time.perf_counter()
  for _ in range(updates):
    state, _, _ = sgd_step(state, batch, control)
  jax.block_until_ready(state)
  return (time.perf_counter() - start) / updates


def main():
  config = Config()
  baseline = 1.0 / seconds_per_update(config, 1000)
  actors = common.learning_rates(config, ACTORS, WARMUP, WINDOW)
  template = ingest.make_unroll(config)
  unrolls, updates = ingest.grpc_ingest(config, template, train=True)
  comparisons = [
    common.comparison(
      f"fed by {ACTORS} local actors",
      "updates/s",
      actors["updates_per_second"],
      "sgd_step alone",
      baseline,
    ),
    common.comparison(
      f"fed by {ingest.SENDERS} synthetic actors", "updates/s", updates, "sgd_step alone", baseline
    ),
  ]
  common.emit(
    "learner_pipeline",
    dict(
      env_id=config.env_id,
      num_envs=config.num_envs,
      unroll_length=config.unroll_length,
      batch_size=config.batch_size,
      frames_per_update=config.unroll_length * config.num_envs * config.batch_size,
      torso=config.torso,
      hidden_sizes=config.hidden_sizes,
      warmup_s=WARMUP,
      window_s=WINDOW,
    ),
    comparisons,
    dict(actors=actors, synthetic_unrolls_per_second=unrolls),
  )


if __name__ == "__main__":
  main()
