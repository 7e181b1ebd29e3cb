"""The learner's gRPC service (transport layer): protobuf in, arrays to the Learner, bytes out.

Bad input is answered with a precise status and message and never reaches the
update: INVALID_ARGUMENT for a malformed unroll (it ends that actor's upload
stream), FAILED_PRECONDITION for a protocol mismatch.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from typing import Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from impala import codec, learning
from impala.proto import impala_pb2 as pb

log = logging.getLogger("impala.learner")

SERVICE_NAME = "impala.v1.Learner"


class BindError(OSError):
  """The server could not listen on its address."""


def channel_options(max_message_bytes: int) -> list:
  """Options of both ends. Upload streams live long and can sit idle while the learner
  is busy: both ends ping every 20 s (and accept pings every 10 s) to notice a dead peer."""
  return [("grpc.max_send_message_length", max_message_bytes),
          ("grpc.max_receive_message_length", max_message_bytes),
          ("grpc.keepalive_time_ms", 20_000), ("grpc.keepalive_timeout_ms", 20_000),
          ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
          ("grpc.http2.max_pings_without_data", 0)]


class LearnerService:
  """Implements the Learner service on top of a `learning.Learner`."""

  def __init__(self, learner: learning.Learner):
    self.learner = learner
    self._weights_lock = threading.Lock()
    self._weights = (0, b"")  # (version, serialized Weights): each version serialized once

  def Hello(self, request: pb.HelloRequest, context) -> pb.Setup:
    if request.protocol_version != codec.PROTOCOL_VERSION:
      context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                    f"protocol version mismatch: actor speaks protocol {request.protocol_version}, "
                    f"learner speaks protocol {codec.PROTOCOL_VERSION}")
    if not request.actor_id:
      context.abort(grpc.StatusCode.INVALID_ARGUMENT, "actor_id: must not be empty")
    index, seed = self.learner.hello(request.actor_id)
    log.info("actor %s connected (index %d)", request.actor_id, index)
    return codec.encode_setup(self.learner.config, self.learner.run_id, index, seed)

  def Upload(self, requests: Iterator[bytes], context) -> Iterator[pb.UploadReply]:
    """One actor's stream of serialized unrolls (the request deserializer is the identity:
    decoding is zero-copy); one reply per queued unroll, sent once it is queued."""
    for raw in requests:
      try:
        unroll, info = codec.decode_unroll(raw)
      except codec.DecodeError as e:
        self.learner.reject("malformed")
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
      try:
        outcome = self.learner.enqueue(unroll, info, keep_waiting=context.is_active)
      except learning.InvalidUnroll as e:
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


def create_server(learner: learning.Learner, port: int, address: str = "[::]",
                  max_workers: int = 256) -> tuple[grpc.Server, int, health.HealthServicer]:
  """A started server; returns it, the port it bound (useful with port 0) and its health servicer.

  Every connected actor's upload stream holds one of the `max_workers` threads.
  """
  service = LearnerService(learner)
  server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                       options=channel_options(learner.config.max_message_bytes))
  # None (de)serializers pass bytes through: codec handles unrolls and weights itself.
  handlers = {
      "Hello": grpc.unary_unary_rpc_method_handler(
          service.Hello, pb.HelloRequest.FromString, pb.Setup.SerializeToString),
      "Upload": grpc.stream_stream_rpc_method_handler(
          service.Upload, None, pb.UploadReply.SerializeToString),
      "GetWeights": grpc.unary_unary_rpc_method_handler(
          service.GetWeights, pb.WeightsRequest.FromString, None),
  }
  server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)])
  health_servicer = health.HealthServicer()
  health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
  try:
    bound = server.add_insecure_port(f"{address}:{port}")
  except RuntimeError:
    bound = 0
  if bound == 0:
    raise BindError(f"cannot listen on {address}:{port} (port in use?); choose another with --port")
  server.start()
  for name in ("", SERVICE_NAME):
    health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
  return server, bound, health_servicer
