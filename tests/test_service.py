"""A real learner server on a free loopback port, with real actors in-process."""

import dataclasses
import threading
import time

import grpc
import numpy as np
import pytest
from conftest import free_port, upload
from grpc_health.v1 import health_pb2, health_pb2_grpc

from impala import actor as actor_lib
from impala import healthcheck, testing
from impala import learner as learner_lib
from impala.actor import Session
from impala.config import Config
from impala.transport import codec
from impala.transport.client import LearnerClient
from impala.transport.proto import impala_pb2 as pb


def client_for(port, **kw):
  return LearnerClient(Config(grpc_host=f"127.0.0.1:{port}", rpc_timeout=10.0, **kw))


def test_hello_hands_out_the_run_config(learner_server, small_config):
  learner, port = learner_server
  client = client_for(port)
  setup, config = client.hello("actor-x")
  assert setup.run_id == learner.run_id and setup.actor_index == 0
  assert (config.num_envs, config.unroll_length, config.env_id) == (
    small_config.num_envs,
    small_config.unroll_length,
    "CartPole-v1",
  )
  again, _ = client.hello("actor-x")
  other, _ = client.hello("actor-y")
  assert again.actor_index == 0 and again.seed == setup.seed  # stable across reconnects
  assert other.actor_index == 1 and other.seed != setup.seed
  client.close()


def test_protocol_mismatch_is_failed_precondition(learner_server):
  _, port = learner_server
  client = client_for(port)
  with pytest.raises(grpc.RpcError) as e:
    client.hello("actor-x", protocol_version=codec.PROTOCOL_VERSION + 1)
  assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
  assert e.value.details() == (
    f"protocol version mismatch: actor speaks protocol {codec.PROTOCOL_VERSION + 1}, "
    f"learner speaks protocol {codec.PROTOCOL_VERSION}"
  )
  client.close()


def test_weights_then_not_modified(learner_server):
  learner, port = learner_server
  client = client_for(port)
  version, params = client.decode_weights(client.weights("a", 0).result())
  assert version == learner.version == 1
  expected = learner.params_for_actor()[1]
  for module in expected:
    for name in expected[module]:
      np.testing.assert_array_equal(params[module][name], expected[module][name])
  assert client.decode_weights(client.weights("a", version).result()) is None
  client.close()


def test_health_service_reports_serving(learner_server):
  _, port = learner_server
  with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", codec.SERVICE_NAME):
      reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
      assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_healthcheck_command_exits_0_only_when_serving(learner_server, capsys):
  """What the learner image's HEALTHCHECK runs."""
  _, port = learner_server
  assert healthcheck.main([f"127.0.0.1:{port}"]) == 0
  assert capsys.readouterr().out.strip() == f"127.0.0.1:{port}: SERVING"
  assert healthcheck.main([f"127.0.0.1:{free_port()}"]) == 1  # nobody there
  assert capsys.readouterr().out.strip().endswith("UNAVAILABLE")


def test_malformed_uploads_are_rejected_and_the_server_keeps_serving(learner_server, small_config):
  learner, port = learner_server
  actor = Session(small_config)
  actor.prepare(small_config)
  unroll, info = actor.unroll(learner.params_for_actor()[1], 0)
  good = codec.encode_unroll(unroll, info)
  short = pb.Unroll.FromString(good)
  short.rewards.offset = len(short.payload) - 76
  wrong_shape = codec.encode_unroll(unroll._replace(actions=unroll.actions[:-1]), info)
  bad_action = codec.encode_unroll(unroll._replace(actions=unroll.actions + 5), info)
  nan_reward = codec.encode_unroll(unroll._replace(rewards=unroll.rewards * np.nan), info)
  wrong_dtype = codec.encode_unroll(
    unroll._replace(rewards=unroll.rewards.astype(np.float64)), info
  )
  cases = [
    (
      short.SerializeToString(),
      f"rewards: float32[5, 4] at offset {short.rewards.offset} "
      f"ends at byte {len(short.payload) + 4}, past the payload ({len(short.payload)} bytes)",
    ),
    (b"\x0b", "malformed message: wire type 3"),
    (wrong_shape, "actions: expected int32[5, 4], got int32[4, 4]"),
    (bad_action, "actions: out of range [0, 2)"),
    (nan_reward, "rewards: contains NaN or infinity"),
    (wrong_dtype, "rewards: expected float32[5, 4], got float64[5, 4]"),
  ]
  for message, details in cases:
    with pytest.raises(grpc.RpcError) as e:
      upload(port, good, message, good)  # the stream ends at the bad one
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == details
  assert len(upload(port, good, good)) == 2  # still serving: one reply per unroll
  # `good` is one unroll sent 8 times: taken once, then answered but dropped as a resend.
  assert learner.snapshot().accounting() == dict(
    received=14,
    accepted=1,
    duplicates=7,
    stale=0,
    abandoned=0,
    rejected=dict(malformed=2, wrong_shape=2, action_out_of_range=1, not_finite=1),
  )


def test_empty_and_oversize_uploads_get_precise_errors(small_config):
  parts = learner_lib.build(dataclasses.replace(small_config, max_message_mb=1))
  parts.start()
  learner = parts.learner
  grpc_server, port, _ = parts.serve(0, address="127.0.0.1")
  try:
    with pytest.raises(grpc.RpcError) as e:
      upload(port, b"")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "observations: missing"
    with pytest.raises(grpc.RpcError) as e:
      upload(port, bytes(2 * 1024 * 1024))  # refused by gRPC before the learner sees it
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in e.value.details()
    assert learner.snapshot().accounting()["rejected"] == {"malformed": 1}
  finally:
    grpc_server.stop(grace=None).wait()
    parts.close()


