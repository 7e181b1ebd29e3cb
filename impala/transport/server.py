"""The learner's gRPC service: protobuf in, arrays to the Learner, bytes out.

Bad input is answered with a precise status and message and never reaches the
update: INVALID_ARGUMENT for a malformed request, unroll or step (it ends that actor's
stream), FAILED_PRECONDITION for a protocol mismatch, UNAUTHENTICATED for a
call without the run's token, RESOURCE_EXHAUSTED for an upload stream over the
limits. Upload and Act streams are bounded together (Streams), so that Hello,
GetWeights and health checks always have threads of their own. Act streams share one
batched policy (learner/inference.py). TLS (optionally mutual) is configured from
files.
"""

from __future__ import annotations

import collections
import hmac
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from impala import specs
from impala.learner import Learner, NotReady
from impala.learner.inference import Assembly, Inference
from impala.transport import codec
from impala.transport.credentials import bearer, channel_options, server_credentials
from impala.transport.proto import impala_pb2 as pb

log = logging.getLogger("impala.learner")

HEALTH_PREFIX = "/grpc.health.v1.Health/"
UNARY_THREADS = 16  # the server's threads that upload streams cannot take


class Streams:
  """The upload streams being served: at most `limit` at once, `per_actor` for one actor
  id, and each closed once it has waited `idle_timeout` s for its next unroll (a stream
  that sends nothing would hold its thread for good). `on_full(full)` is told, under the
  lock, when the streams reach and leave `limit`."""

  def __init__(self, limit: int, per_actor: int, idle_timeout: float, on_full: Callable):
    self.limit, self.per_actor, self.idle_timeout = limit, per_actor, idle_timeout
    self._on_full = on_full
    self._lock = threading.Lock()
    self._open: dict[int, list] = {}  # key -> [context, waiting since or None, actor id]
    self._by_actor: collections.Counter = collections.Counter()
    self._keys = itertools.count()
    self._closed = threading.Event()
    threading.Thread(target=self._close_idle, name="idle-streams", daemon=True).start()

  def open(self, context) -> int | None:
    """The new stream's key, or None when `limit` streams are open."""
    with self._lock:
      if len(self._open) >= self.limit:
        return None
      key = next(self._keys)
      self._open[key] = [context, time.monotonic(), None]
      if len(self._open) == self.limit:
        self._on_full(True)
    return key

  def receive(self, key: int, requests: Iterator[bytes]) -> Iterator[bytes]:
    """The stream's requests; ends when the client ends it or the stream is closed."""
    entry = self._open[key]
    while True:
      entry[1] = time.monotonic()
      try:
        raw = next(requests)
      except (StopIteration, grpc.RpcError):  # ended, cancelled (idle), or disconnected
        return
      entry[1] = None
      yield raw

  def identify(self, key: int, actor_id: str) -> str | None:
    """Names the actor that sends on the stream; returns the actor that the stream is
    already another's, or "" if `actor_id` holds `per_actor` streams already."""
    with self._lock:
      entry = self._open[key]
      if entry[2] == actor_id:
        return None
      if entry[2] is not None:
        return entry[2]
      if self._by_actor[actor_id] >= self.per_actor:
        return ""
      entry[2] = actor_id
      self._by_actor[actor_id] += 1
      return None

  def close(self, key: int):
    with self._lock:
      if len(self._open) == self.limit:
        self._on_full(False)
      actor = self._open.pop(key)[2]
      if actor is not None:
        self._by_actor[actor] -= 1
        if not self._by_actor[actor]:
          del self._by_actor[actor]

  def stop(self):
    self._closed.set()

  def _close_idle(self):
    while not self._closed.wait(min(1.0, self.idle_timeout / 4)):
      now = time.monotonic()
      with self._lock:
        idle = [
          e for e in self._open.values() if e[1] is not None and now - e[1] > self.idle_timeout
        ]
      for context, _, actor in idle:
        who = f"of actor {actor}" if actor else "that sent nothing"
        log.info("closed an upload stream %s: idle for %.0f s", who, self.idle_timeout)
        context.cancel()


class BindError(OSError):
  """The server could not listen on its address."""


