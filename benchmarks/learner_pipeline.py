"""Item 5: learner pipeline. Updates/s of the learner fed over gRPC, by real actors (2 local
actor processes, the default setup) and by synthetic actors that send ready-made
CartPole unrolls as fast as the learner takes them.

Baseline, same run: the jitted `sgd_step` alone, on a batch already in memory.
"""

from __future__ import annotations

import time

import jax

from benchmarks import common, ingest
from impala import environments, learning
from impala.config import Config

ACTORS, WARMUP, WINDOW = 2, 3.0, 6.0


def sgd_steps_per_second(config: Config, seconds: float) -> float:
  spec = environments.describe(config.env_id, config.env_kwargs)
  network = learning.make_network(config, spec)
  optimizer = learning.make_optimizer(config)
  sgd_step = learning.make_sgd_step(learning.make_loss(config, network), optimizer)
  params = network.init(jax.random.PRNGKey(0))
  state = learning.initial_state(params, optimizer)
  batch = jax.device_put(learning.dummy_batch(config, spec, network))
  state = jax.block_until_ready(sgd_step(state, batch))[0]  # compiles
  steps, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    state, _ = sgd_step(state, batch)
    steps += 1
  jax.block_until_ready(state)
  return steps / (time.perf_counter() - start)


def main():
  config = Config()
  baseline = sgd_steps_per_second(config, 3.0)
  actors = common.learning_rates(config, ACTORS, WARMUP, WINDOW)
  template = ingest.make_unroll(config, environments.describe(config.env_id))
  unrolls, updates = ingest.grpc_ingest(config, template, train=True)
  comparisons = [
      common.comparison(f"fed by {ACTORS} local actors", "updates/s",
                        actors["updates_per_second"], "sgd_step alone", baseline),
      common.comparison(f"fed by {ingest.SENDERS} synthetic actors", "updates/s", updates,
                        "sgd_step alone", baseline),
  ]
  common.emit("learner_pipeline",
              dict(env_id=config.env_id, num_envs=config.num_envs,
                   unroll_length=config.unroll_length, batch_size=config.batch_size,
                   frames_per_update=config.unroll_length * config.num_envs * config.batch_size,
                   torso=config.torso, hidden_sizes=config.hidden_sizes, warmup_s=WARMUP,
                   window_s=WINDOW),
              comparisons, dict(actors=actors, synthetic_unrolls_per_second=unrolls))


if __name__ == "__main__":
  main()
