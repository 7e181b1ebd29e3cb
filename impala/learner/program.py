"""The learner program (`python learner_server.py`, `impala-learner`): the learner's parts
served, the update loop until an exit (stopping.py), local actors, the run's views and its
last lines."""

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
from collections.abc import Callable

import jax

from impala import config as config_lib
from impala import distributed, metrics, progress, rundir
from impala import learner as learner_lib
from impala.config import files
from impala.learner import batcher, saving, stopping
from impala.learner.clock import Clock
from impala.learner.learner import Learner, params_digest
from impala.transport import server

# Seconds between SIGTERM and SIGKILL for local actors.
ACTOR_GRACE = 5.0


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
    return saving.checkpoint(learner, wait, seconds)
  except OSError as e:
    print(f"learner: checkpoint not written: {e}", file=sys.stderr, flush=True)
    return None


class Training:
  """One run of the learner program: its parts composed and served, its local actors, its
  views (console, progress.jsonl, TensorBoard, /metrics) and the update loop, until an
  exit of stopping.RULES (or a held exit, taken by the clock's thread).

  Several learners stop together, after the same update: on the mean return over all of
  them, or when any one of them is out of time or terminated. A learner alone that an
  update or a compilation holds past --max-seconds (or a signal) stops from its clock's
  thread, with the newest update computed, and `end_process` ends the process.
  """

  def __init__(self, config, started: float, resources: contextlib.ExitStack, end_process):
    config = rundir.resolve(config)
    distributed.initialize(config)
    self.config, self.parts = config, learner_lib.build(config)
    self.learner = learner = self.parts.learner
    rundir.create(config)
    say_resumed(learner)
    self.leader = learner.index == 0  # writes the checkpoints
    self._end_process = end_process
    if config.metrics_port:
      exporter = resources.enter_context(
        contextlib.closing(metrics.serve(metrics.LearnerCollector(learner), config.metrics_port))
      )
      print(f"metrics on http://localhost:{exporter.port}/metrics", file=sys.stderr, flush=True)
    self.servers, port, self.health = self.parts.serve(config.port)
    self.parts.actors.connect_learners(config.advertise_address or f"{socket.getfqdn()}:{port}")
    announce(learner, config, port)
    self.parts.start()
    self.children = start_local_actors(config.local_actors, port, learner.run_id)
    self.console = progress.Console()
    if self.console.live:  # log records go above the live line
      for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
          handler.setStream(self.console)
          resources.callback(handler.setStream, sys.stderr)
    self.run_log = progress.RunLog(config.logdir, hparams(config))
    self.rules = stopping.Rules(config, learner.num_learners)
    self.clock = Clock(config, started, learner, self.console, self.run_log)
    self._finishing = threading.Lock()  # the stop runs once: on the main thread or the clock's
    self._finished = threading.Event()
    self._result = None
    if threading.current_thread() is threading.main_thread():
      # Signals are votes to stop, so that they hold even while an update or compilation runs.
      for sig, exit in stopping.SIGNALS.items():
        previous = signal.signal(sig, lambda *_, exit=exit: self.clock.request(exit))
        resources.callback(signal.signal, sig, previous)

  def run(self) -> tuple[dict, int]:
    """Trains until an exit; returns the summary and the exit status."""
    self.clock.start(self._held)
    exit = stopping.INTERRUPTED
    try:
      exit = self._loop()
    except KeyboardInterrupt:
      pass
    finally:
      self.clock.stop()
      if self._finishing.acquire(blocking=False):
        self._stop(exit)
      else:  # the clock's thread is stopping the run
        self._finished.wait()
    return self._result

  def _loop(self) -> stopping.Exit:
    learner, clock, config = self.learner, self.clock, self.config
    learner.activity = "compiling"
    learner.compile()
    last_checkpoint = time.monotonic()
    while True:
      learner.step(terminate=clock.requested.is_set(), out_of_time=clock.out_of_time.is_set())
      now = time.monotonic()
      if self.leader and now - last_checkpoint >= config.checkpoint_every:
        save(learner, True, clock.elapsed())
        last_checkpoint = now
      signalled = clock.signalled or stopping.TERMINATED
      moment = stopping.Moment(learner.votes(), learner.frames, learner.updates, signalled)
      exit = self.rules.after_update(moment)
      if exit is not None:
        return exit

  def _held(self, signalled: stopping.Exit | None):
    """On the clock's thread: an update or a compilation holds the main thread past the
    time cap or a signal's grace. The run is over: finished here, and the process ended."""
    if self.learner.num_learners == 1 and self._finishing.acquire(blocking=False):
      exit = self.rules.held(signalled)
      self._stop(exit)
      print(progress.dumps(self._result[0]), flush=True)
      sys.stderr.flush()
      self._end_process(exit.status)

  def _stop(self, exit: stopping.Exit):
    """Finishes the run (once: on the main thread or the clock's) and keeps its result."""
    self._result = (self._finish(exit), exit.status)
    self._finished.set()

  def _finish(self, exit: stopping.Exit) -> dict:
    """Stops serving and acting; the last checkpoint, progress record and summary."""
    learner, config, clock = self.learner, self.config, self.clock
    # NOT_SERVING first (probes and load balancers stop sending), then no new unrolls.
    # Then, if the run is over (not a stopped process, which may resume), uploads are
    # answered so (actors stop), and none is taken.
    self.health.enter_graceful_shutdown()
    learner.ended = exit.reason if exit.reason in stopping.RUN_ENDS else ""
    stop_processes(self.children)
    self.parts.close()
    self.servers.stop(grace=1.0).wait()
    finish_update(learner, timeout=Clock.GRACE)  # else: what the newest computed update holds
    seconds = clock.elapsed()
    final_checkpoint = save(learner, False, seconds) if self.leader else None
    model = save_model(learner, seconds) if self.leader else None
    clock.report()  # the figures at the stop: curves end where the run did
    self.console.close()
    self.run_log.close()
    digest = params_digest(learner.state(wait=False).params)
    result = summary(learner.snapshot(), seconds, exit.reason, final_checkpoint, digest)
    result.update(run_dir=config.run_dir, model=model)
    print(ending(result, config), file=sys.stderr, flush=True)
    return result