class LearnerService:
  """Implements the Learner service on top of a `Learner`."""

  def __init__(self, learner: Learner, streams: Streams, inference: Inference):
    self.learner, self.streams, self.inference = learner, streams, inference
    self._weights_lock = threading.Lock()
    self._weights = (0, b"")  # (version, serialized Weights): each version serialized once

  def Hello(self, raw: bytes, context) -> pb.Setup:
    request = _parse(pb.HelloRequest, raw, context)
    if request.protocol_version != codec.PROTOCOL_VERSION:
      context.abort(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"protocol version mismatch: actor speaks protocol {request.protocol_version}, "
        f"learner speaks protocol {codec.PROTOCOL_VERSION}",
      )
    try:
      codec.check_actor_id(request.actor_id)
    except codec.DecodeError as e:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
    try:
      index, seed, elsewhere = self.learner.actors.hello(request.actor_id)
    except NotReady as e:  # the actor retries
      context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
    if elsewhere:
      log.info("actor %s sent to learner %s", request.actor_id, elsewhere)
      return pb.Setup(
        protocol_version=codec.PROTOCOL_VERSION,
        run_id=self.learner.run_id,
        learner_address=elsewhere,
      )
    log.info("actor %s connected (index %d)", request.actor_id, index)
    return codec.encode_setup(self.learner.config, self.learner.run_id, index, seed)

  def Upload(self, requests: Iterator[bytes], context) -> Iterator[pb.UploadReply]:
    """One actor's stream of serialized unrolls (the request deserializer is the identity:
    decoding is zero-copy); one reply per queued unroll, sent once it is queued."""
    key = self._open(context)
    try:
      for raw in self.streams.receive(key, requests):
        if self.learner.ended:  # the run is over: the actor stops (or waits for the next)
          yield pb.UploadReply(learner_version=self.learner.version, run_ended=self.learner.ended)
          return
        try:
          unroll, info = codec.decode_unroll(raw)
        except codec.DecodeError as e:
          self.learner.intake.reject("malformed")
          context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        self._identify(key, info.actor_id, context)
        if not self._enqueue(unroll, info, context):
          if self.learner.ended:
            yield pb.UploadReply(learner_version=self.learner.version, run_ended=self.learner.ended)
          return
        yield pb.UploadReply(learner_version=self.learner.version)  # also for a dropped one
    finally:
      self.streams.close(key)

  def Act(self, requests: Iterator[bytes], context) -> Iterator[bytes]:
    """One actor's stream of steps (learner-side inference): the actions for each, once the
    policy has run on it; the unrolls the steps make go to the intake."""
    key = self._open(context)
    assembly = None
    self.inference.opened()
    try:
      for raw in self.streams.receive(key, requests):
        if self.learner.ended:
          yield codec.encode_run_ended(self.learner.ended)
          return
        try:
          step = codec.decode_observations(raw)
        except codec.DecodeError as e:
          self.learner.intake.reject("malformed")
          context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        self._identify(key, step.actor_id, context)
        try:
          if assembly is None:
            learner = self.learner
            assembly = Assembly(
              learner.spec, learner.env.frame_stack, learner.config.max_abs_input, step
            )
          completed = assembly.observe(step)
        except specs.InvalidUnroll as e:
          self.learner.intake.reject(e.reason)
          context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if completed is not None and not self._enqueue(*completed, context):
          if self.learner.ended:
            yield codec.encode_run_ended(self.learner.ended)
          return
        if not self.inference.act(assembly, context.is_active):
          return
        yield codec.encode_actions(assembly.actions)
    finally:
      self.inference.closed()
      if assembly is not None and assembly.unfinished:
        self.learner.intake.count_unfinished()
      self.streams.close(key)

  def _open(self, context) -> int:
    key = self.streams.open(context)
    if key is None:
      context.abort(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"the learner serves at most {self.streams.limit} actor streams at once "
        "(--max-upload-streams); retry later",
      )
    return key

  def _identify(self, key: int, actor_id: str, context):
    owner = self.streams.identify(key, actor_id)
    if owner:
      self.learner.intake.reject("wrong_actor")
      context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"actor_id: {actor_id!r} on the stream of {owner!r} (one actor id sends on one stream)",
      )
    if owner is not None:
      context.abort(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"actor {actor_id}: one actor id may hold at most {self.streams.per_actor} streams "
        "open (--max-streams-per-actor)",
      )

  def _enqueue(self, unroll, info: specs.UnrollInfo, context) -> bool:
    """Queues an unroll (or refuses it, ending the stream); False if it was abandoned: the
    actor went away or the learner is stopping."""
    try:
      outcome = self.learner.intake.enqueue(unroll, info, keep_waiting=context.is_active)
    except specs.InvalidUnroll as e:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
    return outcome is not None

  def GetWeights(self, raw: bytes, context) -> bytes:
    """Returns serialized bytes (the response serializer is the identity), made once per version."""
    request = _parse(pb.WeightsRequest, raw, context)
    if request.have_version == self.learner.version:
      return codec.NOT_MODIFIED
    with self._weights_lock:
      version, params = self.learner.params_for_actor()
      if self._weights[0] != version:
        self._weights = (version, codec.encode_weights(version, params))
      return self._weights[1]


