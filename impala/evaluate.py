"""Evaluates a checkpoint: N episodes in this process, greedy or sampled actions.

    python -m impala.evaluate RUN [--episodes 100] [--policy greedy|sampled] [--seed S]
                              [--video DIR]

RUN is a run directory, a checkpoint folder or file, or a final model (see
policy.newest). The environment and network come from it. Prints the mean, std, min and max
return as a line of text, then as a line of JSON. With --video DIR it also records one
more episode as an MP4 (gymnasium's RecordVideo; needs moviepy, and pygame for the
classic-control environments' rendering).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from gymnasium import error as gym_error

from impala import environments, progress
from impala.config import Config, ConfigError
from impala.policy import Policy, load_params


def episode_returns(policy: Policy, episodes: int, seed: int) -> np.ndarray:
  """The return of the first episode of each of `episodes` environments stepped together."""
  config = policy.config
  envs = environments.make_batch(config.env_id, episodes, config.env_kwargs, config.env_module)
  obs, _ = envs.reset(seed=seed)
  policy.reset()
  returns, done = np.zeros(episodes), np.zeros(episodes, bool)
  while not done.all():
    obs, reward, terminated, truncated, _ = envs.step(policy(obs))
    returns += np.where(done, 0.0, reward)
    done |= terminated | truncated
  envs.close()
  return returns


def evaluate(
  path: str,
  episodes: int = 100,
  greedy: bool = True,
  seed: int = 12345,
  params: str = "averaged",
) -> dict:
  """Plays `episodes` episodes with the policy of `path` (see policy.load): the mean, std,
  min and max return, and what was played."""
  config, values, found = load_params(path, params == "averaged")
  returns = episode_returns(Policy(config, values, greedy, seed), episodes, seed)
  return dict(
    checkpoint=found,
    env_id=config.env_id,
    params=params,
    policy="greedy" if greedy else "sampled",
    episodes=episodes,
    mean=float(returns.mean()),
    std=float(returns.std()),
    min=float(returns.min()),
    max=float(returns.max()),
  )


def record_episode(config: Config, params, greedy: bool, seed: int, directory: str) -> float:
  """Plays one episode in one environment, recorded as an MP4 in `directory`; its return."""
  import gymnasium as gym
  from gymnasium.wrappers import RecordVideo

  environments.load_modules(config.env_module)
  env = RecordVideo(
    gym.make(config.env_id, render_mode="rgb_array", **config.env_kwargs),
    directory,
    episode_trigger=lambda _: True,
    name_prefix="evaluation",
  )
  policy = Policy(config, params, greedy, seed)
  obs, _ = env.reset(seed=seed)
  total, done = 0.0, False
  while not done:
    obs, reward, terminated, truncated, _ = env.step(int(policy(obs)))
    total, done = total + float(reward), terminated or truncated
  env.close()
  return total


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description="Evaluate a checkpoint in-process.")
  parser.add_argument(
    "checkpoint", metavar="RUN", help="a run directory, a checkpoint folder or file, a model"
  )
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
  greedy = args.policy == "greedy"
  try:
    result = evaluate(args.checkpoint, args.episodes, greedy, args.seed, args.params)
  except (ConfigError, ValueError) as e:
    parser.exit(2, f"evaluate: error: {e}\n")
  if args.video:
    config, params, _ = load_params(result["checkpoint"], args.params == "averaged")
    try:
      result["video_return"] = record_episode(
        config, params, args.policy == "greedy", args.seed, args.video
      )
    except gym_error.DependencyNotInstalled as e:
      parser.exit(2, f"evaluate: error: --video: {e}\n")
    result["video_dir"] = args.video
  n = progress.number
  print(
    f"{result['env_id']}, {args.episodes} episodes, {args.params} params, {args.policy}: "
    f"return mean {n(result['mean'])} (std {n(result['std'])}, "
    f"min {n(result['min'])}, max {n(result['max'])}) from {result['checkpoint']}"
  )
  print(json.dumps(result))
  return 0


if __name__ == "__main__":
  sys.exit(main())
