"""A hostile client against a real learner server on a free loopback port: what it sends
is refused with a precise status, and the learner keeps its parameters finite, does not
stop, and keeps serving the honest actor beside it."""

import collections
import dataclasses
import logging
import threading
import time

import grpc
import jax
import numpy as np
import pytest
from conftest import upload
from grpc_health.v1 import health_pb2, health_pb2_grpc

from impala import learner as learner_lib
from impala import progress, specs, testing
from impala.actor import Session
from impala.actor.modes import MAX_IN_FLIGHT
from impala.transport import codec, server
from impala.transport.proto import impala_pb2 as pb


def unroll_of(learner, seed=0, **fields):
  return testing.random_unroll(learner.spec, seed=seed)._replace(**fields)


def refused(port, *messages) -> grpc.RpcError:
  with pytest.raises(grpc.RpcError) as e:
    upload(port, *messages)
  return e.value


def all_finite(learner) -> bool:
  return all(np.isfinite(x).all() for x in jax.tree.leaves(learner.state()))


def test_huge_finite_values_are_refused_and_cannot_poison_the_parameters(serve):
  learner, port = serve()
  huge = np.full(learner.spec.layout().rewards[0], 3e38, np.float32)
  for field in ("rewards", "observations"):
    value = huge if field == "rewards" else np.full_like(unroll_of(learner).observations, 3e38)
    e = refused(port, codec.encode_unroll(unroll_of(learner, **{field: value}), testing.info()))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == f"{field}: magnitude 3e+38 exceeds the bound 1e+06 (--max-abs-input)"
  assert learner.snapshot().rejected == {"too_large": 2}
  # With the bound lifted, the update itself refuses to make the parameters non-finite.
  lifted, lifted_port = serve(max_abs_input=3.4e38)
  before = lifted.state()
  messages = testing.messages(unroll_of(lifted, rewards=huge), testing.info(params_version=1))
  assert len(upload(lifted_port, next(messages), next(messages))) == 2
  assert lifted.step(timeout=10)
  s = lifted.snapshot(metrics=True)
  assert s.updates == 1 and s.skipped_updates == 1 and all_finite(lifted)
  same = jax.tree.map(np.array_equal, before, lifted.state())
  assert all(jax.tree.leaves(same))


def test_reported_episodes_cannot_stop_the_run_nor_break_its_mean(serve):
  learner, port = serve()
  no_ends = dict(terminated=np.zeros((6, 4), bool), truncated=np.zeros((6, 4), bool))
  for returns in ((1e30,) * 100, (500.0,) * 100, (-3e38,) * 100):
    info = specs.UnrollInfo(
      "liar", 0, 1, np.array(returns, np.float32), np.full(100, 2**31 - 1, np.int32)
    )
    messages = testing.messages(unroll_of(learner, **no_ends), info)
    assert len(upload(port, next(messages), next(messages))) == 2
  while learner.step(timeout=1):
    pass
  s = learner.snapshot()
  assert s.accepted == 6 and s.episodes == 0 and learner.votes().return_count == 0
  assert np.isnan(s.return_mean_100)  # no episode ended in what it sent: none is counted


def test_parameters_from_the_future_are_refused(serve):
  learner, port = serve()
  for version in (10**12, 2**64 - 1):
    e = refused(port, codec.encode_unroll(unroll_of(learner), testing.info(params_version=version)))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.details() == f"params_version: {version} is ahead of the learner's newest version 1"
  assert learner.snapshot().policy_lag == 0.0


def test_garbage_and_bad_ids_get_invalid_argument_on_every_method(serve, caplog):
  learner, port = serve()
  with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    for name in ("Hello", "GetWeights"):
      with pytest.raises(grpc.RpcError) as e:
        channel.unary_unary(codec.method(name))(b"\x0b\xff\xff", timeout=10)
      assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, name
      assert "malformed message" in e.value.details()
    hello = channel.unary_unary(codec.method("Hello"), pb.HelloRequest.SerializeToString)
    for bad in ("", "x" * 8_000_000, "a b", "-dash", "ü"):
      request = pb.HelloRequest(actor_id=bad, protocol_version=codec.PROTOCOL_VERSION)
      with pytest.raises(grpc.RpcError) as e:
        hello(request, timeout=10)
      assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
      assert e.value.details().startswith("actor_id: ") and len(e.value.details()) < 200
  info = testing.info(actor_id="x" * 129)
  e = refused(port, codec.encode_unroll(unroll_of(learner), info))
  assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "actor_id" in e.details()
  assert "Traceback" not in caplog.text and learner.snapshot().accepted == 0


