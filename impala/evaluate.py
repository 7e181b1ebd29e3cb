"""Evaluates a checkpoint: N episodes in this process, greedy or sampled actions.

    python -m impala.evaluate CHECKPOINT [--episodes 100] [--policy greedy|sampled] [--seed S]
                              [--video DIR]

CHECKPOINT is a checkpoint file or a --checkpoint-dir (its newest readable checkpoint).
The environment and network come from the checkpoint. Prints the mean, std, min and max
return as a line of text, then as a line of JSON. With --video DIR it also records one
more episode as an MP4 (gymnasium's RecordVideo; needs moviepy, and pygame for the
classic-control environments' rendering).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import numpy as np
from gymnasium import error as gym_error

from impala import algorithms, checkpoint, environments, networks
from impala.actor.rollout import make_policy
from impala.config import Config, ConfigError


def newest_readable(path: str) -> tuple[str, dict]:
  candidates = [path] if os.path.isfile(path) else list(reversed(checkpoint.checkpoints(path)))
  for candidate in candidates:
    try:
      return candidate, checkpoint.record_of(candidate)
    except ValueError:
      continue
  raise ConfigError(f"no readable checkpoint at {path!r}")


def load_params(path: str, averaged: bool = True) -> tuple[Config, dict, str]:
  """(run config, params, checkpoint path) of the checkpoint at `path`: the moving average
  of the parameters, or (`averaged=False`) the newest ones."""
  path, record = newest_readable(path)
  config = Config(**record["config"])
  network = networks.for_run(config, environments.describe(config.env_id, config.env_kwargs))
  like = algorithms.initial_state(
    network.init(jax.random.PRNGKey(0)), algorithms.make_optimizer(config)
  )
  state, _ = checkpoint.load(path, like)
  return config, state.average_params if averaged else state.params, path


def episode_returns(config: Config, params, episodes: int, greedy: bool, seed: int) -> np.ndarray:
  """The return of the first episode of each of `episodes` environments stepped together."""
  envs = environments.make(config.env_id, episodes, config.env_kwargs)
  network = networks.for_run(config, environments.spec_of(envs))
  policy = make_policy(network, greedy)

  obs, _ = envs.reset(seed=seed)
  key, core = jax.random.PRNGKey(seed), network.initial_state(episodes)
  first = np.ones(episodes, bool)
  returns, done = np.zeros(episodes), np.zeros(episodes, bool)
  while not done.all():
    key, action, _, core = policy(params, key, obs, first, core)
    obs, reward, terminated, truncated, _ = envs.step(np.asarray(action))
    returns += np.where(done, 0.0, reward)
    done |= terminated | truncated
    first = np.zeros(episodes, bool)
  envs.close()
  return returns


def record_episode(config: Config, params, greedy: bool, seed: int, directory: str) -> float:
  """Plays one episode in one environment, recorded as an MP4 in `directory`; its return."""
  import gymnasium as gym
  from gymnasium.wrappers import RecordVideo

  env = RecordVideo(
    gym.make(config.env_id, render_mode="rgb_array", **config.env_kwargs),
    directory,
    episode_trigger=lambda _: True,
    name_prefix="evaluation",
  )
  network = networks.for_run(config, environments.describe(config.env_id, config.env_kwargs))
  policy = make_policy(network, greedy)
  obs, _ = env.reset(seed=seed)
  key, core, first, total, done = (
    jax.random.PRNGKey(seed),
    network.initial_state(1),
    True,
    0.0,
    False,
  )
  while not done:
    key, action, _, core = policy(params, key, obs[None], np.array([first]), core)
    obs, reward, terminated, truncated, _ = env.step(int(action[0]))
    total, first, done = total + float(reward), False, terminated or truncated
  env.close()
  return total


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description="Evaluate a checkpoint in-process.")
  parser.add_argument("checkpoint", help="a checkpoint file or a --checkpoint-dir")
  parser.add_argument("--episodes", type=int, default=100)
  parser.add_argument("--policy", choices=("greedy", "sampled"), default="greedy")
  parser.add_argument("--seed", type=int, default=12345)
  parser.add_argument(
    "--params",
    choices=("averaged", "newest"),
    default="averaged",
    help="the moving average of the parameters (steadier), or the newest",
  )
  parser.add_argument("--video", metavar="DIR", help="also record one episode as an MP4 here")
  args = parser.parse_args(argv)
  if args.episodes < 1:
    parser.exit(2, f"evaluate: error: bad --episodes {args.episodes} (must be >= 1)\n")
  try:
    config, params, path = load_params(args.checkpoint, args.params == "averaged")
  except (ConfigError, ValueError) as e:
    parser.exit(2, f"evaluate: error: {e}\n")
  returns = episode_returns(config, params, args.episodes, args.policy == "greedy", args.seed)
  result = dict(
    checkpoint=path,
    env_id=config.env_id,
    params=args.params,
    policy=args.policy,
    episodes=args.episodes,
    mean=float(returns.mean()),
    std=float(returns.std()),
    min=float(returns.min()),
    max=float(returns.max()),
  )
  if args.video:
    try:
      result["video_return"] = record_episode(
        config, params, args.policy == "greedy", args.seed, args.video
      )
    except gym_error.DependencyNotInstalled as e:
      parser.exit(2, f"evaluate: error: --video: {e}\n")
    result["video_dir"] = args.video
  print(
    f"{config.env_id}, {args.episodes} episodes, {args.params} params, {args.policy}: "
    f"return mean {result['mean']:.1f} (std {result['std']:.1f}, "
    f"min {result['min']:.1f}, max {result['max']:.1f})"
  )
  print(json.dumps(result))
  return 0


if __name__ == "__main__":
  sys.exit(main())
