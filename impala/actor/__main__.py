"""`python -m impala.actor`: the actor program (how the learner starts local actors)."""

import sys

from impala.actor import program

sys.exit(program.main())
