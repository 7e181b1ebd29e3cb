"""Tensors inside protobuf messages: all their bytes in one `payload` field.

A message that carries tensors holds all their bytes in one `payload` field
(see protos/impala.proto), which `Payload` writes first. Encoding copies each
tensor's bytes once, straight into the serialized message; `parse` finds the
payload in the received buffer (at once when it comes first, by a scan of the
top-level fields otherwise) and `decode` returns read-only `np.frombuffer` views of
it, no copy (bool tensors, which travel packed 8 cells to a byte, are unpacked). Before touching the bytes, decoding checks that the dtype is allowed and
that the tensor lies inside the payload, with Python integers so no shape can
overflow it.
"""

from __future__ import annotations

import math

import numpy as np
from google.protobuf import message as protobuf_message

from impala.transport.proto import impala_pb2 as pb

_DTYPES = {
  np.dtype(d).name: np.dtype(d)
  for d in (bool, np.uint8, np.int8, np.int32, np.int64, np.float16, np.float32, np.float64)
}
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
    if not (
      isinstance(array, np.ndarray) and array.flags.c_contiguous and array.dtype.byteorder != ">"
    ):
      array = np.asarray(array)
      array = np.asarray(array, dtype=array.dtype.newbyteorder("<"), order="C")
    offset = self._size
    self._chunks.append(array)  # joined through the buffer protocol: no copy until then
    self._size += array.nbytes
    return array.dtype, array.shape, offset

  def add(self, array) -> pb.Tensor:
    """Adds an array's bytes (a bool array's packed 8 to a byte: MinAtar's images, the
    episode flags); returns the Tensor that describes it."""
    array = np.asarray(array)
    if array.dtype == bool:
      _, _, offset = self.append(np.packbits(array, axis=None))
      return pb.Tensor(dtype="bool", shape=array.shape, offset=offset)
    dtype, shape, offset = self.append(array)
    return pb.Tensor(dtype=dtype.name, shape=shape, offset=offset)

  def serialize(self, header: bytes) -> bytes:
    """The payload field, then the header's fields: the one copy of the tensors."""
    return b"".join([_PAYLOAD_TAG, _varint(self._size), *self._chunks, header])


def parse(message_type, raw: bytes):
  """(message without its payload, payload as a memoryview of `raw`), or DecodeError."""
  buffer = memoryview(raw)
  if buffer[: len(_PAYLOAD_TAG)] == _PAYLOAD_TAG:  # our encoder's layout: the payload first
    length, start = _read_varint(buffer, len(_PAYLOAD_TAG))
    if start + length <= len(buffer):
      msg = _parse_header(message_type, buffer[start + length :])
      if not msg.payload:  # a second payload field would win, as in any protobuf parser
        return msg, buffer[start : start + length]
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
    raise DecodeError(
      f"{field}: dtype {tensor.dtype!r} not allowed (allowed: {', '.join(sorted(ALLOWED_DTYPES))})"
    )
  shape = tuple(tensor.shape)
  if (
    len(shape) > MAX_RANK
    or (shape and min(shape) < 0)
    or math.prod(max(d, 1) for d in shape) > MAX_ELEMENTS
  ):  # e.g. [0, 2**61]: no array
    raise DecodeError(f"{field}: bad shape {list(shape)}")
  count = math.prod(shape)
  packed = dtype.kind == "b"
  end = tensor.offset + (-(-count // 8) if packed else count * dtype.itemsize)
  if end > len(payload):
    raise DecodeError(
      f"{field}: {tensor.dtype}{list(shape)} at offset {tensor.offset} ends at "
      f"byte {end}, past the payload ({len(payload)} bytes)"
    )
  if packed:  # a copy, 8 times the bytes: no view of bits
    bits = np.frombuffer(payload, np.uint8, end - tensor.offset, tensor.offset)
    return np.unpackbits(bits, count=count).view(bool).reshape(shape)
  return np.frombuffer(payload, dtype, count, tensor.offset).reshape(shape)
