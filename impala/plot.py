"""Draws learning curves from runs' --logdir as a PNG.

    python -m impala.plot LOGDIR [LOGDIR ...] [-o curve.png] [--size 1200x800]

Panels: return (mean of the last 100 episodes) against frames and against wall time,
frames per second, and policy lag; read from LOGDIR/progress.jsonl. Several runs are
drawn together, each named by its folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 100


def read(logdir: str) -> list[dict]:
  path = os.path.join(logdir, "progress.jsonl")
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def draw(runs: dict[str, list[dict]], output: str, width: int, height: int, title: str = ""):
  """`runs`: the records of each run by name."""
  fig, axes = plt.subplots(2, 2, figsize=(width / DPI, height / DPI), dpi=DPI)
  panels = [
    (axes[0, 0], "frames", "return_mean_100", "frames (millions)", "return (mean of 100)"),
    (axes[0, 1], "seconds", "return_mean_100", "wall time (s)", "return (mean of 100)"),
    (axes[1, 0], "frames", "frames_per_second", "frames (millions)", "frames / s"),
    (axes[1, 1], "frames", "policy_lag", "frames (millions)", "policy lag (updates)"),
  ]
  for ax, x, key, xlabel, ylabel in panels:
    for name, records in runs.items():
      xs = [r[x] / 1e6 if x == "frames" else r[x] for r in records]
      ax.plot(xs, [r[key] for r in records], marker="." if len(runs) == 1 else None, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
  if len(runs) > 1:
    axes[0, 0].legend(fontsize="small")
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(output, dpi=DPI)
  plt.close(fig)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description="Plot a run's learning curve (PNG).")
  parser.add_argument("logdirs", nargs="+", metavar="logdir", help="a run's --logdir")
  parser.add_argument("-o", "--output", default="curve.png", help="PNG to write")
  parser.add_argument("--size", default="1200x800", help="WIDTHxHEIGHT in pixels")
  args = parser.parse_args(argv)
  try:
    width, height = (int(x) for x in args.size.lower().split("x"))
    if width < 200 or height < 200:
      raise ValueError
  except ValueError:
    parser.exit(2, f"plot: error: bad --size {args.size!r} (WIDTHxHEIGHT, each >= 200)\n")
  runs = {}
  for logdir in args.logdirs:
    name = os.path.basename(os.path.abspath(logdir))
    try:
      runs[name] = read(logdir)
    except (OSError, json.JSONDecodeError) as e:
      parser.exit(2, f"plot: error: cannot read {logdir}/progress.jsonl: {e}\n")
    if not runs[name]:
      parser.exit(2, f"plot: error: {logdir}/progress.jsonl has no records yet\n")
  title = next(iter(runs)) if len(runs) == 1 else ""
  draw(runs, args.output, width, height, title=title)
  records = sum(len(r) for r in runs.values())
  print(f"wrote {args.output} ({width}x{height}, {len(runs)} runs, {records} records)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
