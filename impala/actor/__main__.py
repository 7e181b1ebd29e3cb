"""`python -m impala.actor`: the actor program (how the learner starts local actors)."""

import sys

from impala import cli

sys.exit(cli.actor())
