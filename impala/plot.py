"""Draws runs' learning curves as a PNG, several runs compared on one figure.

    python -m impala.plot RUN [RUN ...] [-o curves.png] [--size 1200x1000]

A RUN is a run directory (or any folder with a progress.jsonl), a glob of them
("runs/CartPole-*"), or a folder of them (runs/). Runs whose settings differ only in
their seed are one group, drawn as its mean with a band of one standard deviation;
groups are named by the settings in which they differ. Panels: return (mean of the last
100 episodes) against frames and against wall time, frames per second, policy lag, the
loss and the entropy. The figure goes next to the runs unless `-o` says where: into the
run directory for one run, else into the folder that holds them all.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import warnings

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from impala import rundir

# noqa: E402
from impala.config import HPARAMS, ConfigError, files  # noqa: E402

DPI = 100
PANELS = (  # (x, y, x label, y label)
  ("frames", "return_mean_100", "frames (millions)", "return (mean of 100)"),
  ("seconds", "return_mean_100", "wall time (s)", "return (mean of 100)"),
  ("frames", "frames_per_second", "frames (millions)", "frames / s"),
  ("frames", "policy_lag", "frames (millions)", "policy lag (updates)"),
  ("frames", "loss", "frames (millions)", "loss"),
  ("frames", "entropy", "frames (millions)", "entropy"),
)


def read(logdir: str) -> list[dict]:
  """The progress records of a run; a figure not known yet (null) is NaN."""
  path = os.path.join(logdir, "progress.jsonl")
  with open(path) as f:
    records = [json.loads(line) for line in f if line.strip()]
  return [{k: math.nan if v is None else v for k, v in r.items()} for r in records]


def find(paths: list[str]) -> list[str]:
  """The run directories that `paths` name: runs, globs of runs, folders of runs."""
  found = []
  for path in paths:
    for match in sorted(glob.glob(path)) or [path]:
      if os.path.isfile(os.path.join(match, "progress.jsonl")) or not os.path.isdir(match):
        found.append(match)
      else:
        found += sorted(
          os.path.join(match, d)
          for d in os.listdir(match)
          if os.path.isfile(os.path.join(match, d, "progress.jsonl"))
        )
  return list(dict.fromkeys(found))


def settings(run: str) -> dict:
  """A run's hyperparameters (its config.toml), {} when it has none."""
  path = os.path.join(run, rundir.CONFIG)
  try:
    return {k: v for k, v in files.read_file(path).items() if k in HPARAMS}
  except ConfigError:
    return {}


def group(runs: list[str]) -> dict[str, list[str]]:
  """Runs by the settings in which they differ, apart from their seed."""
  configs = {run: settings(run) for run in runs}
  keys = sorted({k for c in configs.values() for k in c} - {"seed"})
  varying = [k for k in keys if len({repr(c.get(k)) for c in configs.values()}) > 1]
  groups: dict[str, list[str]] = {}
  for run, config in configs.items():
    if not config:  # no config.toml: a group of its own, named by its folder
      name = os.path.basename(os.path.abspath(run))
    else:
      name = ", ".join(f"{k}={files.as_flag(config.get(k))}" for k in varying) or "all runs"
    groups.setdefault(name, []).append(run)
  return groups


def _band(runs: list[list[dict]], x: str, y: str):
  """(xs, mean, std) of `y` over the runs, on a common grid of `x` where all have data."""
  curves = [
    (np.array([r[x] for r in rs], float), np.array([r.get(y, math.nan) for r in rs], float))
    for rs in runs
  ]
  if len(curves) == 1:
    return curves[0][0], curves[0][1], None
  end = min(xs.max() for xs, _ in curves)
  grid = np.linspace(0.0, end, 200)
  ys = np.array([np.interp(grid, xs, vs, left=np.nan) for xs, vs in curves])
  with warnings.catch_warnings(action="ignore"):  # a grid point where no run has a figure
    return grid, np.nanmean(ys, 0), np.nanstd(ys, 0)


def draw(groups: dict[str, list[list[dict]]], output: str, width: int, height: int, title=""):
  """`groups`: for each name, the records of each of its runs (seeds)."""
  fig, axes = plt.subplots(3, 2, figsize=(width / DPI, height / DPI), dpi=DPI)
  for ax, (x, y, xlabel, ylabel) in zip(axes.flat, PANELS):
    for name, runs in groups.items():
      xs, mean, std = _band(runs, x, y)
      xs = xs / 1e6 if x == "frames" else xs
      label = f"{name} ({len(runs)} runs)" if len(runs) > 1 else name
      (line,) = ax.plot(xs, mean, label=label)
      if std is not None:
        ax.fill_between(xs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
  axes[0, 0].legend(fontsize="small")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(output, dpi=DPI)
  plt.close(fig)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description="Plot and compare runs' learning curves (PNG).")
  parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories, globs, folders")
  parser.add_argument("-o", "--output", help="PNG to write; default: next to the runs")
  parser.add_argument("--size", default="1200x1000", help="WIDTHxHEIGHT in pixels")
  args = parser.parse_args(argv)
  try:
    width, height = (int(x) for x in args.size.lower().split("x"))
    if width < 200 or height < 200:
      raise ValueError
  except ValueError:
    parser.exit(2, f"plot: error: bad --size {args.size!r} (WIDTHxHEIGHT, each >= 200)\n")
  runs = find(args.runs)
  if not runs:
    parser.exit(2, f"plot: error: no runs (folders with a progress.jsonl) in {args.runs}\n")
  records = {}
  for run in runs:
    try:
      records[run] = read(run)
    except (OSError, json.JSONDecodeError) as e:
      parser.exit(2, f"plot: error: cannot read {run}/progress.jsonl: {e}\n")
    if not records[run]:
      parser.exit(2, f"plot: error: {run}/progress.jsonl has no records yet\n")
  groups = {name: [records[r] for r in members] for name, members in group(runs).items()}
  envs = sorted({settings(r).get("env_id", "") for r in runs} - {""})
  title = f"{', '.join(envs) or 'runs'}: {len(runs)} run{'s' * (len(runs) > 1)}"
  output = args.output or os.path.join(
    runs[0] if len(runs) == 1 else os.path.commonpath([os.path.abspath(r) for r in runs]),
    "curve.png" if len(runs) == 1 else "curves.png",
  )
  draw(groups, output, width, height, title=title)
  total = sum(len(r) for r in records.values())
  print(
    f"wrote {output} ({width}x{height}, {len(runs)} runs in {len(groups)} groups, {total} records)"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
