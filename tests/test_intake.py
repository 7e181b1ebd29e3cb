"""The learner's parts in-process, without gRPC: the intake's admission and accounting,
the episodes it derives, the actor registry, and the unroll spec's checks."""

import threading

import numpy as np
import pytest

from impala import config as config_lib
from impala import specs, testing
from impala.actor.rollout import Rollout
from impala.learner import episodes, intake, registry, snapshot
from impala.transport.port import NotReady

SPEC = testing.cartpole_spec(unroll_length=5, num_envs=4)


def make_intake(
  version=lambda: 10, queue_size=8, max_policy_lag=0, seen=lambda actor: None, spec=SPEC
):
  return intake.Intake(lambda u, i: spec.check(u), version, seen, queue_size, max_policy_lag)


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
  first = testing.info("a", sequence=0)
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
  assert counts.by_actor == {"a": 2} and seen == ["a"] * 3


def test_episode_figures_are_the_ones_the_actor_counted_derived_from_its_trajectories():
  config = config_lib.Config(num_envs=8, unroll_length=7, seed=3)
  rollout = Rollout(config)
  params = rollout.network.init(np.array([0, 3], np.uint32))
  unrolls = make_intake(queue_size=100, spec=rollout.spec)
  reported_returns, reported_lengths = [], []
  for sequence in range(12):  # random policy: CartPole episodes of ~20 steps, across unrolls
    unroll, returns, lengths = rollout.unroll(params)
    reported_returns += returns.tolist()
    reported_lengths += lengths.tolist()
    # What the actor reports is ignored: here, 100 episodes of return 500.
    lie = specs.UnrollInfo("a", sequence, 0, np.full(100, 500, np.float32), np.ones(100, np.int32))
    assert unrolls.enqueue(unroll, lie) == "accepted"
  counts, returns, lengths = unrolls.counts()
  assert counts.episodes == len(reported_returns) > 8
  assert returns == reported_returns[-100:] and lengths == reported_lengths[-100:]


def test_an_episode_joined_halfway_is_not_reported():
  spec = testing.cartpole_spec(unroll_length=2, num_envs=1)
  flags = np.zeros((3, 1), bool)
  unroll = spec.zeros()._replace(rewards=np.ones((2, 1), np.float32))
  ends = unroll._replace(terminated=flags | np.array([[0], [0], [1]], bool))
  under_way = episodes.UnderWay(1, from_start=False)  # a gap in the sender's sequence
  assert episodes.ended(unroll, under_way)[0].size == 0
  assert episodes.ended(ends, under_way)[0].size == 0  # its start was not seen
  # obs_2 ended it; the next unroll's step 0 is the reset step, then 1 step to an end.
  again = ends._replace(terminated=np.array([[1], [0], [1]], bool))
  returns, lengths = episodes.ended(again, under_way)
  assert returns.tolist() == [1.0] and lengths.tolist() == [1]


def test_parameters_from_the_future_and_impossible_reports_are_refused():
  unrolls = make_intake(version=lambda: 10)
  with pytest.raises(specs.InvalidUnroll, match="params_version: 18446744073709551615 is ahead"):
    unrolls.enqueue(testing.random_unroll(SPEC), testing.info(params_version=2**64 - 1))
  assert unrolls.counts()[0].rejected == {"version_ahead": 1}
  report = testing.info(sequence=0)  # A3C: the actor's report of one unroll, 5 steps of 4 envs
  cases = {
    "13 episodes cannot end in 5 steps of 4": report._replace(
      episode_returns=np.ones(13, np.float32), episode_lengths=np.ones(13, np.int32)
    ),
    r"must be in \[1, 5\]": report._replace(
      episode_returns=np.ones(1, np.float32), episode_lengths=np.array([-1], np.int32)
    ),
    "larger than --max-abs-input": report._replace(
      episode_returns=np.array([1e30], np.float32), episode_lengths=np.array([5], np.int32)
    ),
  }
  for message, info in cases.items():
    with pytest.raises(specs.InvalidUnroll, match=message):
      SPEC.check_report(info, max_abs=1e6)
  SPEC.check_report(testing.info(returns=(3, 4)), max_abs=1e6)


def test_tables_of_actors_forget_the_least_recent_and_the_old(monkeypatch):
  forgotten = []
  table = registry.Recent(size=2, ttl=60.0, forget=lambda key, value: forgotten.append(key))
  for key in "abac":  # a is used again: b is the least recent when c comes
    table.use(key, lambda: 0)
  assert forgotten == ["b"] and table.values() == {"a": 0, "c": 0}
  now = registry.time.monotonic()
  monkeypatch.setattr(registry.time, "monotonic", lambda: now + 61.0)
  table.use("d", lambda: 0)
  assert forgotten == ["b", "a", "c"] and len(table) == 1


def test_memory_of_actors_is_bounded_however_many_ids_upload(monkeypatch):
  monkeypatch.setattr(registry, "MAX_ACTORS", 50)
  unrolls, actors = make_intake(queue_size=1000), registry.ActorRegistry(0, 1, seed=0)
  unroll = testing.random_unroll(SPEC)
  for n in range(300):
    actors.hello(f"id-{n}")
    unrolls.enqueue(unroll, testing.info(f"id-{n}"))
  counts = unrolls.counts()[0]
  assert len(counts.by_actor) == 51 and counts.by_actor[intake.FORGOTTEN] == 250
  assert sum(counts.by_actor.values()) == counts.accepted == 300
  assert len(actors.last_seen()) == 50 and len(unrolls._senders) == 50


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
  with pytest.raises(NotReady):
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
