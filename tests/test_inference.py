"""Learner-side inference (--inference learner): the learner's assembly of unrolls from
an actor's steps, its batched policy through a real server on a free loopback port, bad
steps refused precisely, an actor that leaves mid-unroll, and actors without JAX."""

import dataclasses
import os
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
from conftest import ROOT

from impala import learner as learner_lib
from impala import specs
from impala.actor import Session
from impala.config import Config
from impala.learner.inference import Assembly
from impala.transport import codec, frames

T, N = 5, 4


def steps_of(actor_id="a", count=3 * T + 1, shape=(4,), seed=0, first_step=0):
  """`count` steps of N environments, episodes ending now and then."""
  rng = np.random.default_rng(seed)
  for k in range(count):
    yield specs.Step(
      actor_id,
      first_step + k,
      rng.normal(size=(N, *shape)).astype(np.float32),
      rng.normal(size=N).astype(np.float32),
      rng.random(N) < 0.1,
      rng.random(N) < 0.05,
    )


def assemble(assembly, steps):
  """Feeds `steps`, acting with action = step number; returns the completed unrolls."""
  done = []
  for step in steps:
    completed = assembly.observe(step)
    if completed is not None:
      done.append(completed)
    logits = np.full((N, 2), float(step.step), np.float32)
    assembly.acted(np.full(N, step.step % 2, np.int32), logits, assembly.core_state, 7)
  return done


def test_assembled_unrolls_overlap_by_one_and_carry_each_step_once():
  spec = specs.UnrollSpec(T, N, (4,), np.dtype(np.float32), 2)
  steps = list(steps_of())
  unrolls = assemble(Assembly(spec, 1, 1e6, steps[0]), steps)
  assert len(unrolls) == 3
  for k, (unroll, info) in enumerate(unrolls):
    spec.check(unroll)
    assert (info.sequence, info.params_version, info.actor_id) == (k, 7, "a")
    window = steps[k * T : (k + 1) * T + 1]
    np.testing.assert_array_equal(unroll.observations, [s.observations for s in window])
    np.testing.assert_array_equal(unroll.terminated, [s.terminated for s in window])
    np.testing.assert_array_equal(
      unroll.rewards, [s.rewards for s in window[1:]]
    )  # r_t: obs_t -> obs_t+1
    np.testing.assert_array_equal(unroll.actions[:, 0], [s.step % 2 for s in window[:-1]])
    np.testing.assert_array_equal(unroll.behaviour_logits[:, 0, 0], [s.step for s in window[:-1]])
  assert len({info.incarnation for _, info in unrolls}) == 1


def test_a_stream_that_starts_mid_episode_numbers_its_unrolls_from_1():
  """After a reconnect the intake must not count the episodes it joins halfway: a gap in
  the sequence says so (see intake._Sender)."""
  spec = specs.UnrollSpec(T, N, (4,), np.dtype(np.float32), 2)
  steps = list(steps_of(first_step=40))
  assembly = Assembly(spec, 1, 1e6, steps[0])
  unrolls = assemble(assembly, steps[: T + 2])
  assert [info.sequence for _, info in unrolls] == [1]
  assert assembly.unfinished  # one step of the next unroll is under way


def test_stacked_frames_are_rebuilt_from_the_newest_frame_as_the_actor_stacks_them():
  """Whole stacks on the stream's first step, then the newest frame alone: the learner's
  stacks equal the true ones (zeros before each episode's first frame)."""
  k, steps = 4, 2 * T + 1
  rng = np.random.default_rng(1)
  done = rng.random((steps, N)) < 0.2
  newest = rng.integers(1, 255, (steps, N, 3, 3), dtype=np.uint8)
  truth = frames.rebuild(newest, rng.integers(1, 255, (N, 3, 3, k - 1), dtype=np.uint8), done)
  spec = specs.UnrollSpec(T, N, (3, 3, k), np.dtype(np.uint8), 2)
  sent = [
    specs.Step(
      "a", t, truth[t] if t == 0 else newest[t], np.zeros(N, np.float32), done[t], done[t] & False
    )
    for t in range(steps)
  ]
  unrolls = assemble(Assembly(spec, k, 1e6, sent[0]), sent)
  np.testing.assert_array_equal(
    np.concatenate([unrolls[0][0].observations, unrolls[1][0].observations[1:]]), truth
  )


