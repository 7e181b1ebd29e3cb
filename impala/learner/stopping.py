"""When the learner stops, and why: each way a run can end is a named exit, and the rules
that choose one after each update are a table, tested on their own (tests/test_stopping.py).

A run ends at its target return, its frame cap or its time cap: its actors are told so
and stop. A signal stops the process only (SIGTERM from Kubernetes or Slurm: restarted,
it resumes the run, and the actors wait for it). An update or a compilation that holds
the process past the clock's grace is a held exit: the clock's thread ends the run
(Clock in clock.py)."""

from __future__ import annotations

import math
import signal
from collections.abc import Callable
from typing import NamedTuple

from impala.config import Config
from impala.distributed import Control


class Exit(NamedTuple):
  """One way out of the run loop: the stop reason the summary gives, and the exit status."""

  reason: str
  status: int


TERMINATED = Exit("terminated", 0)  # SIGTERM (docker stop, Kubernetes): a clean stop
INTERRUPTED = Exit("interrupted", 130)  # Ctrl-C
SIGNALS = {signal.SIGTERM: TERMINATED, signal.SIGINT: INTERRUPTED}
# The reasons that end the run, which its actors are told (a signalled process may resume).
RUN_ENDS = ("stop_at_return", "max_frames", "max_seconds")


class Moment(NamedTuple):
  """What the rules look at after an update."""

  votes: Control  # what all learners brought to it (one learner: its own figures)
  frames: int  # frames of all learners so far
  updates: int
  signalled: Exit  # the exit a signal asked for, if one did (see votes.terminate)


class Rules:
  """Chooses the exit, if any, after each update: the first rule of RULES that names one."""

  def __init__(self, config: Config, num_learners: int):
    self.config, self.num_learners = config, num_learners
    # A cap that came before the target return is a miss: status 1.
    self.missed = 0 if math.isnan(config.stop_at_return) else 1

  def after_update(self, now: Moment) -> Exit | None:
    for rule in RULES:
      chosen = rule(self, now)
      if chosen is not None:
        return chosen
    return None

  def held(self, signalled: Exit | None) -> Exit:
    """The exit of a run that an update or a compilation holds past its time or its
    signal: the clock's thread takes it."""
    return signalled or Exit("max_seconds", self.missed)


def reached_target(rules: Rules, now: Moment) -> Exit | None:
  """The mean return over the last 100 episodes of every learner reached the target."""
  votes = now.votes
  enough = votes.return_count >= 100 * rules.num_learners
  if enough and votes.return_mean() >= rules.config.stop_at_return:
    return Exit("stop_at_return", 0)
  return None


def signalled(rules: Rules, now: Moment) -> Exit | None:
  """This learner's signal, or (several learners) another's."""
  return now.signalled if now.votes.terminate else None


def out_of_frames(rules: Rules, now: Moment) -> Exit | None:
  cap = rules.config.max_frames
  return Exit("max_frames", rules.missed) if cap and now.frames >= cap else None


def out_of_time(rules: Rules, now: Moment) -> Exit | None:
  return Exit("max_seconds", rules.missed) if now.votes.out_of_time else None


RULES: tuple[Callable[[Rules, Moment], Exit | None], ...] = (
  reached_target,
  signalled,
  out_of_frames,
  out_of_time,
)
