"""The learner program (`python learner_server.py`, `impala-learner`): the gRPC server,
the update loop, local actors, progress records and the stop conditions."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from impala import algorithms, distributed, flags, metrics, presets, progress
from impala import config as config_lib
from impala.learner import batcher
from impala.learner.learner import Learner, params_digest
from impala.transport import server

# Seconds between SIGTERM and SIGKILL for local actors.
ACTOR_GRACE = 5.0


def start_local_actors(count: int, port: int, learner: int = 0) -> list[subprocess.Popen]:
  """Actor processes on this machine, each in its own session (Ctrl-C goes to the learner
  only); those of learner i > 0 are named local-i-N, so that ids stay unique in a job."""
  children = []
  for n in range(count):
    env = dict(
      os.environ,
      GRPC_HOST=f"localhost:{port}",
      IMPALA_ACTOR_ID=f"local-{n}" if learner == 0 else f"local-{learner}-{n}",
      IMPALA_PARENT_PID=str(os.getpid()),
      IMPALA_METRICS_PORT="0",
    )
    children.append(
      subprocess.Popen([sys.executable, "-m", "impala.actor"], env=env, start_new_session=True)
    )
  return children


def stop_processes(children: list[subprocess.Popen]):
  for child in children:
    if child.poll() is None:
      child.terminate()
  deadline = time.monotonic() + ACTOR_GRACE
  for child in children:
    try:
      child.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      child.kill()
      child.wait()


def report(learner: Learner, elapsed: float, since: tuple, console, run_log) -> tuple:
  """Shows (and logs) the learner's figures; returns the new (time, frames, updates) mark."""
  snapshot = learner.snapshot(metrics=True)
  rate = float(algorithms.learning_rate(learner.config)(snapshot.updates))
  record = progress.record(snapshot, elapsed, since, rate)
  console.show(progress.line(record))
  if run_log:
    run_log.write(record)
  return time.monotonic(), record["frames"], record["updates"]


def train(
  config: config_lib.Config, started: float, resources: contextlib.ExitStack
) -> tuple[dict, int]:
  """Runs the learner until a stop condition; returns the summary and the exit status.
  What must outlive the run (the /metrics server) is left on `resources`.

  Several learners stop together, after the same update: on the mean return over all of
  them, or when any one of them is out of time or terminated.
  """
  distributed.initialize(config)
  learner = Learner(config)
  leader = learner.index == 0  # writes the checkpoints
  first = learner.snapshot()
  if first.updates:  # several learners: all resume from learner 0's checkpoint
    where = f" from {learner.restored_from}" if learner.restored_from else ""
    print(
      f"resumed{where}: update {first.updates:,}, version {first.version}",
      file=sys.stderr,
      flush=True,
    )
  if config.metrics_port:
    exporter = resources.enter_context(
      contextlib.closing(metrics.serve(metrics.LearnerCollector(learner), config.metrics_port))
    )
    print(f"metrics on http://localhost:{exporter.port}/metrics", file=sys.stderr, flush=True)
  grpc_server, port, health = server.create_server(learner, config.port)
  learner.actors.connect_learners(config.advertise_address or f"{socket.getfqdn()}:{port}")
  team = f"learner {learner.index} of {learner.num_learners} " if learner.num_learners > 1 else ""
  print(
    f"{team}learner serving on port {port} (run {learner.run_id}); "
    f"{config.local_actors} local actors",
    file=sys.stderr,
    flush=True,
  )
  print(f"preset {config.preset or '(none)'}; {presets.describe(config)}", file=sys.stderr)
  learner.start()
  children = start_local_actors(config.local_actors, port, learner.index)
  terminated = threading.Event()  # SIGTERM (docker stop, Kubernetes): a clean stop, status 0
  if threading.current_thread() is threading.main_thread():
    resources.callback(
      signal.signal, signal.SIGTERM, signal.signal(signal.SIGTERM, lambda *_: terminated.set())
    )
  console = progress.Console()
  run_log = progress.RunLog(config.logdir, presets.to_toml(config)) if config.logdir else None
  target = config.stop_at_return
  reason, status = "interrupted", 130
  last_log = None
  try:
    learner.compile()
    last_log = (time.monotonic(), first.frames, first.updates)
    last_checkpoint = last_log[0]
    while True:
      elapsed = time.monotonic() - started
      learner.step(
        terminate=terminated.is_set(),
        out_of_time=bool(config.max_seconds and elapsed >= config.max_seconds),
      )
      now = time.monotonic()
      if leader and config.checkpoint_dir and now - last_checkpoint >= config.checkpoint_every:
        learner.save_checkpoint()
        last_checkpoint = now
      if now - last_log[0] >= config.log_every:
        last_log = report(learner, now - started, last_log, console, run_log)
      # Decided on what all learners agreed on in the update (one learner: its own figures).
      votes = learner.votes()
      missed = 1 if not math.isnan(target) else 0  # a cap came before the target return
      if votes.return_count >= 100 * learner.num_learners and votes.return_mean() >= target:
        reason, status = "stop_at_return", 0
      elif votes.terminate:
        reason, status = "terminated", 0
      elif config.max_frames and learner.frames >= config.max_frames:
        reason, status = "max_frames", missed
      elif votes.out_of_time:
        reason, status = "max_seconds", missed
      else:
        continue
      break
  except KeyboardInterrupt:
    pass
  finally:
    # NOT_SERVING first (probes and load balancers stop sending), then no new unrolls;
    # no update is in flight here: this thread runs them.
    health.enter_graceful_shutdown()
    stop_processes(children)
    grpc_server.stop(grace=1.0).wait()
    learner.close()
    final_checkpoint = learner.save_checkpoint() if leader and config.checkpoint_dir else None
    if last_log is not None:  # the figures at the stop: curves end where the run did
      report(learner, time.monotonic() - started, last_log, console, run_log)
    console.close()
    if run_log:
      run_log.close()
  return summary(
    learner.snapshot(),
    time.monotonic() - started,
    reason,
    final_checkpoint,
    params_digest(learner.state().params),
  ), status


def summary(s, seconds: float, reason: str, checkpoint: str | None, digest: str) -> dict:
  """The run's final JSON line: the snapshot's figures under the snapshot's names."""
  return dict(
    learner=s.learner,
    learners=s.learners,
    seconds=round(seconds, 2),
    frames_per_second=round(s.frames / seconds, 1),
    **s.figures(),
    reached_target=reason == "stop_at_return",
    stop_reason=reason,
    unrolls_by_actor=dict(s.unrolls_by_actor),
    checkpoint=checkpoint,
    params_sha256=digest,
  )


def main(argv=None, started: float | None = None) -> int:
  started = time.monotonic() if started is None else started
  try:
    config = flags.from_args(argv, description="IMPALA learner (gRPC server).")
    logging.basicConfig(format="%(asctime)s learner %(message)s")
    logging.getLogger("impala").setLevel(logging.INFO)
    batcher.keep_freed_memory()
    with contextlib.ExitStack() as resources:
      result, status = train(config, started, resources)
  except (config_lib.ConfigError, server.BindError) as e:
    print(f"learner_server.py: error: {e}", file=sys.stderr)
    return 2
  print(json.dumps(result), flush=True)
  return status
