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
from impala import flags, metrics
from impala.actor.session import Session, log
from impala.transport.client import LearnerClient


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


def main(argv=None) -> int:
  try:
    config = flags.from_args(argv, description="IMPALA actor (gRPC client).")
    LearnerClient(config).close()  # reads the token and TLS files: a bad path fails here
    session = Session(config)
    if config.metrics_port:
      metrics.serve(metrics.ActorCollector(session), config.metrics_port)
  except config_lib.ConfigError as e:
    print(f"actor_client.py: error: {e}", file=sys.stderr)
    return 2
  logging.basicConfig(format="%(asctime)s actor %(message)s")
  log.setLevel(logging.INFO)
  _die_with_parent()
  stop = threading.Event()
  for sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, lambda *_: stop.set())
  try:
    session.run(stop)
  except grpc.RpcError as e:
    print(
      f"actor_client.py: error: learner {config.grpc_host} refused: {e.code().name}: {e.details()}",
      file=sys.stderr,
    )
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
