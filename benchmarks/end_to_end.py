"""End to end. Steady-state frames/s a real learner trains on, CartPole-v1, with
1, 2 and 4 local actor processes and several environments per actor, learning on.

Baseline, same run: the same environments stepped with the same jitted policy in one
process (the actor's own loop), no learner, no gRPC.
"""

from __future__ import annotations

import argparse

from benchmarks import common
from impala.config import Config

ACTORS = (1, 2, 4)
NUM_ENVS = (32, 64, 128)
WARMUP, WINDOW, BASELINE = 3.0, 6.0, 3.0


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--actors", type=int, nargs="+", default=ACTORS)
  parser.add_argument("--num-envs", type=int, nargs="+", default=NUM_ENVS)
  parser.add_argument("--window", type=float, default=WINDOW)
  args = parser.parse_args(argv)
  comparisons, details = [], []
  for num_envs in args.num_envs:
    config = Config(num_envs=num_envs)
    baseline = common.acting_frames_per_second(config, BASELINE)
    for actors in args.actors:
      rates = common.learning_rates(config, actors, WARMUP, args.window)
      comparisons.append(
        common.comparison(
          f"{actors} actors x {num_envs} envs",
          "frames/s",
          rates["frames_per_second"],
          f"env + policy loop, {num_envs} envs, 1 process",
          baseline,
        )
      )
      details.append(dict(actors=actors, num_envs=num_envs, **rates))
  defaults = Config()
  common.emit(
    "end_to_end",
    dict(
      env_id=defaults.env_id,
      unroll_length=defaults.unroll_length,
      batch_size=defaults.batch_size,
      torso=defaults.torso,
      hidden_sizes=defaults.hidden_sizes,
      warmup_s=WARMUP,
      window_s=args.window,
      baseline_s=BASELINE,
    ),
    comparisons,
    details,
  )


if __name__ == "__main__":
  main()
