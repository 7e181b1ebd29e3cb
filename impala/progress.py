"""What a learner reports while it trains: one record every `--log-every` seconds, shown
as the console line and, with `--logdir`, written as TensorBoard scalars (step = frames)
and as a line of `progress.jsonl` (what `python -m impala.plot` draws)."""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import threading
import time

from impala.learner.snapshot import Snapshot

# record key -> TensorBoard tag
SCALARS = {
  "return_mean_100": "episode/return_mean_100",
  "length_mean_100": "episode/length_mean_100",
  "loss": "loss/total",
  "policy_loss": "loss/policy",
  "baseline_loss": "loss/baseline",
  "entropy": "loss/entropy",
  "grad_norm": "optim/grad_norm",
  "param_norm": "optim/param_norm",
  "learning_rate": "optim/learning_rate",
  "frames_per_second": "throughput/frames_per_second",
  "updates_per_second": "throughput/updates_per_second",
  "policy_lag": "learner/policy_lag",
  "queue_depth": "learner/queue_depth",
  "actors_connected": "learner/actors",
}


def record(
  s: Snapshot,
  seconds: float,
  since: tuple[float, int, int],
  learning_rate: float,
  waiting_for: str = "",
) -> dict:
  """A progress record of snapshot `s`; rates over the interval since (time, frames,
  updates); `waiting_for` says what the learner waits for now."""
  interval = max(time.monotonic() - since[0], 1e-9)
  return dict(
    seconds=round(seconds, 2),
    **s.figures(),
    learner_return_mean_100=s.learner_return_mean_100,
    length_mean_100=s.length_mean_100,
    queue_depth=s.queue_depth,
    actors_connected=s.actors_connected,
    learning_rate=learning_rate,
    frames_per_second=(s.frames - since[1]) / interval,
    updates_per_second=(s.updates - since[2]) / interval,
    waiting_for=waiting_for,
    **s.metrics,
  )


def line(r: dict) -> str:
  return (
    f"[{r['seconds']:7.1f}s] frames {r['frames']:>10,} ({r['frames_per_second']:>9,.0f}/s)  "
    f"updates {r['updates']:>7,} ({r['updates_per_second']:>6,.1f}/s)  "
    f"return {r['return_mean_100']:7.1f} (last {r['episodes_in_mean']})  "
    f"lag {r['policy_lag']:4.1f}  queue {r['queue_depth']:3d}  actors {r['actors_connected']}  "
    f"unrolls {r['received']:,} = {r['accepted']:,} accepted + {r['duplicates']} dup + "
    f"{r['stale']} stale + {sum(r['rejected'].values())} rejected + {r['abandoned']} abandoned"
    + (f"  unauthenticated calls {r['unauthenticated']}" if r["unauthenticated"] else "")
    + (
      f"  (waiting for {r['waiting_for']})"
      if r["waiting_for"] and not r["updates_per_second"]
      else ""
    )
  )


class Console:
  """One line rewritten in place on a terminal; plain lines otherwise (logs), never both."""

  def __init__(self, stream=None):
    self.stream = stream or sys.stderr
    self.live = self.stream.isatty()
    self._shown = False

  def show(self, text: str):
    self.stream.write(f"\r\x1b[K{text}" if self.live else text + "\n")
    self.stream.flush()
    self._shown = True

  def close(self):
    if self.live and self._shown:
      self.stream.write("\n")
      self.stream.flush()


class RunLog:
  """TensorBoard events, progress.jsonl and the run's config.toml in `logdir`."""

  def __init__(self, logdir: str, config_toml: str):
    from tensorboardX import SummaryWriter  # only runs with --logdir need it

    os.makedirs(logdir, exist_ok=True)
    with open(os.path.join(logdir, "config.toml"), "w") as f:
      f.write(config_toml)
    self._writer = SummaryWriter(logdir)
    self._jsonl = open(os.path.join(logdir, "progress.jsonl"), "a")

  def write(self, r: dict):
    for key, tag in SCALARS.items():
      if key in r and not math.isnan(r[key]):
        self._writer.add_scalar(tag, r[key], global_step=r["frames"])
    self._jsonl.write(json.dumps(r) + "\n")
    self._jsonl.flush()

  def close(self):
    self._writer.close()
    self._jsonl.close()


class RateLimit(logging.Filter):
  """Passes at most `burst` log lines of one kind (one format string) per `period` s; the
  next one that passes says how many were held back. A client that reconnects in a loop,
  or thousands of actors, cannot flood the log."""

  def __init__(self, burst: int = 10, period: float = 60.0):
    super().__init__()
    self.burst, self.period = burst, period
    self._lock = threading.Lock()
    self._kinds: dict = {}  # format string -> [window start, passed, held back]

  def filter(self, record: logging.LogRecord) -> bool:
    now = time.monotonic()
    with self._lock:
      kind = self._kinds.setdefault(record.msg, [now, 0, 0])
      if now - kind[0] >= self.period:
        kind[0], kind[1] = now, 0
      if kind[1] >= self.burst:
        kind[2] += 1
        return False
      kind[1] += 1
      held, kind[2] = kind[2], 0
    if held:
      record.msg = f"{record.msg} ({held} more like this not shown)"
    return True