def act_stream(port: int):
  channel = grpc.insecure_channel(f"127.0.0.1:{port}")
  return channel, channel.stream_stream(codec.method("Act"))


def send(port: int, *steps: specs.Step) -> list:
  """Sends steps on one Act stream; returns the decoded actions."""
  channel, call = act_stream(port)
  with channel:
    replies = call(iter([codec.encode_observations(s) for s in steps]), timeout=30)
    return [codec.decode_actions(r, N, 2)[0] for r in replies]


def cartpole_steps(actor_id="hostile", count=3):
  return list(steps_of(actor_id, count))


BAD = {
  "wrong shape": (
    lambda s: s._replace(observations=np.zeros((N, 5), np.float32)),
    "observations: expected observations float32[4, 4], got float32[4, 5]",
  ),
  "wrong dtype": (
    lambda s: s._replace(observations=s.observations.astype(np.float64)),
    "observations: expected observations float32[4, 4], got float64[4, 4]",
  ),
  "not finite": (
    lambda s: s._replace(observations=np.full((N, 4), np.nan, np.float32)),
    "observations: contains NaN or infinity",
  ),
  "rewards of another batch": (
    lambda s: s._replace(rewards=np.zeros(N + 1, np.float32)),
    "rewards: expected float32[4], got float32[5]",
  ),
  "flags not bool": (
    lambda s: s._replace(terminated=np.zeros(N, np.int32)),
    "terminated: expected bool[4], got int32[4]",
  ),
  "a step skipped": (
    lambda s: s._replace(step=s.step + 1),
    "step: expected 2 (one more than the stream's last), got 3",
  ),
  "another actor's id": (
    lambda s: s._replace(actor_id="other"),
    "actor_id: 'other' on the stream of 'hostile' (one actor id sends on one stream)",
  ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_steps_are_refused_precisely_and_the_learner_serves_on(serve, case):
  learner, port = serve(inference="learner")
  mutate, message = BAD[case]
  steps = cartpole_steps()
  steps[2] = mutate(steps[2])
  with pytest.raises(grpc.RpcError) as e:
    send(port, *steps)
  assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert e.value.details() == message
  assert sum(learner.snapshot().rejected.values()) == 1
  honest = send(port, *cartpole_steps("honest", 2))  # served as before
  assert len(honest) == 2 and all(a.shape == (N,) for a in honest)


def test_garbage_and_missing_tensors_are_refused(serve):
  learner, port = serve(inference="learner")
  for raw, message in (
    (b"\xff\xff\xff", "malformed message"),
    (b"", "observations: missing"),
  ):
    channel, call = act_stream(port)
    with channel, pytest.raises(grpc.RpcError) as e:
      list(call(iter([raw]), timeout=10))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details().startswith(message), e.value.details()
  assert learner.snapshot().rejected == {"malformed": 2}


def test_an_actor_that_leaves_mid_unroll_loses_that_unroll_only(serve):
  learner, port = serve(inference="learner")
  channel, call = act_stream(port)
  outbox = [codec.encode_observations(s) for s in steps_of("leaver", T + 3)]
  replies = call(iter(outbox))
  assert len([next(replies) for _ in outbox]) == T + 3  # one unroll made, one under way
  channel.close()  # the actor is gone, mid-unroll
  stayer = Session(Config(grpc_host=f"127.0.0.1:{port}", actor_id="stayer", rpc_timeout=10.0))
  stayer.run(threading.Event(), max_unrolls=3)
  deadline = time.monotonic() + 10
  while learner.snapshot().unfinished < 1:  # the server notices the disconnect
    assert time.monotonic() < deadline, learner.snapshot()
    time.sleep(0.05)  # polling the learner's counters, with a deadline
  s = learner.snapshot()
  assert s.unfinished == 1 and s.accepted == s.received == 1 + 3 and s.rejected == {}
  assert s.unrolls_by_actor == {"leaver": 1, "stayer": 3}


def test_sessions_act_through_the_learner_for_exactly_their_unrolls(serve):
  learner, port = serve(inference="learner")
  sessions = [
    Session(Config(grpc_host=f"127.0.0.1:{port}", actor_id=f"s{i}", rpc_timeout=10.0))
    for i in range(3)
  ]
  threads = [threading.Thread(target=s.run, args=(threading.Event(), 4)) for s in sessions]
  for t in threads:
    t.start()
  deadline = time.monotonic() + 60
  while any(t.is_alive() for t in threads):  # the learner trains: its queue never holds them up
    assert time.monotonic() < deadline, [s.counters() for s in sessions]
    learner.step(timeout=0.1)
  # 4 unrolls need 4 T + 1 observations; the actor steps once more after the last.
  assert all(s.counters()["frames"] == (4 * T + 1) * N for s in sessions)
  s = learner.snapshot()
  assert s.accepted == s.received == 12 and s.unfinished == 0


def test_the_policy_runs_once_for_the_steps_of_streams_waiting_together(small_config):
  config = dataclasses.replace(small_config, inference="learner", inference_wait_ms=2000.0)
  parts = learner_lib.build(config)
  learner, inference = parts.learner, parts.inference
  parts.start()
  try:
    assemblies = []
    for i in range(3):
      first = next(steps_of(f"a{i}", 1, seed=i))
      assemblies.append(Assembly(learner.spec, 1, 1e6, first))
      assemblies[-1].observe(first)
      inference.opened()
    acted = []
    threads = [
      threading.Thread(target=lambda a=a: acted.append(inference.act(a, lambda: True)))
      for a in assemblies
    ]
    for t in threads:
      t.start()
    for t in threads:
      t.join(30)
    assert acted == [True] * 3 and (inference.batches, inference.requests) == (1, 3)
    assert all(a.actions.shape == (N,) and a.actions.dtype == np.int32 for a in assemblies)
  finally:
    parts.close()


NO_JAX = (
  "import sys; sys.modules['jax'] = None; from impala import cli; code = cli.actor(); "
  "assert 'impala.actor.rollout' not in sys.modules; sys.exit(code)"
)


def actor_without_jax(port: int) -> subprocess.Popen:
  env = dict(os.environ, GRPC_HOST=f"127.0.0.1:{port}", IMPALA_ACTOR_ID="slim")
  return subprocess.Popen(
    [sys.executable, "-c", NO_JAX], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True
  )


def test_an_actor_without_jax_acts_for_learner_side_inference(serve):
  learner, port = serve(inference="learner")
  actor = actor_without_jax(port)
  try:
    deadline = time.monotonic() + 60
    while learner.snapshot().accepted < 3:
      assert actor.poll() is None and time.monotonic() < deadline, actor.stderr.read()
      time.sleep(0.1)  # polling the learner's counters, with a deadline
    learner.ended = "max_frames"
    learner.intake.close()  # as the program does: a step held by backpressure is let go
    _, stderr = actor.communicate(timeout=30)
  finally:
    actor.kill()
  assert actor.returncode == 0, stderr
  assert "slim stopped (the learner's run ended: max_frames)" in stderr


def test_an_actor_without_jax_says_it_cannot_act_for_actor_side_inference(serve):
  _, port = serve()
  _, stderr = actor_without_jax(port).communicate(timeout=60)
  assert (
    "actor_client.py: error: the learner's run acts in its actors (--inference actor)" in stderr
  )
  assert "Traceback" not in stderr


def test_the_actor_requirements_are_the_full_ones_without_jax():
  def pins(name):
    lines = open(os.path.join(ROOT, name)).read().splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}

  actor, full = pins("requirements-actor.txt"), pins("requirements.txt")
  assert actor <= full, actor - full
  assert not any(line.startswith(("jax", "dm-haiku", "rlax", "optax")) for line in actor)
