"""The actor program (`python actor_client.py`, `impala-actor`): connects to the learner
at GRPC_HOST and acts until it is stopped."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import grpc

from impala import config as config_lib
from impala import metrics
from impala.actor.session import Session, log
from impala.transport.client import LearnerClient

# Seconds a signalled actor has to stop before it exits regardless.
STOP_GRACE = 1.5


def _die_with_parent():
  """Local actors (started by the learner) exit when the learner dies, even by SIGKILL."""
  parent = os.environ.get("IMPALA_PARENT_PID")
  if not parent or not sys.platform.startswith("linux"):
    return
  import ctypes

  pr_set_pdeathsig = 1
  ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
  if os.getppid() != int(parent):  # the parent died before prctl took effect
    sys.exit(0)


def run_actor(config: config_lib.Config, given: frozenset = frozenset()) -> int:
  """The actor program on `config` (see cli.actor); `given`: the settings given to it."""
  try:
    LearnerClient(config).close()  # reads the token and TLS files: a bad path fails here
    session = Session(config, given)
    if config.metrics_port:
      metrics.serve(metrics.ActorCollector(session), config.metrics_port)
  except config_lib.ConfigError as e:
    print(f"actor_client.py: error: {e}", file=sys.stderr)
    return 2
  logging.basicConfig(format="%(asctime)s actor %(message)s")
  # A local actor's lines would be the learner's console's: the learner reports for it.
  log.setLevel(logging.WARNING if os.environ.get("IMPALA_PARENT_PID") else logging.INFO)
  _die_with_parent()
  stop, signalled = threading.Event(), []

  def exit_now(signal_name: str):
    # An RPC or an environment step holds the session past STOP_GRACE: neither can be
    # interrupted, and the actor was told to stop, so the process exits without them.
    log.info(session.final_line(f"{signal_name}, without waiting for the session"))
    logging.shutdown()
    os._exit(0)

  def on_signal(number, _):
    if not stop.is_set():
      signalled.append(signal.Signals(number).name)
      stop.set()
      watchdog = threading.Timer(STOP_GRACE, exit_now, (signal.Signals(number).name,))
      watchdog.daemon = True
      watchdog.start()

  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, on_signal)
  try:
    session.run(stop)
  except config_lib.ConfigError as e:  # this actor cannot act for the learner's run
    print(f"actor_client.py: error: {e}", file=sys.stderr)
    return 2
  except grpc.RpcError as e:
    print(
      f"actor_client.py: error: learner {config.grpc_host} refused: {e.code().name}: {e.details()}",
      file=sys.stderr,
    )
    return 1
  why = f"the learner's run ended: {session.ended}" if session.ended else signalled[0]
  log.info(session.final_line(why))
  return 0
