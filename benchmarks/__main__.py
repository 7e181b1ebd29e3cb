"""Runs the benchmarks, each in its own process, one after the other: `python -m
benchmarks [name ...]`. Without names, every one but the long ones (about 17 minutes on 2
cores); `python -m benchmarks learning` runs the learning curves (about an hour), `inference`
both modes of inference side by side (about 25 minutes), `soak` the learner under load
for 10 minutes.

Prints each benchmark's JSON object on its own line on stdout, then a Markdown table of
all comparisons on stderr (the table in README.md's Performance section).
"""

from __future__ import annotations

import json
import subprocess
import sys

BENCHMARKS = (
  "end_to_end",
  "ingest",
  "weights",
  "actor_overhead",
  "learner_pipeline",
  "learners",
  "algorithms",
  "atari",
  "inference",
  "learning",
  "soak",
)
LONG = ("inference", "learning", "soak")
SHORT = tuple(name for name in BENCHMARKS if name not in LONG)


def _number(value: float) -> str:
  return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(results: list[dict]) -> str:
  rows = [
    "| benchmark | measured | value | baseline | baseline value | ratio |",
    "|---|---|---:|---|---:|---:|",
  ]
  for result in results:
    for c in result["comparisons"]:
      rows.append(
        f"| {result['benchmark']} | {c['name']} | {_number(c['value'])} {c['unit']} | "
        f"{c['baseline_name']} | {_number(c['baseline'])} {c['unit']} | "
        f"{c['ratio']:.2f} |"
      )
  machine = results[0]["machine"] if results else {}
  rows.append(
    f"\n{machine.get('date')}, {machine.get('cores')} cores ({machine.get('cpu')}), "
    f"jax {machine.get('versions', {}).get('jax')} on {machine.get('jax_backend')}, "
    f"grpcio {machine.get('versions', {}).get('grpcio')}"
  )
  return "\n".join(rows)


def main(argv: list[str]) -> int:
  names = argv or SHORT
  unknown = sorted(set(names) - set(BENCHMARKS))
  if unknown:
    print(
      f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}",
      file=sys.stderr,
    )
    return 2
  results, failed = [], []
  for name in names:
    print(f"running {name} ...", file=sys.stderr, flush=True)
    done = subprocess.run(
      [sys.executable, "-m", f"benchmarks.{name}"], stdout=subprocess.PIPE, text=True
    )
    if done.returncode != 0:
      failed.append(name)
      continue
    print(done.stdout.strip(), flush=True)
    results.append(json.loads(done.stdout))
  print(table(results), file=sys.stderr)
  if failed:
    print(f"failed: {', '.join(failed)}", file=sys.stderr)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