def check_health(port, service: str = "") -> str:
  with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
  return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def test_idle_streams_cannot_starve_calls_or_a_real_actor(serve, small_config):
  learner, port = serve(max_upload_streams=64, stream_idle_timeout=6.0)
  channel = grpc.insecure_channel(f"127.0.0.1:{port}")
  never = threading.Event()
  idle = [channel.stream_stream(codec.method("Upload"))(iter(never.wait, True)) for _ in range(300)]
  try:
    deadline = time.monotonic() + 30
    while check_health(port, codec.SERVICE_NAME) != "NOT_SERVING":  # 64 streams hold it
      assert time.monotonic() < deadline
    assert check_health(port) == "SERVING"  # alive: only the uploads are full
    # Hello, GetWeights and health are served all the same, within their deadline.
    actor = Session(dataclasses.replace(small_config, grpc_host=f"127.0.0.1:{port}"))
    stop = threading.Event()
    acting = threading.Thread(target=actor.run, args=(stop,))
    acting.start()
    # The idle ones are closed after 6 s: the actor's stream then gets in.
    deadline = time.monotonic() + 60
    while learner.snapshot().accepted < 4:
      assert time.monotonic() < deadline, learner.snapshot().accounting()
      learner.step(timeout=0.5)
    stop.set()
    acting.join(timeout=30)
    # Refused at first, it retried; the refusals did not pile up its unrolls (one in
    # flight, one being answered).
    assert actor.reconnects >= 1 and len(actor.unanswered) <= MAX_IN_FLIGHT + 1
    codes = collections.Counter(call.code() for call in idle)
    assert codes == {grpc.StatusCode.CANCELLED: 64, grpc.StatusCode.RESOURCE_EXHAUSTED: 236}
    assert check_health(port, codec.SERVICE_NAME) == "SERVING"
  finally:
    never.set()
    channel.close()


def test_one_actor_id_holds_a_bounded_number_of_streams(serve):
  learner, port = serve(max_streams_per_actor=2)
  channel = grpc.insecure_channel(f"127.0.0.1:{port}")
  unroll = unroll_of(learner)
  try:
    releases, calls = [], []
    for n in range(3):  # each sends one unroll, then holds its stream open
      message = codec.encode_unroll(unroll, testing.info("greedy", sequence=n, params_version=1))
      releases.append(threading.Event())
      requests = _then_wait(message, releases[-1])
      calls.append(channel.stream_stream(codec.method("Upload"))(requests))
    outcomes = []  # the streams reach the server in any order: one of the three is refused
    for call in calls:
      try:
        outcomes.append(pb.UploadReply.FromString(next(call)).learner_version)
      except grpc.RpcError as e:
        outcomes.append(e.code())
        assert "at most 2 streams open (--max-streams-per-actor)" in e.details()
    assert sorted(map(str, outcomes)) == ["1", "1", str(grpc.StatusCode.RESOURCE_EXHAUSTED)]
  finally:
    for release in releases:
      release.set()
    channel.close()


def _then_wait(message: bytes, release: threading.Event):
  yield message
  release.wait()


def test_repeated_log_lines_are_held_back():
  limit = progress.RateLimit(burst=3, period=60.0)
  records = [
    logging.LogRecord("impala", logging.INFO, "", 0, "actor %s connected", (n,), None)
    for n in range(10)
  ]
  assert [limit.filter(r) for r in records] == [True] * 3 + [False] * 7
  other = logging.LogRecord("impala", logging.INFO, "", 0, "another kind", (), None)
  assert limit.filter(other)


def test_a_second_learner_on_a_busy_port_is_refused(serve, small_config):
  learner, port = serve()
  with pytest.raises(server.BindError, match=f"cannot listen on 127.0.0.1:{port} \\(port in use"):
    learner_lib.build(small_config).serve(port, address="127.0.0.1")