def finish_update(learner: Learner, timeout: float) -> bool:
  """Waits up to `timeout` s for the update in flight; returns whether it is computed."""
  newest = learner.newest()[:2]
  waiter = threading.Thread(target=jax.block_until_ready, args=(newest,), daemon=True)
  waiter.start()
  waiter.join(timeout)
  return not waiter.is_alive()


def say_resumed(learner: Learner):
  """Where the learner resumed from, if it did (several learners: all resume from learner
  0's checkpoint)."""
  if learner.updates:
    where = f" from {learner.restored_from}" if learner.restored_from else ""
    print(
      f"resumed{where}: update {learner.updates:,}, version {learner.version}",
      file=sys.stderr,
      flush=True,
    )


def announce(learner: Learner, config: config_lib.Config, port: int):
  """Where the learner serves, its settings, its run directory."""
  team = f"learner {learner.index} of {learner.num_learners} " if learner.num_learners > 1 else ""
  print(
    f"{team}learner serving on port {port} (run {learner.run_id}); "
    f"{config.local_actors} local actors",
    file=sys.stderr,
    flush=True,
  )
  described = files.describe(rundir.recorded(config))  # its own folders are said below
  print(f"preset {config.preset or '(none)'}; {described}", file=sys.stderr)
  print(f"run directory {config.run_dir}", file=sys.stderr, flush=True)


def train(
  config: config_lib.Config,
  started: float,
  resources: contextlib.ExitStack,
  end_process: Callable[[int], None] = lambda status: None,
) -> tuple[dict, int]:
  """Runs the learner until an exit; returns the summary and the exit status. What must
  outlive the run (the /metrics server) is left on `resources`."""
  return Training(config, started, resources, end_process).run()


def save_model(learner: Learner, seconds: float) -> str | None:
  """Writes the final model; a failure is said, not fatal."""
  try:
    return saving.model(learner, os.path.join(learner.config.run_dir, rundir.MODEL), seconds)
  except OSError as e:
    print(f"learner: final model not written: {e}", file=sys.stderr, flush=True)
    return None


def hparams(config: config_lib.Config) -> dict:
  """The run's hyperparameters, as TensorBoard takes them (numbers, text, truth values)."""
  return {
    name: value if isinstance(value, (bool, int, float, str)) else files.as_flag(value)
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


def run_learner(config: config_lib.Config, started: float) -> int:
  """The learner program on `config` (see cli.learner); its exit status."""

  def end_process(status: int):
    # The clock's thread has finished a run that an update or a compilation holds on the
    # main thread: neither can be interrupted, and the run is over, so the process exits
    # without waiting for them.
    os._exit(status)

  try:
    logging.basicConfig(format="%(asctime)s learner %(message)s")
    logging.getLogger("impala").setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:
      handler.addFilter(progress.RateLimit())
    batcher.keep_freed_memory()
    with contextlib.ExitStack() as resources:
      result, status = train(config, started, resources, end_process)
  except (config_lib.ConfigError, server.BindError) as e:
    print(f"learner_server.py: error: {e}", file=sys.stderr)
    return 2
  print(progress.dumps(result), flush=True)
  return status
