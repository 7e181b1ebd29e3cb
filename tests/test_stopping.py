"""The learner's stop rules on their own: each exit, when it is taken, and which wins."""

import math

import pytest

from impala.config import Config
from impala.distributed import Control
from impala.learner import stopping
from impala.learner.stopping import Exit, Moment, Rules


def moment(frames=0, returns=(0.0, 0), terminate=False, out_of_time=False, signalled=None):
  total, count = returns
  votes = Control(1.0, total, count, float(terminate), float(out_of_time))
  return Moment(votes, frames, 0, signalled or stopping.TERMINATED)


def test_no_exit_while_no_rule_holds():
  rules = Rules(Config(stop_at_return=475.0, max_frames=1000), num_learners=1)
  assert rules.after_update(moment(frames=999, returns=(474.0 * 100, 100))) is None


def test_the_target_needs_100_episodes_of_every_learner():
  rules = Rules(Config(stop_at_return=475.0), num_learners=2)
  assert rules.after_update(moment(returns=(500.0 * 199, 199))) is None
  assert rules.after_update(moment(returns=(500.0 * 200, 200))) == Exit("stop_at_return", 0)


def test_caps_before_the_target_are_misses_and_without_a_target_are_not():
  with_target = Rules(Config(stop_at_return=475.0, max_frames=100), num_learners=1)
  assert with_target.after_update(moment(frames=100)) == Exit("max_frames", 1)
  assert with_target.after_update(moment(out_of_time=True)) == Exit("max_seconds", 1)
  without = Rules(Config(max_frames=100), num_learners=1)
  assert math.isnan(without.config.stop_at_return)
  assert without.after_update(moment(frames=100)) == Exit("max_frames", 0)


@pytest.mark.parametrize("signalled", [stopping.TERMINATED, stopping.INTERRUPTED])
def test_a_signal_exits_with_its_own_reason_and_status(signalled):
  rules = Rules(Config(max_frames=100), num_learners=1)
  assert rules.after_update(moment(terminate=True, signalled=signalled)) == signalled
  assert rules.after_update(moment(signalled=signalled)) is None  # no vote: no exit


def test_the_first_rule_that_holds_wins():
  rules = Rules(Config(stop_at_return=475.0, max_frames=100), num_learners=1)
  everything = moment(frames=100, returns=(500.0 * 100, 100), terminate=True, out_of_time=True)
  assert rules.after_update(everything) == Exit("stop_at_return", 0)
  assert (
    rules.after_update(everything._replace(votes=Control(1, 0, 0, 1, 1))).reason == "terminated"
  )
  assert [rule.__name__ for rule in stopping.RULES] == [
    "reached_target",
    "signalled",
    "out_of_frames",
    "out_of_time",
  ]


def test_a_held_run_exits_for_its_signal_or_its_time():
  rules = Rules(Config(stop_at_return=475.0, max_seconds=10), num_learners=1)
  assert rules.held(stopping.INTERRUPTED) == stopping.INTERRUPTED
  assert rules.held(None) == Exit("max_seconds", 1)
  assert set(stopping.RUN_ENDS) == {"stop_at_return", "max_frames", "max_seconds"}
