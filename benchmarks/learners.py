"""Several learners: frames/s and updates/s of 1 and 2 learner processes, and the
all-reduce's share of an update.

Throughput: the real programs, CartPole-v1, learner 0 started with 2 local actors (with
2 learners it sends one of them to learner 1), steady state read from learner 0's
progress.jsonl. Baseline, same run: 1 learner with the same 2 actors. On 2 cores no
speed-up is expected: the second learner competes for the same cores as everything else.

Updates: the seconds of one update of 2 learner processes (gloo over loopback), each with
the default batch, for the default network and for the IMPALA deep network on
Atari-shaped input, and of one all-reduce of as many floats as the network has
parameters (what every update adds). Baseline, same run: the same update of 1 learner
alone. On 2 cores the 2-learner update also pays for two processes computing at once.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import jax
import numpy as np
from jax.sharding import PartitionSpec as P

from benchmarks import common, learner_pipeline
from impala import distributed, environments, networks
from impala.config import Config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WARMUP, WINDOW = 5.0, 15.0
NETWORKS = {  # name -> (settings, updates timed)
  "mlp": (dict(), 300),
  "deep": (dict(env_id=common.ATARI_SHAPED, torso="deep", num_envs=4), 5),
}


def rates_from_progress(logdir: str, warmup: float) -> dict:
  """Frames/s and updates/s between the first progress record `warmup` s after the
  first update and the last record before the stop."""
  with open(os.path.join(logdir, "progress.jsonl")) as f:
    records = [json.loads(line) for line in f][:-1]  # the last one is the stop's
  first_update = next(r["seconds"] for r in records if r["updates"] > 0)
  window = [r for r in records if r["seconds"] >= first_update + warmup]
  a, b = window[0], window[-1]
  seconds = b["seconds"] - a["seconds"]
  return dict(
    frames_per_second=(b["frames"] - a["frames"]) / seconds,
    updates_per_second=(b["updates"] - a["updates"]) / seconds,
    window_s=seconds,
  )


def run_learners(count: int, seconds: float) -> dict:
  """Runs `count` learner processes for `seconds`; returns learner 0's steady rates."""
  coordinator = common.free_port()
  with tempfile.TemporaryDirectory() as logdir:
    learners = []
    for i in range(count):
      port = common.free_port()
      learners.append(
        subprocess.Popen(
          [
            sys.executable,
            "learner_server.py",
            "--num-learners",
            str(count),
            "--learner-index",
            str(i),
            "--coordinator-address",
            f"127.0.0.1:{coordinator}",
            "--port",
            str(port),
            "--advertise-address",
            f"127.0.0.1:{port}",
            "--local-actors",
            "2" if i == 0 else "0",
            "--max-seconds",
            str(seconds),
            "--log-every",
            "1",
          ]
          + (["--logdir", logdir] if i == 0 else []),
          cwd=ROOT,
          stdout=subprocess.DEVNULL,
          stderr=subprocess.DEVNULL,
        )
      )
    for learner in learners:
      if learner.wait(timeout=seconds + 120) != 0:  # stopped by --max-seconds
        raise RuntimeError(f"a learner exited with status {learner.returncode}")
    return rates_from_progress(logdir, WARMUP)


def update_seconds(count: int, network: str) -> dict:
  """Seconds per update and per all-reduce of `count` learner processes (the slower one)."""
  coordinator = common.free_port()
  workers = [
    subprocess.Popen(
      [
        sys.executable,
        "-m",
        "benchmarks.learners",
        "--worker",
        str(i),
        "--count",
        str(count),
        "--coordinator",
        str(coordinator),
        "--network",
        network,
      ],
      cwd=ROOT,
      stdout=subprocess.PIPE,
      text=True,
    )
    for i in range(count)
  ]
  outputs = [w.communicate(timeout=600)[0] for w in workers]
  if any(w.returncode for w in workers):
    raise RuntimeError("an update worker failed")
  timings = [json.loads(out.splitlines()[-1]) for out in outputs]  # after gloo's own lines
  return {key: max(t[key] for t in timings) for key in timings[0]}


def all_reduce_seconds(mesh, size: int, calls: int) -> float:
  """Seconds per all-reduce (sum) of `size` float32 across the mesh."""
  total = jax.jit(
    jax.shard_map(
      lambda x: jax.lax.psum(x, distributed.AXIS),
      mesh=mesh,
      in_specs=P(distributed.AXIS),
      out_specs=P(),
    )
  )
  x = distributed.per_device(mesh, np.ones(size, np.float32))
  return common.seconds_per_call(
    lambda: jax.block_until_ready(total(x)), min_seconds=0, warmup=3, calls=calls
  )


def worker(index: int, count: int, coordinator: int, network: str):
  """One learner process of an update timing: joins the job, prints seconds per update."""
  config = Config(
    num_learners=count,
    learner_index=index,
    coordinator_address=f"127.0.0.1:{coordinator}",
    **NETWORKS[network][0],
  )
  distributed.initialize(config)
  common.register_atari_shaped()
  updates = NETWORKS[network][1]
  spec = environments.describe(config.env_id)
  params = jax.eval_shape(networks.for_run(config, spec).init, jax.random.PRNGKey(0))
  size = sum(x.size for x in jax.tree.leaves(params))
  print(
    json.dumps(
      dict(
        update_s=learner_pipeline.seconds_per_update(config, updates),
        all_reduce_s=all_reduce_seconds(distributed.make_mesh(), size, 100),
        parameters=size,
      )
    )
  )


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--window", type=float, default=WINDOW)
  parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--coordinator", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--network", choices=NETWORKS, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker is not None:
    return worker(args.worker, args.count, args.coordinator, args.network)

  seconds = 10.0 + WARMUP + args.window  # about 10 s of start-up and compilation
  one, two = run_learners(1, seconds), run_learners(2, seconds)
  comparisons = [
    common.comparison(
      "2 learners, 2 actors",
      "frames/s",
      two["frames_per_second"],
      "1 learner, 2 actors",
      one["frames_per_second"],
    ),
    common.comparison(
      "2 learners, 2 actors",
      "updates/s",
      two["updates_per_second"],
      "1 learner, 2 actors",
      one["updates_per_second"],
    ),
  ]
  updates = {}
  for network in NETWORKS:
    alone, together = update_seconds(1, network), update_seconds(2, network)
    updates[network] = dict(one_learner=alone, two_learners=together)
    comparisons += [
      common.comparison(
        f"update of 2 learners, {network}",
        "ms",
        1000 * together["update_s"],
        f"update of 1 learner, {network}",
        1000 * alone["update_s"],
      ),
      common.comparison(
        f"all-reduce of {together['parameters']:,} floats, 2 learners",
        "ms",
        1000 * together["all_reduce_s"],
        f"update of 1 learner, {network}",
        1000 * alone["update_s"],
      ),
    ]
  defaults = Config()
  common.emit(
    "learners",
    dict(
      env_id=defaults.env_id,
      num_envs=defaults.num_envs,
      batch_size=defaults.batch_size,
      actors=2,
      warmup_s=WARMUP,
      window_s=args.window,
      networks={k: v[0] for k, v in NETWORKS.items()},
    ),
    comparisons,
    dict(one_learner=one, two_learners=two, updates=updates),
  )


if __name__ == "__main__":
  main()
