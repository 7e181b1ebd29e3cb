"""Learner-side inference against actor-side inference, each mode measured in the same run:
`python -m benchmarks.inference [--skip-learning]`.

- CartPole-v1 (to 475) and MinAtar Breakout (to 10) time to target: the real learner
  program with 2 local actors, `--inference learner` against `--inference actor`;
- Atari (ALE/Pong-v5) frames/s trained on with the shallow and the deep network, 2 actors;
- the latency of one inference round trip under load (an actor's send of its
  observations to the actions' arrival, while 2 other actors keep the learner busy),
  against the policy step inside an actor, for CartPole and Atari's deep network.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import threading
import time

import jax

from benchmarks import atari, common
from impala.actor import Session
from impala.actor.rollout import Rollout
from impala.config import Config

MODES = ("learner", "actor")
TARGETS = {
  "CartPole-v1": ["--stop-at-return", "475", "--max-seconds", "300"],
  "MinAtar/Breakout-v1": ["--env-id", "MinAtar/Breakout-v1", "--stop-at-return", "10"]
  + ["--max-seconds", "600"],
}
WARMUP, WINDOW, PROBE = 10.0, 20.0, 10.0


def time_to_target(flags: list[str], inference: str) -> dict:
  """The learner program's summary (2 local actors, seed 1) in one mode."""
  done = subprocess.run(
    [sys.executable, "learner_server.py", "--local-actors", "2", "--seed", "1", *flags]
    + ["--inference", inference, "--port", str(common.free_port()), "--log-every", "30"],
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    text=True,
  )
  summary = json.loads(done.stdout.strip().splitlines()[-1])
  keep = ("seconds", "frames", "return_mean_100", "reached_target", "policy_lag_mean")
  return {k: summary[k] for k in keep}


def round_trip(config: Config, seconds: float) -> float:
  """Seconds of one inference round trip of an actor in this process, against a learner
  program with 2 local actors of its own (learner-side inference), in steady state."""
  port = common.free_port()
  learner = subprocess.Popen(
    [sys.executable, "learner_server.py", "--local-actors", "2", "--port", str(port)]
    + ["--inference", "learner", "--env-id", config.env_id, "--torso", config.torso]
    + ["--num-envs", str(config.num_envs), "--max-abs-reward", "1"],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  stop = threading.Event()
  actor = Session(Config(grpc_host=f"127.0.0.1:{port}", actor_id="probe", rpc_timeout=60.0))
  thread = threading.Thread(target=actor.run, args=(stop,), daemon=True)
  thread.start()
  try:
    deadline = time.monotonic() + 180
    while actor.counters()["frames"] < 20 * config.num_envs:  # connected, compiled
      if time.monotonic() > deadline or not thread.is_alive():
        raise RuntimeError("the probe actor took no steps: did the learner start?")
      time.sleep(0.5)  # polling the probe's counters, with a deadline
    first = actor.counters()
    time.sleep(seconds)  # the measured window
    last = actor.counters()
  finally:
    stop.set()
    thread.join(10)
    learner.terminate()
    learner.wait(30)
  steps = (last["frames"] - first["frames"]) / config.num_envs
  return (last["inference_seconds"] - first["inference_seconds"]) / steps


def policy_step(config: Config, seconds: float) -> float:
  """Seconds of the jitted policy step inside an actor (its environments included in the
  loop, not in the figure)."""
  rollout = Rollout(config)
  params = jax.device_put(rollout.network.init(jax.random.PRNGKey(0)))
  rollout.unroll(params)  # compiles
  spent, steps, end = rollout.inference_seconds, rollout.frames, time.monotonic() + seconds
  while time.monotonic() < end:
    rollout.unroll(params)
  return (rollout.inference_seconds - spent) / ((rollout.frames - steps) / config.num_envs)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--skip-learning", action="store_true", help="frames/s and latency only")
  args = parser.parse_args(argv)
  comparisons, details = [], {}
  if not args.skip_learning:
    for env_id, flags in TARGETS.items():
      runs = {mode: time_to_target(flags, mode) for mode in MODES}
      details[env_id] = runs
      comparisons.append(
        common.comparison(
          f"{env_id} to {flags[flags.index('--stop-at-return') + 1]}, learner-side inference",
          "s",
          runs["learner"]["seconds"],
          "actor-side inference",
          runs["actor"]["seconds"],
        )
      )
  for torso in atari.TORSOS:
    rates = {}
    for mode in MODES:
      config = dataclasses.replace(atari.atari_config(torso), inference=mode)
      rates[mode] = common.learning_rates(config, 2, WARMUP, WINDOW)
    details[f"atari-{torso}"] = rates
    comparisons.append(
      common.comparison(
        f"Pong {torso}: 2 actors x 8 envs, learner-side inference",
        "frames/s",
        rates["learner"]["frames_per_second"],
        "actor-side inference",
        rates["actor"]["frames_per_second"],
      )
    )
  for name, config in (
    ("CartPole, 64 envs", Config()),
    ("Pong deep, 8 envs", atari.atari_config("deep")),
  ):
    trip, step = round_trip(config, PROBE), policy_step(config, PROBE / 2)
    details[f"latency {name}"] = dict(round_trip_s=trip, policy_step_s=step)
    comparisons.append(
      common.comparison(
        f"{name}: inference round trip, learner busy with 2 more actors",
        "ms",
        trip * 1e3,
        "policy step inside the actor",
        step * 1e3,
      )
    )
  common.emit(
    "inference",
    dict(local_actors=2, warmup_s=WARMUP, window_s=WINDOW, probe_s=PROBE, seed=1),
    comparisons,
    details,
  )


if __name__ == "__main__":
  main()
