"""Learning. What each task reaches, against frames and wall time, with each family's
preset and nothing else but the stop conditions: `python -m benchmarks.learning
[TASK ...] [--seeds 1 2 3] [--out DIR]`.

Each run is the real learner program with 2 local actors, its run directory kept under
DIR/<task>-seed<N> (progress.jsonl, TensorBoard events, config.toml); DIR/<task>.png
draws the seeds' curves and DIR/minatar.png the MinAtar games together. Baselines, same
run: a task's sibling (APPO against IMPALA, the LSTM against none), or a uniformly
random policy on the task's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import numpy as np

from benchmarks import common
from impala import environments, plot

MINATAR = ("Breakout", "SpaceInvaders", "Asterix", "Freeway", "Seaquest")
POPGYM = "popgym-PositionOnlyCartPoleEasy-v0"
# name: (flags, sibling to compare with or None for a random policy)
TASKS = {
  "cartpole": (["--stop-at-return", "475", "--max-seconds", "300"], None),
  "cartpole-appo": (
    ["--stop-at-return", "475", "--max-seconds", "300", "--algorithm", "appo"],
    "cartpole",
  ),
  "cartpole-lstm": (["--stop-at-return", "475", "--max-seconds", "300", "--lstm-size", "64"], None),
  "cartpole-2-learners": (["--stop-at-return", "475", "--max-seconds", "300"], "cartpole"),
  "catch": (["--env-id", "bsuite/catch", "--stop-at-return", "0.9", "--max-seconds", "300"], None),
  **{
    f"minatar-{game.lower()}": (
      ["--env-id", f"MinAtar/{game}-v1", "--max-frames", "10000000", "--max-seconds", "1200"],
      None,
    )
    for game in MINATAR
  },
  "popgym-lstm": (
    ["--env-id", POPGYM, "--max-frames", "20000000", "--stop-at-return", "0.9"]
    + ["--max-seconds", "300"],
    None,
  ),
  "popgym-no-lstm": (
    ["--env-id", POPGYM, "--max-frames", "20000000", "--max-seconds", "300", "--lstm-size", "0"],
    "popgym-lstm",
  ),
}
DEFAULT = ("cartpole", "cartpole-appo", "catch", "minatar-breakout", "popgym-lstm")


def run(task: str, seed: int, logdir: str) -> dict:
  """The summary of one run (of learner 0), with its curve (frames, seconds, return) from
  progress.jsonl. `*-2-learners`: two learner processes of one job, 2 local actors each."""
  flags = TASKS[task][0]
  argv = [sys.executable, "learner_server.py", "--local-actors", "2", "--seed", str(seed), *flags]
  learners = 2 if task.endswith("-2-learners") else 1
  ports, coordinator = [common.free_port() for _ in range(learners)], common.free_port()

  def learner(i: int) -> list[str]:
    if learners == 1:
      return argv + ["--port", str(ports[0])]
    return argv + [
      *("--num-learners", "2", "--learner-index", str(i), "--port", str(ports[i])),
      *("--coordinator-address", f"127.0.0.1:{coordinator}"),
      *("--advertise-address", f"127.0.0.1:{ports[i]}"),
    ]

  others = [
    subprocess.Popen(learner(i), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for i in range(1, learners)
  ]
  try:
    done = subprocess.run(
      learner(0) + ["--run-dir", logdir, "--log-every", "10"],
      stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL,
      text=True,
    )
  finally:
    for other in others:
      other.wait(timeout=60)
  summary = json.loads(done.stdout.strip().splitlines()[-1])
  records = plot.read(logdir)
  curve = [(r["frames"], r["seconds"], r["return_mean_100"]) for r in records]
  return dict(
    task=task,
    seed=seed,
    frames=summary["frames"],
    seconds=summary["seconds"],
    updates=summary["updates"],
    return_mean_100=summary["return_mean_100"],
    reached_target=summary["reached_target"],
    policy_lag_mean=summary["policy_lag_mean"],
    curve=curve,
  )


def random_return(env_id: str, episodes: int = 100, seed: int = 0) -> float:
  """Mean return of a uniformly random policy over `episodes` episodes."""
  envs = environments.make_batch(env_id, 16)
  rng = np.random.default_rng(seed)
  envs.reset(seed=seed)
  returns, running, done = [], np.zeros(16), np.zeros(16, bool)
  while len(returns) < episodes:
    actions = rng.integers(0, envs.single_action_space.n, 16)
    _, reward, terminated, truncated, _ = envs.step(actions)
    running += np.where(done, 0.0, reward)  # the step after an end is the reset step
    done = terminated | truncated
    returns += running[done].tolist()
    running[done] = 0.0
  envs.close()
  return float(np.mean(returns[:episodes]))


def draw(logdirs: list[str], name: str):
  """The curves of the runs in `logdirs`, as DIR/name (stdout is the JSON's)."""
  runs = {os.path.basename(d): [plot.read(d)] for d in logdirs}
  plot.draw(runs, os.path.join(os.path.dirname(logdirs[0]), name), 1200, 1000)


def median(results: list[dict], key: str) -> float:
  return statistics.median(r[key] for r in results)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("tasks", nargs="*", default=DEFAULT, choices=sorted(TASKS), metavar="TASK")
  parser.add_argument("--seeds", type=int, nargs="+", default=[1])
  parser.add_argument("--out", default="learning-runs")
  args = parser.parse_args(argv)
  results = {task: [] for task in args.tasks}
  for seed in args.seeds:  # seeds outermost: tasks compared in the same stretch of time
    for task in args.tasks:
      logdir = os.path.join(args.out, f"{task}-seed{seed}")
      results[task].append(run(task, seed, logdir))
      print(
        f"{task} seed {seed}: {json.dumps(results[task][-1] | {'curve': '...'})}",
        file=sys.stderr,
        flush=True,
      )
  comparisons = []
  for task, runs in results.items():
    sibling = TASKS[task][1]
    if sibling in results:
      # What the sibling is compared on: the return it reaches, or what reaching it took.
      key, key_unit = (
        ("return_mean_100", "return")
        if task.startswith("popgym")
        else ("updates", "updates")
        if task.endswith("-2-learners")
        else ("frames", "frames")
      )
      for unit_key, unit in ((key, key_unit), ("seconds", "s")):
        comparisons.append(
          common.comparison(
            f"{task}: median {unit_key}",
            unit,
            median(runs, unit_key),
            f"{sibling}: median {unit_key}",
            median(results[sibling], unit_key),
          )
        )
    elif task.startswith(("minatar", "popgym")):
      env_id = TASKS[task][0][TASKS[task][0].index("--env-id") + 1]
      comparisons.append(
        common.comparison(
          f"{task}: median return",
          "return",
          median(runs, "return_mean_100"),
          "random policy: return",
          random_return(env_id),
        )
      )
    draw([os.path.join(args.out, f"{task}-seed{r['seed']}") for r in runs], f"{task}.png")
  games = [os.path.join(args.out, f"minatar-{g.lower()}-seed{args.seeds[0]}") for g in MINATAR]
  games = [g for g in games if os.path.isdir(g)]
  if len(games) > 1:
    draw(games, "minatar.png")
  common.emit(
    "learning",
    dict(tasks={t: TASKS[t][0] for t in args.tasks}, seeds=args.seeds, local_actors=2),
    comparisons,
    {t: runs for t, runs in results.items()},
  )


if __name__ == "__main__":
  main()