def _parse(message_type, raw: bytes, context):
  try:
    return codec.parse_request(message_type, raw)
  except codec.DecodeError as e:
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))


class TokenCheck(grpc.ServerInterceptor):
  """Refuses every call but health checks unless it carries the run's token
  (compared in constant time)."""

  def __init__(self, token: str, on_refused):
    self._expected = bearer(token)[0][1].encode()
    self._on_refused = on_refused

  def intercept_service(self, continuation, details):
    handler = continuation(details)
    if handler is None or details.method.startswith(HEALTH_PREFIX):
      return handler
    sent = dict(details.invocation_metadata).get("authorization", "")
    if hmac.compare_digest(sent.encode(), self._expected):
      return handler
    self._on_refused()

    def refuse(request, context):
      context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong auth token")

    if handler.request_streaming and handler.response_streaming:
      return grpc.stream_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


class Servers:
  """The learner's server and, with --health-port, the plaintext health-only one."""

  def __init__(self, streams: Streams, inference: Inference, *servers: grpc.Server):
    self.streams, self.inference, self._servers = streams, inference, servers

  def stop(self, grace: float | None) -> threading.Event:
    self.streams.stop()
    self.inference.stop()
    events = [server.stop(grace) for server in self._servers]
    for event in events[1:]:
      event.wait()
    return events[0]


def _listen(server: grpc.Server, address: str, port: int, credentials, flag: str) -> int:
  try:
    if credentials is None:
      bound = server.add_insecure_port(f"{address}:{port}")
    else:
      bound = server.add_secure_port(f"{address}:{port}", credentials)
  except RuntimeError:
    bound = 0
  if bound == 0:
    raise BindError(f"cannot listen on {address}:{port} (port in use?); choose another with {flag}")
  return bound


def create_server(
  learner: Learner, port: int, address: str = "[::]"
) -> tuple[Servers, int, health.HealthServicer]:
  """Started servers; returns them, the port bound (useful with port 0) and the health servicer.

  Every upload stream holds one of the threads; UNARY_THREADS more serve the rest. The
  health of the service (impala.v1.Learner) says NOT_SERVING while the upload streams
  are at their limit; the server's overall health ("") says whether it runs.
  """
  config = learner.config
  health_servicer = health.HealthServicer()

  def on_full(full: bool):
    status = (
      health_pb2.HealthCheckResponse.NOT_SERVING if full else health_pb2.HealthCheckResponse.SERVING
    )
    health_servicer.set(codec.SERVICE_NAME, status)

  streams = Streams(
    config.max_upload_streams, config.max_streams_per_actor, config.stream_idle_timeout, on_full
  )
  inference = Inference(config, learner.network, learner.acting_params)
  service = LearnerService(learner, streams, inference)
  token = config.token()
  if not token:
    log.info("no auth token: any client that reaches port %d may upload", port)
  server = grpc.server(
    futures.ThreadPoolExecutor(max_workers=config.max_upload_streams + UNARY_THREADS),
    options=channel_options(config, server=True),
    interceptors=[TokenCheck(token, learner.intake.count_unauthenticated)] if token else [],
  )
  # None (de)serializers pass bytes through: codec parses requests and unrolls, and
  # makes weights, itself (garbage gets INVALID_ARGUMENT, not INTERNAL).
  handlers = {
    "Hello": grpc.unary_unary_rpc_method_handler(service.Hello, None, pb.Setup.SerializeToString),
    "Upload": grpc.stream_stream_rpc_method_handler(
      service.Upload, None, pb.UploadReply.SerializeToString
    ),
    "GetWeights": grpc.unary_unary_rpc_method_handler(service.GetWeights, None, None),
    "Act": grpc.stream_stream_rpc_method_handler(service.Act, None, None),
  }
  server.add_generic_rpc_handlers(
    [grpc.method_handlers_generic_handler(codec.SERVICE_NAME, handlers)]
  )
  health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
  bound = _listen(server, address, port, server_credentials(config), "--port")
  servers = [server]
  if config.health_port:  # Kubernetes' gRPC probes speak neither TLS nor tokens
    probes = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probes)
    _listen(probes, address, config.health_port, None, "--health-port")
    servers.append(probes)
  for s in servers:
    s.start()
  for name in ("", codec.SERVICE_NAME):
    health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
  return Servers(streams, inference, *servers), bound, health_servicer
