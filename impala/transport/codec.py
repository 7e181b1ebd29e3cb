"""Numpy arrays and run data <-> protobuf messages, and the service's method paths.

A message that carries tensors holds all their bytes in one `payload` field
(see protos/impala.proto), which this encoder writes first. Encoding copies each
tensor's bytes once, straight into the serialized message; decoding finds the
payload in the received buffer (at once when it comes first, by a scan of the
top-level fields otherwise) and returns read-only `np.frombuffer` views of it,
no copy. Before touching the bytes, decoding checks that the dtype is allowed and
that the tensor lies inside the payload, with Python integers so no shape can
overflow it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math

import numpy as np
from google.protobuf import message as protobuf_message

from impala import specs
from impala.config import RUN_SETTINGS, Config
from impala.transport import frames
from impala.transport.proto import impala_pb2 as pb

# Protocol 6: the run's settings travel as one RunSettings message. An actor and a
# learner of different protocols refuse each other (FAILED_PRECONDITION).
PROTOCOL_VERSION = 6
_SERVICE = pb.DESCRIPTOR.services_by_name["Learner"]
SERVICE_NAME = _SERVICE.full_name  # "impala.v1.Learner", as protos/impala.proto names it


def method(name: str) -> str:
  """The gRPC path of one of the service's methods, e.g. "/impala.v1.Learner/Upload"."""
  return f"/{SERVICE_NAME}/{_SERVICE.methods_by_name[name].name}"

_DTYPES = {np.dtype(d).name: np.dtype(d) for d in (
    bool, np.uint8, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64)}
ALLOWED_DTYPES = frozenset(_DTYPES)
MAX_RANK = 8
MAX_ELEMENTS = 2**40  # of a shape, counting its zero dimensions as one
PAYLOAD_FIELD = 15  # field number of `payload` in Unroll and Weights
_LENGTH_DELIMITED = 2


class DecodeError(ValueError):
  """A message or tensor that cannot be decoded; the message names the field and the problem."""