def test_a_resent_unroll_is_counted_once_and_a_restarted_actor_starts_afresh(
  learner_server, small_config
):
  learner, port = learner_server
  actor = Session(small_config)
  actor.prepare(small_config)
  params = learner.params_for_actor()[1]
  first, second = (codec.encode_unroll(*actor.unroll(params, 0)) for _ in range(2))
  assert len(upload(port, first, first, second, first, second)) == 5
  restarted = Session(small_config)  # same actor id, new process: a new incarnation
  restarted.prepare(small_config)
  assert restarted.incarnation != actor.incarnation
  assert len(upload(port, codec.encode_unroll(*restarted.unroll(params, 0)))) == 1
  s = learner.snapshot()
  assert (s.received, s.accepted, s.duplicates) == (6, 3, 3)
  assert s.unrolls_by_actor == {actor.actor_id: 3}


def test_actor_started_before_the_learner_connects_and_trains(small_config):
  port = free_port()
  actor = Session(Config(grpc_host=f"127.0.0.1:{port}", actor_id="early", rpc_timeout=10.0))
  stop = threading.Event()
  errors = []

  def run_actor():
    try:
      actor.run(stop, max_unrolls=12)
    except Exception as e:  # surfaced by the assertion below
      errors.append(e)

  thread = threading.Thread(target=run_actor)
  thread.start()
  parts = learner_lib.build(small_config)
  parts.start()
  learner = parts.learner
  grpc_server, _, _ = parts.serve(port, address="127.0.0.1")
  try:
    updates, deadline = 0, time.monotonic() + 60
    while updates < 3 and time.monotonic() < deadline:
      updates += learner.step(timeout=1.0)
    thread.join(timeout=60)
    assert not errors and not thread.is_alive()
    assert updates == 3 and learner.version == 4
    assert learner.snapshot().accepted == 12 and actor.sequence == 12
    assert learner.snapshot().actor_last_seen.keys() == {"early"}
  finally:
    stop.set()
    grpc_server.stop(grace=None).wait()
    parts.close()


def test_a_learner_that_falls_behind_slows_its_actors_down_and_loses_nothing():
  config = Config(num_envs=2, unroll_length=4, batch_size=1, queue_size=1, rpc_timeout=10.0)
  parts = learner_lib.build(config)
  parts.start()
  learner = parts.learner
  grpc_server, port, _ = parts.serve(0, address="127.0.0.1")
  actor = Session(Config(grpc_host=f"127.0.0.1:{port}", actor_id="busy", rpc_timeout=10.0))
  thread = threading.Thread(target=actor.run, args=(threading.Event(), 12))
  try:
    thread.start()
    # Nobody trains yet: the queue and the batcher fill up, and the actor waits.
    deadline = time.monotonic() + 60
    while actor.stalls < 5 and time.monotonic() < deadline and thread.is_alive():
      time.sleep(0.01)
    assert actor.stalls >= 5
    # The learner holds 4 (queue 1, batcher 1, batch queue 2); the actor stops at
    # MAX_IN_FLIGHT + 1 unanswered (one of them waiting in the learner's handler).
    assert actor.sequence <= 4 + actor_lib.MAX_IN_FLIGHT + 1
    while learner.snapshot().updates < 12 and time.monotonic() < deadline:
      learner.step(timeout=0.5)
    thread.join(timeout=30)
    assert not thread.is_alive()
    assert learner.snapshot().accepted == 12 and learner.snapshot().updates == 12  # nothing lost
  finally:
    grpc_server.stop(grace=None).wait()
    parts.close()


def test_an_upload_waiting_through_a_long_update_survives_the_actors_pings(small_config):
  """The learner holds the reply while its queue is full (here: no update for 10 s) and
  no data flows; an actor that pings every 2 s is not sent GOAWAY "too_many_pings"."""
  parts = learner_lib.build(dataclasses.replace(small_config, queue_size=1))
  parts.start()
  learner = parts.learner
  grpc_server, port, _ = parts.serve(0, address="127.0.0.1")
  client = client_for(port, keepalive_seconds=2.0)
  stream = client.upload_stream()
  unroll = testing.random_unroll(learner.spec)
  try:
    for sequence in range(10):  # more than the queue and the batcher hold
      stream.send(codec.encode_unroll(unroll, testing.info("pinger", sequence, 1)))
    taken = 0
    while stream.next_reply(timeout=3) is not None:
      taken += 1
    assert 0 < taken < 10
    assert stream.next_reply(timeout=10) is None  # 10 s more without a byte: 5 pings
    assert learner.step(timeout=10)
    assert stream.next_reply(timeout=10) is not None  # the same stream, still open
  finally:
    stream.close()
    client.close()
    grpc_server.stop(grace=None).wait()
    parts.close()


def test_an_actor_stops_when_the_learners_run_has_ended(serve):
  """The learner answers uploads after its run ended with its stop reason, and takes none."""
  learner, port = serve()
  config = Config(grpc_host=f"127.0.0.1:{port}", actor_id="after", rpc_timeout=10.0)
  actor = Session(config)
  actor.run(threading.Event(), max_unrolls=2)
  received = learner.snapshot().received
  learner.ended = "max_frames"
  actor.run(threading.Event())  # returns by itself
  assert actor.ended == "max_frames" and learner.snapshot().received == received
