"""The programs' entry points: flags are parsed (and `--help` answered) before JAX, gRPC
and the environments are imported, so that a bad flag or `--help` answers at once."""

from __future__ import annotations

import sys
import time

from impala.config import ConfigError, flags


def learner(argv=None, started: float | None = None) -> int:
  """`python learner_server.py`, `impala-learner`."""
  started = time.monotonic() if started is None else started
  try:
    config = flags.from_args(argv, "IMPALA learner (gRPC server).", program="learner")
  except ConfigError as e:
    print(f"learner_server.py: error: {e}", file=sys.stderr)
    return 2
  from impala.learner import program as learner_program

  return learner_program.run_learner(config, started)


def actor(argv=None) -> int:
  """`python actor_client.py`, `impala-actor`, `python -m impala.actor`."""
  try:
    config, given = flags.parse(argv, "actor", "IMPALA actor (gRPC client).")
  except ConfigError as e:
    print(f"actor_client.py: error: {e}", file=sys.stderr)
    return 2
  from impala.actor import program as actor_program

  return actor_program.run_actor(config, given)
