"""IMPALA actor: connects to the learner at GRPC_HOST and needs nothing else.

GRPC_HOST=localhost:50051 python actor_client.py
"""

import sys

from impala import cli

if __name__ == "__main__":
  sys.exit(cli.actor())
