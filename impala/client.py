"""The actor's connection to the learner (transport layer)."""

from __future__ import annotations

import grpc

from impala import codec, server, types
from impala.config import Config
from impala.proto import impala_pb2 as pb

# Codes after which an actor reconnects (and re-handshakes) instead of giving up.
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                       grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN})


class LearnerClient:
  """Hello, asynchronous uploads and weight requests, all with a deadline."""

  def __init__(self, config: Config):
    self.config = config
    self._channel = grpc.insecure_channel(
        config.grpc_host, options=server.channel_options(config.max_message_bytes))
    # Unrolls go out and weights come in as serialized bytes (None: no (de)serializer);
    # codec makes and reads them without protobuf copying the tensors.
    method = f"/{server.SERVICE_NAME}/"
    self._hello = self._channel.unary_unary(
        method + "Hello", pb.HelloRequest.SerializeToString, pb.Setup.FromString)
    self._upload = self._channel.unary_unary(
        method + "Upload", None, pb.UploadReply.FromString)
    self._weights = self._channel.unary_unary(
        method + "GetWeights", pb.WeightsRequest.SerializeToString, None)

  def hello(self, actor_id: str, protocol_version: int = codec.PROTOCOL_VERSION
            ) -> tuple[pb.Setup, Config]:
    """The learner's setup message and this actor's config derived from it."""
    setup = self._hello(pb.HelloRequest(actor_id=actor_id, protocol_version=protocol_version),
                        timeout=self.config.rpc_timeout)
    return setup, codec.decode_setup(setup, self.config)

  def upload(self, unroll: types.Unroll, info: types.UnrollInfo) -> grpc.Future:
    return self._upload.future(codec.encode_unroll(unroll, info), timeout=self.config.rpc_timeout)

  def weights(self, actor_id: str, have_version: int) -> grpc.Future:
    """A future of the serialized Weights; see `decode_weights`."""
    return self._weights.future(
        pb.WeightsRequest(actor_id=actor_id, have_version=have_version),
        timeout=self.config.rpc_timeout)

  decode_weights = staticmethod(codec.decode_weights)

  def close(self):
    self._channel.close()
