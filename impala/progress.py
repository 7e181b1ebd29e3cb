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
# The scalars TensorBoard's hparams view shows beside each run's hyperparameters.
HPARAM_METRICS = ("episode/return_mean_100", "throughput/frames_per_second")


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


def number(x: float) -> str:
  """A return or a length: "-" before any episode, four digits below 100 (Catch's 0.94)."""
  if x is None or math.isnan(x):
    return "-"
  if abs(x) < 5e-5:
    return "0"
  return f"{x:.1f}" if abs(x) >= 100 else f"{x:.4g}"


def _not_accepted(r: dict) -> str:
  parts = [
    f"{n:,} {name}"
    for name, n in (
      ("dup", r["duplicates"]),
      ("stale", r["stale"]),
      ("rejected", sum(r["rejected"].values())),
      ("abandoned", r["abandoned"]),
      ("unfinished", r["unfinished"]),
    )
    if n
  ]
  return "not accepted: " + ", ".join(parts) if parts else ""


def _short(x: float) -> str:
  """1234567 -> 1.23M: a count or a rate in a few columns."""
  for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
    if abs(x) >= scale:
      return f"{x / scale:.3g}{unit}"
  return f"{x:.3g}"


def fields(r: dict) -> list[str]:
  """The live line's fields of record `r`, the most important first."""
  waiting = r["waiting_for"] if r["waiting_for"] and not r["updates_per_second"] else ""
  shown = [
    f"[{r['seconds']:.1f}s]",
    f"return {number(r['return_mean_100'])}",
    f"{_short(r['frames'])} frames {_short(r['frames_per_second'])}/s",
    _not_accepted(r),
    f"waiting for {waiting}" if waiting else "",
    f"{_short(r['updates'])} updates {r['updates_per_second']:.1f}/s",
    f"mean of {r['episodes_in_mean']} episodes",
    f"lag {r['policy_lag']:.1f}",
    f"{r['actors_connected']} actors",
    f"queue {r['queue_depth']}",
    f"{r['unauthenticated']} unauthenticated calls" if r["unauthenticated"] else "",
  ]
  return [f for f in shown if f]


def fit(parts: list[str], width: int) -> str:
  """As many of `parts` (most important first) as fit in `width` columns, in order."""
  taken, used = [], 0
  for part in parts:
    cost = len(part) + (2 if taken else 0)
    if used + cost <= width:
      taken.append(part)
      used += cost
  return "  ".join(taken)


def line(r: dict) -> str:
  """The plain progress line of logs: every figure, the whole accounting."""
  return (
    f"[{r['seconds']:7.1f}s] frames {r['frames']:>10,} ({r['frames_per_second']:>9,.0f}/s)  "
    f"updates {r['updates']:>7,} ({r['updates_per_second']:>6,.1f}/s)  "
    f"return {number(r['return_mean_100']):>7} (last {r['episodes_in_mean']})  "
    f"lag {r['policy_lag']:4.1f}  queue {r['queue_depth']:3d}  actors {r['actors_connected']}  "
    f"unrolls {r['received']:,} = {r['accepted']:,} accepted + {r['duplicates']} dup + "
    f"{r['stale']} stale + {sum(r['rejected'].values())} rejected + {r['abandoned']} abandoned"
    + (f"  unauthenticated calls {r['unauthenticated']}" if r["unauthenticated"] else "")
    + (f"  unfinished {r['unfinished']}" if r["unfinished"] else "")
    + (
      f"  (waiting for {r['waiting_for']})"
      if r["waiting_for"] and not r["updates_per_second"]
      else ""
    )
  )


class Console:
  """On a terminal: one line rewritten in place, sized to the terminal's width (read at
  each update: a resized window is followed), so it never wraps; log lines (`write`, a
  stream for logging handlers) go above it. Otherwise (logs): plain lines with every
  figure. Never both."""

  def __init__(self, stream=None):
    self.stream = stream or sys.stderr
    self.live = self.stream.isatty()
    self._line = ""  # the live line shown now

  def width(self) -> int:
    try:
      return os.get_terminal_size(self.stream.fileno()).columns
    except (OSError, ValueError, AttributeError):
      return 80

  def show(self, r: dict):
    if self.live:  # one column spare: a line as wide as the terminal wraps on some
      self._line = fit(fields(r), self.width() - 1)
      self.stream.write(f"\r\x1b[K{self._line}")
    else:
      self.stream.write(line(r) + "\n")
    self.stream.flush()

  def write(self, text: str):
    """Text of whole lines (a log record), shown above the live line."""
    self.stream.write(f"\r\x1b[K{text}{self._line}" if self._line else text)

  def flush(self):
    self.stream.flush()

  def close(self):
    if self._line:
      self.stream.write("\n")
      self.stream.flush()
    self._line = ""


def strict(value):
  """`value` with its NaNs and infinities as None: JSON, as every parser reads it."""
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if isinstance(value, dict):
    return {k: strict(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [strict(v) for v in value]
  return value


def dumps(value) -> str:
  return json.dumps(strict(value), allow_nan=False)


class RunLog:
  """TensorBoard events (with the run's hyperparameters) and progress.jsonl in `logdir`."""

  def __init__(self, logdir: str, hparams: dict):
    from tensorboardX import SummaryWriter  # only runs that keep events need it
    from tensorboardX.summary import hparams as hparams_summaries

    os.makedirs(logdir, exist_ok=True)
    self._writer = SummaryWriter(logdir)
    events = self._writer._get_file_writer()
    for summary in hparams_summaries(hparams, {tag: None for tag in HPARAM_METRICS}):
      events.add_summary(summary)
    self._jsonl = open(os.path.join(logdir, "progress.jsonl"), "a")

  def write(self, r: dict):
    for key, tag in SCALARS.items():
      if key in r and not math.isnan(r[key]):
        self._writer.add_scalar(tag, r[key], global_step=r["frames"])
    self._jsonl.write(dumps(r) + "\n")
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
