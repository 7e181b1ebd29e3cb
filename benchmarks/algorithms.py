"""A3C against IMPALA: time to the CartPole target on this machine, the README's first
command with `--algorithm a3c` and without, the same seeds, from process start to exit.

Baseline, same run: IMPALA (`--algorithm impala`), the same actors and seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from benchmarks import common

SEEDS = (1, 2, 3, 4, 5)
COMMAND = (
  "learner_server.py",
  "--local-actors",
  "2",
  "--stop-at-return",
  "475",
  "--max-seconds",
  "300",
)


def time_to_target(algorithm: str, seed: int) -> dict:
  started = time.perf_counter()
  done = subprocess.run(
    [
      sys.executable,
      *COMMAND,
      "--algorithm",
      algorithm,
      "--seed",
      str(seed),
      "--port",
      str(common.free_port()),
    ],
    capture_output=True,
    text=True,
    timeout=400,
  )
  seconds = time.perf_counter() - started
  summary = json.loads(done.stdout.strip().splitlines()[-1])
  return dict(
    algorithm=algorithm,
    seed=seed,
    seconds=seconds,
    reached_target=summary["reached_target"],
    frames=summary["frames"],
    updates=summary["updates"],
  )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
  args = parser.parse_args(argv)
  # Interleaved, so that a slow spell of the machine hits both.
  runs = [time_to_target(algorithm, seed) for seed in args.seeds for algorithm in ("impala", "a3c")]
  medians = {
    algorithm: {
      key: statistics.median(r[key] for r in runs if r["algorithm"] == algorithm)
      for key in ("seconds", "frames", "updates")
    }
    for algorithm in ("impala", "a3c")
  }  # a run that missed counts with its cap
  n = len(args.seeds)
  comparisons = [
    common.comparison(
      f"a3c: time to CartPole target, median of {n} seeds",
      "s",
      medians["a3c"]["seconds"],
      "impala, same seeds",
      medians["impala"]["seconds"],
    )
  ]
  comparisons += [
    common.comparison(
      f"a3c: {key} to target, median",
      key,
      medians["a3c"][key],
      "impala, same seeds",
      medians["impala"][key],
    )
    for key in ("frames", "updates")
  ]
  common.emit("algorithms", dict(command=" ".join(COMMAND), seeds=args.seeds), comparisons, runs)


if __name__ == "__main__":
  main()