def _varint(value: int) -> bytes:
  out = bytearray()
  while value >= 0x80:
    out.append(value & 0x7F | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _read_varint(buffer: memoryview, pos: int) -> tuple[int, int]:
  value, shift = 0, 0
  while pos < len(buffer) and shift < 64:
    byte = buffer[pos]
    value |= (byte & 0x7F) << shift
    pos += 1
    if not byte & 0x80:
      return value, pos
    shift += 7
  raise DecodeError("malformed message: bad varint")


_PAYLOAD_TAG = _varint(PAYLOAD_FIELD << 3 | _LENGTH_DELIMITED)


class Payload:
  """Collects the tensors of one message and serializes the message with them."""

  def __init__(self):
    self._chunks: list[np.ndarray] = []
    self._size = 0

  def append(self, array) -> tuple[np.dtype, tuple, int]:
    """Adds an array's bytes; returns its (dtype, shape, offset in the payload)."""
    if not (isinstance(array, np.ndarray) and array.flags.c_contiguous
            and array.dtype.byteorder != ">"):
      array = np.asarray(array)
      array = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")
    offset = self._size
    self._chunks.append(array)  # joined through the buffer protocol: no copy until then
    self._size += array.nbytes
    return array.dtype, array.shape, offset

  def add(self, array) -> pb.Tensor:
    """Adds an array's bytes; returns the Tensor that describes it."""
    dtype, shape, offset = self.append(array)
    return pb.Tensor(dtype=dtype.name, shape=shape, offset=offset)

  def serialize(self, header: bytes) -> bytes:
    """The payload field, then the header's fields: the one copy of the tensors."""
    return b"".join([_PAYLOAD_TAG, _varint(self._size), *self._chunks, header])


def parse(message_type, raw: bytes):
  """(message without its payload, payload as a memoryview of `raw`), or DecodeError."""
  buffer = memoryview(raw)
  if buffer[:len(_PAYLOAD_TAG)] == _PAYLOAD_TAG:  # our encoder's layout: the payload first
    length, start = _read_varint(buffer, len(_PAYLOAD_TAG))
    if start + length <= len(buffer):
      msg = _parse_header(message_type, buffer[start + length:])
      if not msg.payload:  # a second payload field would win, as in any protobuf parser
        return msg, buffer[start:start + length]
  pos, payload = 0, None
  while pos < len(buffer):
    start = pos
    tag, pos = _read_varint(buffer, pos)
    field, wire_type = tag >> 3, tag & 7
    if wire_type == 0:
      _, pos = _read_varint(buffer, pos)
    elif wire_type == 1 or wire_type == 5:
      pos += 8 if wire_type == 1 else 4
    elif wire_type == _LENGTH_DELIMITED:
      length, pos = _read_varint(buffer, pos)
      pos += length
      if field == PAYLOAD_FIELD:
        payload = (start, pos - length, pos)
    else:
      raise DecodeError(f"malformed message: wire type {wire_type}")
    if pos > len(buffer):
      raise DecodeError("malformed message: truncated")
  if payload is None:
    header, data = buffer, buffer[:0]
  else:
    start, data_start, end = payload
    header = bytes(buffer[:start]) + bytes(buffer[end:])
    data = buffer[data_start:end]
  return _parse_header(message_type, header), data


def _parse_header(message_type, header):
  try:
    return message_type.FromString(header)
  except protobuf_message.DecodeError as e:
    raise DecodeError(f"malformed message: {e}") from None


def decode(tensor: pb.Tensor, payload: memoryview, field: str = "tensor") -> np.ndarray:
  """A read-only view of the tensor's bytes in `payload`, or DecodeError."""
  dtype = _DTYPES.get(tensor.dtype)
  if dtype is None:
    raise DecodeError(f"{field}: dtype {tensor.dtype!r} not allowed "
                      f"(allowed: {', '.join(sorted(ALLOWED_DTYPES))})")
  shape = tuple(tensor.shape)
  if (len(shape) > MAX_RANK or (shape and min(shape) < 0)
      or math.prod(max(d, 1) for d in shape) > MAX_ELEMENTS):  # e.g. [0, 2**61]: no array
    raise DecodeError(f"{field}: bad shape {list(shape)}")
  count = math.prod(shape)
  end = tensor.offset + count * dtype.itemsize
  if end > len(payload):
    raise DecodeError(f"{field}: {tensor.dtype}{list(shape)} at offset {tensor.offset} ends at "
                      f"byte {end}, past the payload ({len(payload)} bytes)")
  return np.frombuffer(payload, dtype, count, tensor.offset).reshape(shape)


# --- Unrolls ----------------------------------------------------------------------------

_UNROLL_FIELDS = ("observations", "terminated", "truncated", "actions", "rewards",
                  "behaviour_logits")


def encode_unroll(unroll: specs.Unroll, info: specs.UnrollInfo,
                  stacked_frames: bool = False) -> bytes:
  """An unroll's trajectory; with `stacked_frames` (observations [..., H, W, K]) each
  frame is sent once (see frames.py)."""
  payload = Payload()
  observations, fields = unroll.observations, {}
  if stacked_frames:
    observations, history = frames.split(observations)
    fields["frame_history"] = payload.add(history)
  return _serialize_upload(
      payload, info, observations=payload.add(observations),
      **{name: payload.add(getattr(unroll, name)) for name in _UNROLL_FIELDS[1:]},
      core_state=[payload.add(s) for s in unroll.core_state], **fields)


def encode_gradients(grads: dict, info: specs.UnrollInfo) -> bytes:
  """The gradient an actor took on an unroll (A3C), in place of the trajectory."""
  payload = Payload()
  return _serialize_upload(payload, info, gradients=_params(payload, grads))


def _serialize_upload(payload: Payload, info: specs.UnrollInfo, **fields) -> bytes:
  header = pb.Unroll(
      actor_id=info.actor_id, sequence=info.sequence, params_version=info.params_version,
      incarnation=info.incarnation, episode_returns=payload.add(info.episode_returns),
      episode_lengths=payload.add(info.episode_lengths), **fields)
  return payload.serialize(header.SerializeToString())


def decode_unroll(raw: bytes) -> tuple[specs.Unroll | dict, specs.UnrollInfo]:
  """(the trajectory, or the gradients {module: {name: array}} of an A3C actor, info)."""
  msg, payload = parse(pb.Unroll, raw)
  for name in (() if msg.gradients else _UNROLL_FIELDS) + ("episode_returns", "episode_lengths"):
    if not msg.HasField(name):
      raise DecodeError(f"{name}: missing")
  returns = decode(msg.episode_returns, payload, "episode_returns")
  lengths = decode(msg.episode_lengths, payload, "episode_lengths")
  if returns.ndim != 1 or returns.dtype != np.float32 or not np.isfinite(returns).all():
    raise DecodeError("episode_returns: expected finite float32[E]")
  if lengths.shape != returns.shape or lengths.dtype != np.int32:
    raise DecodeError(f"episode_lengths: expected int32{list(returns.shape)}")
  info = specs.UnrollInfo(msg.actor_id, msg.sequence, msg.params_version, returns, lengths,
                          msg.incarnation)
  if msg.gradients:
    return _decode_params(msg.gradients, payload), info
  unroll = specs.Unroll(
      *(decode(getattr(msg, name), payload, name) for name in _UNROLL_FIELDS),
      core_state=tuple(decode(s, payload, f"core_state[{i}]")
                       for i, s in enumerate(msg.core_state)))
  if msg.HasField("frame_history"):
    unroll = unroll._replace(observations=_rebuild_stacks(
        unroll, decode(msg.frame_history, payload, "frame_history")))
  return unroll, info


def _rebuild_stacks(unroll: specs.Unroll, history: np.ndarray) -> np.ndarray:
  newest, done_shape = unroll.observations, unroll.observations.shape[:2]
  if (newest.ndim < 2 or history.shape[:-1] != newest.shape[1:] or history.dtype != newest.dtype
      or not 2 <= history.shape[-1] + 1 <= 64):
    raise DecodeError(f"frame_history: expected {newest.dtype.name}{list(newest.shape[1:])} "
                      f"+ [K-1] with 2 <= K <= 64, got {history.dtype.name}{list(history.shape)}")
  for name in ("terminated", "truncated"):
    flags = getattr(unroll, name)
    if flags.shape != done_shape or flags.dtype != bool:
      raise DecodeError(f"{name}: expected bool{list(done_shape)}")
  return frames.rebuild(newest, history, unroll.terminated | unroll.truncated)


# --- Parameters -------------------------------------------------------------------------

def encode_weights(version: int, params: dict) -> bytes:
  """The serialized Weights message of one version (done once per version)."""
  payload = Payload()
  layout = tuple((module, name, *payload.append(value))
                 for module, leaves in params.items() for name, value in leaves.items())
  return payload.serialize(pb.Weights(version=version).SerializeToString() + _params_field(layout))


@functools.lru_cache(maxsize=4)
def _params_field(layout: tuple) -> bytes:
  """The serialized `params` of Weights: the same for every version of a network, made once."""
  return pb.Weights(params=[
      pb.Param(name=f"{module}/{name}", value=pb.Tensor(dtype=dtype.name, shape=shape, offset=offset))
      for module, name, dtype, shape, offset in layout]).SerializeToString()


NOT_MODIFIED = pb.Weights(not_modified=True).SerializeToString()


def _params(payload: Payload, params: dict) -> list[pb.Param]:
  return [pb.Param(name=f"{module}/{name}", value=payload.add(value))
          for module, leaves in params.items() for name, value in leaves.items()]


def _decode_params(fields, payload: memoryview) -> dict:
  params: dict = {}
  for p in fields:
    module, _, name = p.name.rpartition("/")
    params.setdefault(module, {})[name] = decode(p.value, payload, p.name)
  return params


def decode_weights(raw: bytes) -> tuple[int, dict] | None:
  """(version, haiku params {module: {name: array}}), or None for "not modified"."""
  msg, payload = parse(pb.Weights, raw)
  if msg.not_modified:
    return None
  return msg.version, _decode_params(msg.params, payload)


# --- Handshake --------------------------------------------------------------------------

def encode_setup(config: Config, run_id: str, actor_index: int, seed: int) -> pb.Setup:
  settings = {name: json.dumps(value) if isinstance(value, dict) else value
              for name, value in config.run_settings().items()}
  return pb.Setup(protocol_version=PROTOCOL_VERSION, run_id=run_id, actor_index=actor_index,
                  seed=seed, settings=pb.RunSettings(**settings))


def decode_setup(setup: pb.Setup, config: Config) -> Config:
  """The actor's config: its own settings with the run's settings from the learner, and
  its own seed."""
  settings = {}
  for name in RUN_SETTINGS:
    value, own = getattr(setup.settings, name), getattr(config, name)
    settings[name] = json.loads(value) if isinstance(own, dict) else type(own)(value)
  return dataclasses.replace(config, **dict(settings, seed=setup.seed))
