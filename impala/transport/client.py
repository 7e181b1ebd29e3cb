"""The actor's connection to the learner."""

from __future__ import annotations

import queue
import threading

import grpc

from impala.config import Config
from impala.transport import codec
from impala.transport.credentials import bearer, channel_options, client_credentials
from impala.transport.proto import impala_pb2 as pb

# Codes after which an actor reconnects (and re-handshakes) instead of giving up.
RETRYABLE = frozenset(
  {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.RESOURCE_EXHAUSTED,  # the learner serves its most upload streams
  }
)


class LearnerClient:
  """Hello, asynchronous uploads and weight requests, all with a deadline."""

  def __init__(self, config: Config):
    self.config = config
    options = channel_options(config)
    if config.tls_server_name:
      options.append(("grpc.ssl_target_name_override", config.tls_server_name))
    credentials = client_credentials(config)
    if credentials is None:
      self._channel = grpc.insecure_channel(config.grpc_host, options=options)
    else:
      self._channel = grpc.secure_channel(config.grpc_host, credentials, options=options)
    token = config.token()
    self._metadata = bearer(token) if token else None
    # Unrolls go out and weights come in as serialized bytes (None: no (de)serializer);
    # codec makes and reads them without protobuf copying the tensors.
    self._hello = self._channel.unary_unary(
      codec.method("Hello"), pb.HelloRequest.SerializeToString, pb.Setup.FromString
    )
    self._upload = self._channel.stream_stream(
      codec.method("Upload"), None, pb.UploadReply.FromString
    )
    self._act = self._channel.stream_stream(codec.method("Act"), None, None)
    self._weights = self._channel.unary_unary(
      codec.method("GetWeights"), pb.WeightsRequest.SerializeToString, None
    )

  def hello(
    self, actor_id: str, protocol_version: int = codec.PROTOCOL_VERSION
  ) -> tuple[pb.Setup, Config | None]:
    """The learner's setup message and this actor's config derived from it; None for the
    config when the learner sends the actor to `setup.learner_address`."""
    setup = self._hello(
      pb.HelloRequest(actor_id=actor_id, protocol_version=protocol_version),
      timeout=self.config.rpc_timeout,
      metadata=self._metadata,
    )
    if setup.learner_address:
      return setup, None
    return setup, codec.decode_setup(setup, self.config)

  def upload_stream(self) -> Stream:
    """Unrolls out, UploadReply messages back."""
    return Stream(self._upload, self._metadata)

  def act_stream(self) -> Stream:
    """Learner-side inference: serialized Observations out, serialized Actions back."""
    return Stream(self._act, self._metadata)

  encode_observations = staticmethod(codec.encode_observations)
  decode_actions = staticmethod(codec.decode_actions)

  encode_unroll = staticmethod(codec.encode_unroll)
  encode_gradients = staticmethod(codec.encode_gradients)

  def weights(self, actor_id: str, have_version: int) -> grpc.Future:
    """A future of the serialized Weights; see `decode_weights`."""
    return self._weights.future(
      pb.WeightsRequest(actor_id=actor_id, have_version=have_version),
      timeout=self.config.rpc_timeout,
      metadata=self._metadata,
    )

  decode_weights = staticmethod(codec.decode_weights)

  def close(self):
    self._channel.close()


class Stream:
  """One Upload or Act stream: `send` requests, `next_reply` for the learner's replies,
  which come in order, one per request it has taken."""

  _END = None

  def __init__(self, call: grpc.StreamStreamMultiCallable, metadata=None):
    self._outbox: queue.SimpleQueue = queue.SimpleQueue()
    # No deadline: the stream lasts as long as the connection; keepalive pings
    # (credentials.channel_options) notice a dead learner.
    self._replies = call(iter(self._outbox.get, self._END), metadata=metadata)
    self._inbox: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=self._read, name="stream-replies", daemon=True).start()

  def _read(self):
    try:
      for reply in self._replies:
        self._inbox.put(reply)
      self._inbox.put(self._END)
    except grpc.RpcError as e:
      self._inbox.put(e)

  def send(self, raw: bytes):
    self._outbox.put(raw)

  def next_reply(self, timeout: float):
    """The next reply, or None if none came within `timeout` s. Raises the stream's
    RpcError; UNAVAILABLE if the learner ended the stream."""
    try:
      item = self._inbox.get(timeout=timeout)
    except queue.Empty:
      return None
    if isinstance(item, grpc.RpcError):
      self._inbox.put(item)  # every later call sees it too
      raise item
    if item is self._END:
      self._inbox.put(item)
      raise StreamEnded()
    return item

  def close(self):
    self._outbox.put(self._END)
    self._replies.cancel()


class RunEnded(Exception):
  """The learner's run is over (it said so in its reply): `reason` is its stop reason."""

  def __init__(self, reason: str):
    super().__init__(reason)
    self.reason = reason


class StreamEnded(grpc.RpcError):
  """The learner ended a stream without an error (it is shutting down)."""

  def code(self) -> grpc.StatusCode:
    return grpc.StatusCode.UNAVAILABLE

  def details(self) -> str:
    return "the learner ended the stream"
