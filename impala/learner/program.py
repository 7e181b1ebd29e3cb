"""The learner program (`python learner_server.py`, `impala-learner`): the gRPC server,
the update loop, local actors, progress records and the stop conditions."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from impala import algorithms, distributed, flags, metrics, presets, progress, rundir
from impala import config as config_lib
from impala.learner import batcher
from impala.learner.learner import Learner, params_digest
from impala.transport import server

# Seconds between SIGTERM and SIGKILL for local actors.
ACTOR_GRACE = 5.0
# The stop reasons that end the run, which its actors are told (a signal stops the process
# only: restarted, it resumes the run, and the actors reconnect).
RUN_ENDS = ("stop_at_return", "max_frames", "max_seconds")


def start_local_actors(count: int, port: int, run_id: str) -> list[subprocess.Popen]:
  """Actor processes on this machine, each in its own session (Ctrl-C goes to the learner
  only), named local-N-RUN: unique in a job of several learners, and told apart from
  another run's on the same machine."""
  children = []
  for n in range(count):
    env = dict(
      os.environ,
      GRPC_HOST=f"localhost:{port}",
      IMPALA_ACTOR_ID=f"local-{n}-{run_id}",
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


def save(learner: Learner, wait: bool, seconds: float) -> str | None:
  """Writes a checkpoint; a failure (a full disk, a folder gone) is said, not fatal."""
  try:
    return learner.save_checkpoint(wait, seconds)
  except OSError as e:
    print(f"learner: checkpoint not written: {e}", file=sys.stderr, flush=True)
    return None


def report(learner: Learner, elapsed: float, since: tuple, console, run_log) -> tuple:
  """Shows (and logs) the learner's figures; returns the new (time, frames, updates) mark."""
  snapshot = learner.snapshot(metrics=True, wait=False)  # on the clock: never held up
  rate = float(algorithms.learning_rate(learner.config)(snapshot.updates))
  record = progress.record(snapshot, elapsed, since, rate, learner.activity)
  console.show(record)
  if run_log:
    run_log.write(record)
  return time.monotonic(), record["frames"], record["updates"]


class Clock:
  """The run's clock, on a thread of its own: a progress record every --log-every s
  whatever the learner is doing (saying what it waits for), `out_of_time` once
  --max-seconds have passed, and `overrun(reason[, status])` if the run has not stopped
  GRACE s after that, or after a signal asked it to stop (`request`): an update or a
  compilation holds the main thread. Its time goes on from the run's time before this
  process (a resumed run); --max-seconds counts this process's."""

  GRACE = 5.0

  def __init__(self, config, started: float, learner: Learner, console, run_log, overrun):
    self.out_of_time = threading.Event()
    self.requested = threading.Event()  # a signal asked the run to stop
    self.reason = ("terminated", 0)  # and for what: (stop reason, exit status)
    self._config, self._started, self._learner = config, started, learner
    self._offset = learner.seconds_before
    self._console, self._run_log, self._overrun = console, run_log, overrun
    first = learner.snapshot()
    self._mark = (time.monotonic(), first.frames, first.updates)
    self._lock = threading.Lock()  # one record at a time
    self._stopped = threading.Event()
    self._thread = threading.Thread(target=self._run, name="clock", daemon=True)
    self._thread.start()

  def request(self, reason: str, status: int):
    """A stop asked for by a signal (called from the handler)."""
    if not self.requested.is_set():
      self.reason, self._requested_at = (reason, status), time.monotonic()
      self.requested.set()

  def elapsed(self) -> float:
    """The run's seconds so far."""
    return self._offset + time.monotonic() - self._started

  def report(self):
    with self._lock:
      self._mark = report(self._learner, self.elapsed(), self._mark, self._console, self._run_log)

  def stop(self):
    self._stopped.set()

  def _run(self):
    limit = self._config.max_seconds
    deadline = self._started + limit if limit else math.inf
    next_record = time.monotonic() + self._config.log_every
    while not self._stopped.wait(max(0.0, min(next_record - time.monotonic(), 0.5))):
      now = time.monotonic()
      if now >= next_record:
        self.report()
        next_record = max(next_record + self._config.log_every, now)
      if now >= deadline:
        self.out_of_time.set()
      if now >= deadline + self.GRACE:
        return self._overrun("max_seconds")
      if self.requested.is_set() and now >= self._requested_at + self.GRACE:
        return self._overrun(*self.reason)


def train(
  config: config_lib.Config, started: float, resources: contextlib.ExitStack
) -> tuple[dict, int]:
  """Runs the learner until a stop condition; returns the summary and the exit status.
  What must outlive the run (the /metrics server) is left on `resources`.

  Several learners stop together, after the same update: on the mean return over all of
  them, or when any one of them is out of time or terminated. A learner alone that an
  update or a compilation holds past --max-seconds stops from its clock's thread, with
  the newest update computed, and exits.
  """
  config = rundir.resolve(config)
  distributed.initialize(config)
  learner = Learner(config)
  rundir.create(config)
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
  described = presets.describe(rundir.recorded(config))  # its own folders are said below
  print(f"preset {config.preset or '(none)'}; {described}", file=sys.stderr)
  print(f"run directory {config.run_dir}", file=sys.stderr, flush=True)
  learner.start()
  children = start_local_actors(config.local_actors, port, learner.run_id)
  console = progress.Console()
  if console.live:  # log records go above the live line
    for handler in logging.getLogger().handlers:
      if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
        handler.setStream(console)
        resources.callback(handler.setStream, sys.stderr)
  run_log = progress.RunLog(config.logdir, hparams(config))
  target = config.stop_at_return
  missed = 1 if not math.isnan(target) else 0  # a cap came before the target return
  finishing = threading.Lock()  # the stop runs once: on this thread, or on the clock's

  def finish(reason: str) -> dict:
    """Stops serving and acting; the last checkpoint, progress record and summary."""
    # NOT_SERVING first (probes and load balancers stop sending), then no new unrolls.
    # Then, if the run is over (not a stopped process, which may resume), uploads are
    # answered so (actors stop), and none is taken.
    health.enter_graceful_shutdown()
    learner.ended = reason if reason in RUN_ENDS else ""
    stop_processes(children)
    learner.close()
    grpc_server.stop(grace=1.0).wait()
    learner.finish_update(timeout=Clock.GRACE)  # else: what the newest computed update holds
    seconds = clock.elapsed()
    final_checkpoint = save(learner, False, seconds) if leader else None
    model = save_model(learner, seconds) if leader else None
    clock.report()  # the figures at the stop: curves end where the run did
    console.close()
    run_log.close()
    result = summary(
      learner.snapshot(),
      seconds,
      reason,
      final_checkpoint,
      params_digest(learner.state(wait=False).params),
    )
    result.update(run_dir=config.run_dir, model=model)
    print(ending(result, config), file=sys.stderr, flush=True)
    return result

  def overrun(reason: str, status: int = missed):
    if learner.num_learners == 1 and finishing.acquire(blocking=False):
      print(progress.dumps(finish(reason)), flush=True)
      sys.stderr.flush()
      os._exit(status)  # the update in flight cannot be interrupted; the run is over

  clock = Clock(config, started, learner, console, run_log, overrun)
  # SIGTERM (docker stop, Kubernetes): a clean stop, status 0; Ctrl-C: status 130. Both
  # are votes to stop, so that they hold even while an update or compilation runs.
  if threading.current_thread() is threading.main_thread():
    for sig, why in ((signal.SIGTERM, ("terminated", 0)), (signal.SIGINT, ("interrupted", 130))):
      previous = signal.signal(sig, lambda *_, why=why: clock.request(*why))
      resources.callback(signal.signal, sig, previous)
  learner.activity = "compiling"
  reason, status = "interrupted", 130
  try:
    learner.compile()
    last_checkpoint = time.monotonic()
    while True:
      learner.step(terminate=clock.requested.is_set(), out_of_time=clock.out_of_time.is_set())
      now = time.monotonic()
      if leader and now - last_checkpoint >= config.checkpoint_every:
        save(learner, True, clock.elapsed())
        last_checkpoint = now
      # Decided on what all learners agreed on in the update (one learner: its own figures).
      votes = learner.votes()
      if votes.return_count >= 100 * learner.num_learners and votes.return_mean() >= target:
        reason, status = "stop_at_return", 0
      elif votes.terminate:  # this learner's signal, or (several learners) another's
        reason, status = clock.reason
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
    clock.stop()
    if not finishing.acquire(blocking=False):  # the clock's thread is stopping the run
      threading.Event().wait()
    result = finish(reason)
  return result, status


def save_model(learner: Learner, seconds: float) -> str | None:
  """Writes the final model; a failure is said, not fatal."""
  try:
    return learner.save_model(os.path.join(learner.config.run_dir, rundir.MODEL), seconds)
  except OSError as e:
    print(f"learner: final model not written: {e}", file=sys.stderr, flush=True)
    return None


def hparams(config: config_lib.Config) -> dict:
  """The run's hyperparameters, as TensorBoard takes them (numbers, text, truth values)."""
  return {
    name: value if isinstance(value, (bool, int, float, str)) else flags.shown(value)
    for name, value in ((n, getattr(config, n)) for n in config_lib.HPARAMS)
  }


def ending(result: dict, config: config_lib.Config) -> str:
  """The run's last line for a person: what it reached, in how long, where it is kept."""
  reached = result["return_mean_100"]
  target = config.stop_at_return
  if reached is None or math.isnan(reached):
    what = "no episode ended"
  else:
    what = f"return {progress.number(reached)} (mean of the last {result['episodes_in_mean']})"
  if result["reached_target"]:
    head = f"reached the target {target:g}: {what}"
  else:
    head = f"stopped ({result['stop_reason'].replace('_', ' ')}): {what}"
  text = f"{head}, in {result['seconds']:.1f} s and {result['frames'] / 1e6:.2f} M frames"
  if result.get("model"):
    text += (
      f"; saved to {config.run_dir}; evaluate it with: python -m impala.evaluate {config.run_dir}"
    )
  return text + "."


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


def run(config: config_lib.Config, started: float) -> int:
  """The learner program on `config` (see cli.learner); its exit status."""
  try:
    logging.basicConfig(format="%(asctime)s learner %(message)s")
    logging.getLogger("impala").setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:
      handler.addFilter(progress.RateLimit())
    batcher.keep_freed_memory()
    with contextlib.ExitStack() as resources:
      result, status = train(config, started, resources)
  except (config_lib.ConfigError, server.BindError) as e:
    print(f"learner_server.py: error: {e}", file=sys.stderr)
    return 2
  print(progress.dumps(result), flush=True)
  return status
