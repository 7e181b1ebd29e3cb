"""The learner's gRPC service: protobuf in, arrays to the learner's port, bytes out.

Bad input is answered with a precise status and message and never reaches the
update: INVALID_ARGUMENT for a malformed request, unroll or step (it ends that actor's
stream), FAILED_PRECONDITION for a protocol mismatch, UNAUTHENTICATED for a
call without the run's token, RESOURCE_EXHAUSTED for an upload stream over the
limits. Upload and Act streams are bounded together (Streams), so that Hello,
GetWeights and health checks always have threads of their own. TLS (optionally
mutual) is configured from files. The server sees the learner through a `Port` alone.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from impala import specs
from impala.config import Config
from impala.transport import codec
from impala.transport.credentials import bearer, channel_options, server_credentials
from impala.transport.port import NotReady, Port
from impala.transport.proto import impala_pb2 as pb
from impala.transport.streams import Streams

log = logging.getLogger("impala.learner")

HEALTH_PREFIX = "/grpc.health.v1.Health/"
UNARY_THREADS = 16  # the server's threads that upload streams cannot take


class BindError(OSError):
  """The server could not listen on its address."""


class LearnerService:
  """Implements the Learner service on top of a `Port`."""

  def __init__(self, port: Port, streams: Streams):
    self.port, self.streams = port, streams
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
      index, seed, elsewhere = self.port.hello(request.actor_id)
    except NotReady as e:  # the actor retries
      context.abort(grpc.StatusCode.UNAVAILABLE, str(e))
    if elsewhere:
      log.info("actor %s sent to learner %s", request.actor_id, elsewhere)
      return pb.Setup(
        protocol_version=codec.PROTOCOL_VERSION,
        run_id=self.port.run_id,
        learner_address=elsewhere,
      )
    log.info("actor %s connected (index %d)", request.actor_id, index)
    return codec.encode_setup(self.port.settings(), self.port.run_id, index, seed)

  def Upload(self, requests: Iterator[bytes], context) -> Iterator[pb.UploadReply]:
    """One actor's stream of serialized unrolls (the request deserializer is the identity:
    decoding is zero-copy); one reply per queued unroll, sent once it is queued."""
    key = self._open(context)
    try:
      for raw in self.streams.receive(key, requests):
        if self.port.ended():  # the run is over: the actor stops (or waits for the next)
          yield self._upload_reply()
          return
        try:
          unroll, info = codec.decode_unroll(raw)
        except codec.DecodeError as e:
          self.port.reject("malformed")
          context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        self._identify(key, info.actor_id, context)
        if not self._admit(unroll, info, context):
          if self.port.ended():
            yield self._upload_reply()
          return
        yield pb.UploadReply(learner_version=self.port.version())  # also for a dropped one
    finally:
      self.streams.close(key)

  def _upload_reply(self) -> pb.UploadReply:
    """The reply that tells the actor that the run ended (its unroll is not taken)."""
    return pb.UploadReply(learner_version=self.port.version(), run_ended=self.port.ended())

  def Act(self, requests: Iterator[bytes], context) -> Iterator[bytes]:
    """One actor's stream of steps (learner-side inference): the actions for each, once the
    policy has run on it; the unrolls the steps make go to the intake."""
    key = self._open(context)
    steps = None
    try:
      for raw in self.streams.receive(key, requests):
        if self.port.ended():
          yield codec.encode_run_ended(self.port.ended())
          return
        try:
          step = codec.decode_observations(raw)
        except codec.DecodeError as e:
          self.port.reject("malformed")
          context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        self._identify(key, step.actor_id, context)
        try:
          if steps is None:
            steps = self.port.open_steps(step)
          completed = steps.observe(step)
        except specs.InvalidUnroll as e:
          self.port.reject(e.reason)
          context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        if completed is not None and not self._admit(*completed, context):
          if self.port.ended():
            yield codec.encode_run_ended(self.port.ended())
          return
        if not self.port.act(steps, context.is_active):
          return
        yield codec.encode_actions(steps.actions)
    finally:
      self.port.close_steps(steps)
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
      self.port.reject("wrong_actor")
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

  def _admit(self, unroll, info: specs.UnrollInfo, context) -> bool:
    """Queues an unroll (or refuses it, ending the stream); False if it was abandoned: the
    actor went away or the learner is stopping."""
    try:
      return self.port.admit(unroll, info, context.is_active)
    except specs.InvalidUnroll as e:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))

  def GetWeights(self, raw: bytes, context) -> bytes:
    """Returns serialized bytes (the response serializer is the identity), made once per version."""
    request = _parse(pb.WeightsRequest, raw, context)
    if request.have_version == self.port.version():
      return codec.NOT_MODIFIED
    with self._weights_lock:
      if self._weights[0] != self.port.version():
        version, params = self.port.weights()  # waits for the update in flight
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

  def __init__(self, streams: Streams, *servers: grpc.Server):
    self.streams, self._servers = streams, servers

  def stop(self, grace: float | None) -> threading.Event:
    self.streams.stop()
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
  port: Port, config: Config, number: int, address: str = "[::]"
) -> tuple[Servers, int, health.HealthServicer]:
  """Started servers of `port` on port `number`; returns them, the port bound (useful with
  port 0) and the health servicer.

  Every upload stream holds one of the threads; UNARY_THREADS more serve the rest. The
  health of the service (impala.v1.Learner) says NOT_SERVING while the upload streams
  are at their limit; the server's overall health ("") says whether it runs.
  """
  health_servicer = health.HealthServicer()

  def on_full(full: bool):
    status = (
      health_pb2.HealthCheckResponse.NOT_SERVING if full else health_pb2.HealthCheckResponse.SERVING
    )
    health_servicer.set(codec.SERVICE_NAME, status)

  streams = Streams(
    config.max_upload_streams, config.max_streams_per_actor, config.stream_idle_timeout, on_full
  )
  service = LearnerService(port, streams)
  token = config.token()
  if not token:
    log.info("no auth token: any client that reaches port %d may upload", number)
  server = grpc.server(
    futures.ThreadPoolExecutor(max_workers=config.max_upload_streams + UNARY_THREADS),
    options=channel_options(config, server=True),
    interceptors=[TokenCheck(token, port.refused)] if token else [],
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
  bound = _listen(server, address, number, server_credentials(config), "--port")
  servers = [server]
  if config.health_port:  # Kubernetes' gRPC probes speak neither TLS nor tokens
    probes = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, probes)
    _listen(probes, address, config.health_port, None, "--health-port")
    servers.append(probes)
  streams.start()
  for s in servers:
    s.start()
  for name in ("", codec.SERVICE_NAME):
    health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
  return Servers(streams, *servers), bound, health_servicer
