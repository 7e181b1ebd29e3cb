"""Atari (ALE/Pong-v5, ale-py): frames/s a learner trains on with the shallow and the deep
network, and the bytes an unroll takes on the wire per frame.

Baselines, same run: the actor's own loop (environments and jitted policy, one process,
no learner); and the same unrolls sent with every observation's whole stack of 4 frames.
"""

from __future__ import annotations

import argparse

import jax

from benchmarks import common
from impala.actor import Session
from impala.config import Config
from impala.transport import codec

ENV = "ALE/Pong-v5"
TORSOS = ("shallow", "deep")
WARMUP, WINDOW, BASELINE = 10.0, 20.0, 6.0


def atari_config(torso: str) -> Config:
  return Config(
    env_id=ENV, torso=torso, num_envs=8, unroll_length=20, batch_size=2, max_abs_reward=1.0
  )


def bytes_per_frame(config: Config, unrolls: int = 5) -> tuple[float, float]:
  """(bytes per frame with each frame sent once, with whole stacks), over real unrolls."""
  actor = Session(config)
  actor.prepare(config)
  params = actor.rollout.network.init(jax.random.PRNGKey(0))
  sent = full = 0
  for _ in range(unrolls):
    unroll, info = actor.unroll(params, 1)
    sent += len(codec.encode_unroll(unroll, info, stacked_frames=True))
    full += len(codec.encode_unroll(unroll, info))
  frames = unrolls * config.unroll_length * config.num_envs
  return sent / frames, full / frames


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--torsos", nargs="+", default=TORSOS, choices=TORSOS)
  parser.add_argument("--window", type=float, default=WINDOW)
  args = parser.parse_args(argv)
  comparisons, details = [], []
  for torso in args.torsos:
    config = atari_config(torso)
    baseline = common.acting_frames_per_second(config, BASELINE)
    rates = common.learning_rates(config, 2, WARMUP, args.window)
    comparisons.append(
      common.comparison(
        f"{torso}: 2 actors x 8 envs, learning",
        "frames/s",
        rates["frames_per_second"],
        "env + policy loop, 8 envs, 1 process",
        baseline,
      )
    )
    details.append(dict(torso=torso, acting_frames_per_second=baseline, **rates))
  sent, full = bytes_per_frame(atari_config("shallow"))
  comparisons.append(
    common.comparison("bytes per frame, each frame sent once", "B", sent, "whole stacks of 4", full)
  )
  common.emit(
    "atari",
    dict(
      env_id=ENV,
      num_envs=8,
      unroll_length=20,
      batch_size=2,
      warmup_s=WARMUP,
      window_s=args.window,
      baseline_s=BASELINE,
      frames="agent steps (4 emulator frames each)",
    ),
    comparisons,
    details,
  )


if __name__ == "__main__":
  main()
