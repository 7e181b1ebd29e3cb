"""The learner's parts in-process, without gRPC: the intake's admission and accounting,
the actor registry, and the unroll spec's checks."""

import threading

import numpy as np
import pytest

from impala import specs, testing
from impala.learner import intake, registry, snapshot

SPEC = testing.cartpole_spec(unroll_length=5, num_envs=4)


def make_intake(version=lambda: 1, queue_size=8, max_policy_lag=0, seen=lambda actor: None):
  return intake.Intake(SPEC.check, version, seen, queue_size, max_policy_lag)


def test_unrolls_acted_by_too_old_parameters_are_dropped_when_asked():
  unrolls = make_intake(version=lambda: 10, max_policy_lag=3)
  unroll = testing.random_unroll(SPEC)
  assert unrolls.enqueue(unroll, testing.info(sequence=0, params_version=7)) == "accepted"
  assert unrolls.enqueue(unroll, testing.info(sequence=1, params_version=6)) == "stale"
  counts, _, _ = unrolls.counts()
  assert (counts.accepted, counts.stale, counts.received) == (1, 1, 2)
  assert unrolls.queue.qsize() == 1


def test_resends_are_dropped_per_incarnation_and_everything_is_counted():
  seen = []
  unrolls = make_intake(seen=seen.append)
  unroll = testing.random_unroll(SPEC)
  first = testing.info("a", sequence=0, returns=(3, 4))
  assert unrolls.enqueue(unroll, first) == "accepted"
  assert unrolls.enqueue(unroll, first) == "duplicate"
  assert unrolls.enqueue(unroll, first._replace(incarnation=1)) == "accepted"  # a new process
  with pytest.raises(specs.InvalidUnroll, match=r"actions: out of range \[0, 2\)"):
    unrolls.enqueue(unroll._replace(actions=unroll.actions + 2), first._replace(sequence=1))
  counts, returns, lengths = unrolls.counts()
  assert (counts.received, counts.accepted, counts.duplicates, counts.rejected) == (
    4,
    2,
    1,
    {"action_out_of_range": 1},
  )
  assert counts.by_actor == {"a": 2} and counts.episodes == 4
  assert returns == [3, 4, 3, 4] and lengths == [3, 4, 3, 4] and seen == ["a"] * 3


def test_a_full_queue_holds_an_upload_until_it_is_abandoned_and_counted():
  unrolls = make_intake(queue_size=1)
  unroll = testing.random_unroll(SPEC)
  assert unrolls.enqueue(unroll, testing.info(sequence=0)) == "accepted"
  waiting = threading.Event()

  def keep_waiting():
    waiting.set()
    return not unrolls.closed.is_set()

  outcome = []
  sender = threading.Thread(
    target=lambda: outcome.append(unrolls.enqueue(unroll, testing.info(sequence=1), keep_waiting))
  )
  sender.start()
  assert waiting.wait(timeout=10)  # it waits for room: the backpressure on its actor
  unrolls.close()
  # Counted by the time close returns: the learner's last figures add up.
  counts = unrolls.counts()[0]
  assert counts.abandoned == 1 and counts.received == counts.accepted + counts.abandoned == 2
  sender.join(timeout=10)
  assert outcome == [None]


def test_the_registry_keeps_indices_and_seeds_and_routes_actors_in_turn():
  alone = registry.ActorRegistry(0, 1, seed=7)
  a, b = alone.hello("a"), alone.hello("b")
  assert alone.hello("a") == a and (a[0], b[0]) == (0, 1) and a[1] != b[1]
  assert a[2] == b[2] == "" and alone.connected() == 2
  first = registry.ActorRegistry(0, 2, seed=7)
  with pytest.raises(registry.NotReady):
    first.hello("a")
  first.addresses = ["learner-0:1", "learner-1:1"]
  assert [first.hello(actor)[2] for actor in "abca"] == ["", "learner-1:1", "", ""]


def test_the_spec_declares_every_field_once():
  spec = testing.cartpole_spec(unroll_length=3, num_envs=2, lstm_size=8)
  zeros = spec.zeros(n=6)
  assert zeros.observations.shape == (4, 6, 4) and zeros.behaviour_logits.shape == (3, 6, 2)
  assert [s.shape for s in zeros.core_state] == [(6, 8), (6, 8)]
  spec.check(testing.random_unroll(spec))
  wrong = testing.random_unroll(spec)._replace(core_state=())
  with pytest.raises(specs.InvalidUnroll, match=r"core_state: expected 2 float32\[2, 8\]"):
    spec.check(wrong)
  assert np.isnan(snapshot.mean([]))
