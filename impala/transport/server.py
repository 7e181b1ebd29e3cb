"""The learner's gRPC service: protobuf in, arrays to the Learner, bytes out.

Bad input is answered with a precise status and message and never reaches the
update: INVALID_ARGUMENT for a malformed unroll (it ends that actor's upload
stream), FAILED_PRECONDITION for a protocol mismatch, UNAUTHENTICATED for a call
without the run's token. TLS (optionally mutual) is configured from files.
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
from impala.learner import Learner, NotReady
from impala.transport import codec
from impala.transport.credentials import bearer, channel_options, server_credentials
from impala.transport.proto import impala_pb2 as pb

log = logging.getLogger("impala.learner")

HEALTH_PREFIX = "/grpc.health.v1.Health/"


class BindError(OSError):
  """The server could not listen on its address."""


class LearnerService:
  """Implements the Learner service on top of a `Learner`."""

  def __init__(self, learner: Learner):
    self.learner = learner
    self._weights_lock = threading.Lock()
    self._weights = (0, b"")  # (version, serialized Weights): each version serialized once

  def Hello(self, request: pb.HelloRequest, context) -> pb.Setup:
    if request.protocol_version != codec.PROTOCOL_VERSION:
      context.abort(
        grpc.StatusCode.FAILED_PRECONDITION,
        f"protocol version mismatch: actor speaks protocol {request.protocol_version}, "
        f"learner speaks protocol {codec.PROTOCOL_VERSION}",
      )
    if not request.actor_id:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, "actor_id: must not be empty")
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
    for raw in requests:
      try:
        unroll, info = codec.decode_unroll(raw)
      except codec.DecodeError as e:
        self.learner.intake.reject("malformed")
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
      try:
        outcome = self.learner.intake.enqueue(unroll, info, keep_waiting=context.is_active)
      except specs.InvalidUnroll as e:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
      if outcome is None:  # the actor went away or the learner is stopping
        return
      yield pb.UploadReply(learner_version=self.learner.version)  # also for a dropped one

  def GetWeights(self, request: pb.WeightsRequest, context) -> bytes:
    """Returns serialized bytes (the response serializer is the identity), made once per version."""
    if request.have_version == self.learner.version:
      return codec.NOT_MODIFIED
    with self._weights_lock:
      version, params = self.learner.params_for_actor()
      if self._weights[0] != version:
        self._weights = (version, codec.encode_weights(version, params))
      return self._weights[1]


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

  def __init__(self, *servers: grpc.Server):
    self._servers = servers

  def stop(self, grace: float | None) -> threading.Event:
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
  learner: Learner, port: int, address: str = "[::]", max_workers: int = 256
) -> tuple[Servers, int, health.HealthServicer]:
  """Started servers; returns them, the port bound (useful with port 0) and the health servicer.

  Every connected actor's upload stream holds one of the `max_workers` threads.
  """
  config = learner.config
  service = LearnerService(learner)
  token = config.token()
  if not token:
    log.info("no auth token: any client that reaches port %d may upload", port)
  server = grpc.server(
    futures.ThreadPoolExecutor(max_workers=max_workers),
    options=channel_options(config.max_message_bytes),
    interceptors=[TokenCheck(token, learner.intake.count_unauthenticated)] if token else [],
  )
  # None (de)serializers pass bytes through: codec handles unrolls and weights itself.
  handlers = {
    "Hello": grpc.unary_unary_rpc_method_handler(
      service.Hello, pb.HelloRequest.FromString, pb.Setup.SerializeToString
    ),
    "Upload": grpc.stream_stream_rpc_method_handler(
      service.Upload, None, pb.UploadReply.SerializeToString
    ),
    "GetWeights": grpc.unary_unary_rpc_method_handler(
      service.GetWeights, pb.WeightsRequest.FromString, None
    ),
  }
  server.add_generic_rpc_handlers(
    [grpc.method_handlers_generic_handler(codec.SERVICE_NAME, handlers)]
  )
  health_servicer = health.HealthServicer()
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
  return Servers(*servers), bound, health_servicer
