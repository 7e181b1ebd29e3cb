"""IMPALA learner: `python learner_server.py --help` lists every setting.

Train CartPole-v1 on this machine with two local actor processes:

    python learner_server.py --local-actors 2 --stop-at-return 475
"""

import sys
import time

STARTED = time.monotonic()  # "seconds" in the summary count from here, imports included

from impala import cli  # noqa: E402

if __name__ == "__main__":
  sys.exit(cli.learner(started=STARTED))
