"""What the benchmarks share: the machine's description, the JSON they print, timing loops,
a learner with local actors measured in steady state, and an Atari-shaped stand-in env.

Every benchmark prints one JSON object: {"benchmark", "machine", "parameters",
"comparisons": [{"name", "unit", "value", "baseline_name", "baseline", "ratio"}],
"details"}. `ratio` is value / baseline, both measured in the same run.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import socket
import tempfile
import time
from importlib import metadata

import gymnasium as gym
import jax
import numpy as np

from impala import learner as learner_lib
from impala.actor.rollout import Rollout
from impala.config import Config
from impala.learner import Learner, batcher, program

# The learner programs a benchmark starts keep their run directories in a temporary folder
# (they read IMPALA_RUNS), not in the repository's runs/.
os.environ.setdefault("IMPALA_RUNS", os.path.join(tempfile.gettempdir(), "impala-benchmark-runs"))

PACKAGES = (
  "jax",
  "jaxlib",
  "dm-haiku",
  "rlax",
  "optax",
  "numpy",
  "grpcio",
  "protobuf",
  "gymnasium",
)
ATARI_SHAPED = "AtariShaped-v0"  # 84x84x4 uint8 observations, 6 actions; never stepped


def machine() -> dict:
  cpu = next(
    (
      line.split(":", 1)[1].strip()
      for line in open("/proc/cpuinfo")
      if line.startswith("model name")
    ),
    platform.processor(),
  )
  return dict(
    date=datetime.date.today().isoformat(),
    cores=len(os.sched_getaffinity(0)),
    cpu=cpu,
    python=platform.python_version(),
    jax_backend=jax.default_backend(),
    versions={name: metadata.version(name) for name in PACKAGES},
  )


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def comparison(name: str, unit: str, value: float, baseline_name: str, baseline: float) -> dict:
  return dict(
    name=name,
    unit=unit,
    value=value,
    baseline_name=baseline_name,
    baseline=baseline,
    ratio=value / baseline,
  )


def emit(benchmark: str, parameters: dict, comparisons: list[dict], details=None):
  print(
    json.dumps(
      dict(
        benchmark=benchmark,
        machine=machine(),
        parameters=parameters,
        comparisons=comparisons,
        details=details or {},
      )
    ),
    flush=True,
  )


def seconds_per_call(fn, min_seconds: float = 0.5, warmup: int = 3, calls: int = 1) -> float:
  """Mean wall time of `fn()` over at least `calls` calls and `min_seconds` (after
  `warmup` calls). Collective calls must use `min_seconds=0`: all take part in each."""
  for _ in range(warmup):
    fn()
  done, start = 0, time.perf_counter()
  while done < calls or (time.perf_counter() - start) < min_seconds:
    fn()
    done += 1
  return (time.perf_counter() - start) / done


def register_atari_shaped():
  """An environment with Atari's observation and action spaces, so a learner can be built
  for Atari-sized trajectories without ale-py (the benchmarks never step it)."""

  class AtariShaped(gym.Env):
    observation_space = gym.spaces.Box(0, 255, (84, 84, 4), np.uint8)
    action_space = gym.spaces.Discrete(6)

  if ATARI_SHAPED not in gym.registry:
    gym.register(ATARI_SHAPED, entry_point=AtariShaped)


def acting_frames_per_second(config: Config, seconds: float) -> float:
  """Frames/s of the bare loop: the actor's environments and jitted policy, no learner.

  The best of three windows of `seconds` / 3 after a second of warm-up: a baseline is
  the fastest the loop goes, so a slow moment of the machine cannot flatter the ratio.
  """
  rollout = Rollout(config)
  params = jax.device_put(rollout.network.init(jax.random.PRNGKey(0)))
  warm = time.perf_counter() + 1.0  # compiles, then settles
  while time.perf_counter() < warm:
    rollout.unroll(params)
  rates = []
  for _ in range(3):
    frames, start = rollout.frames, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds / 3:
      rollout.unroll(params)
    rates.append((rollout.frames - frames) / elapsed)
  return max(rates)


def steady_rates(learner: Learner, warmup: float, window: float) -> dict:
  """Runs the learner's update loop here for `warmup`, then `window` seconds; returns the
  per-second rates of its frames, updates and accepted unrolls over the window."""
  marks = []
  for seconds in (warmup, window):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
      learner.step()
    s = learner.snapshot()
    marks.append((time.monotonic(), s.frames, s.updates, s.accepted))
  (t0, *first), (t1, *last) = marks
  return {
    name: (b - a) / (t1 - t0) for name, a, b in zip(("frames", "updates", "unrolls"), first, last)
  }


def learning_rates(config: Config, actors: int, warmup: float, window: float) -> dict:
  """Steady-state rates of a real learner (this process) with `actors` local actor processes.

  Counted from the learner's side: frames and updates the learner trained on during
  `window` seconds, starting `warmup` seconds after its first update.
  """
  batcher.keep_freed_memory()
  parts = learner_lib.build(config)
  parts.start()
  learner = parts.learner
  grpc_server, port, _ = parts.serve(0)
  children = program.start_local_actors(actors, port, learner.run_id)
  try:
    learner.compile()
    deadline = time.monotonic() + 120
    while not learner.step(timeout=1.0):
      if time.monotonic() > deadline:
        raise RuntimeError("no update within 120 s: did the actors start?")
    rates = steady_rates(learner, warmup, window)
    s = learner.snapshot()
    return dict(
      frames_per_second=rates["frames"],
      updates_per_second=rates["updates"],
      policy_lag=s.policy_lag,
      return_mean_100=s.return_mean_100,
    )
  finally:
    program.stop_processes(children)
    grpc_server.stop(grace=None).wait()
    parts.close()
