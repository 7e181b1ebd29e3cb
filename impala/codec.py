"""Numpy arrays and run data <-> protobuf messages (part of the transport layer).

Tensors are raw bytes with dtype and shape. Decoding is zero-copy
(`np.frombuffer`) and checks, before touching the bytes, that the dtype is
allowed and that the byte length is prod(shape) * itemsize, computed with Python
integers so that no shape can overflow it.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np

from impala import types
from impala.config import Config
from impala.proto import impala_pb2 as pb

PROTOCOL_VERSION = 1
ALLOWED_DTYPES = frozenset(
    np.dtype(d).name for d in (bool, np.uint8, np.int8, np.int32, np.int64, np.float16,
                               np.float32, np.float64))
MAX_RANK = 8


class DecodeError(ValueError):
  """A tensor that cannot be decoded; the message names the field and the problem."""


def encode(array: np.ndarray) -> pb.Tensor:
  array = np.asarray(array)
  if array.dtype.byteorder == ">":
    array = array.astype(array.dtype.newbyteorder("<"))
  return pb.Tensor(dtype=array.dtype.name, shape=array.shape, data=array.tobytes())


def decode(tensor: pb.Tensor, field: str = "tensor") -> np.ndarray:
  """A read-only view of the tensor's bytes, or DecodeError."""
  if tensor.dtype not in ALLOWED_DTYPES:
    raise DecodeError(f"{field}: dtype {tensor.dtype!r} not allowed "
                      f"(allowed: {', '.join(sorted(ALLOWED_DTYPES))})")
  shape = tuple(tensor.shape)
  if len(shape) > MAX_RANK or any(d < 0 for d in shape):
    raise DecodeError(f"{field}: bad shape {list(shape)}")
  dtype = np.dtype(tensor.dtype)
  expected = math.prod(shape) * dtype.itemsize
  if len(tensor.data) != expected:
    raise DecodeError(f"{field}: {len(tensor.data)} bytes do not match "
                      f"{tensor.dtype}{list(shape)} ({expected} bytes)")
  return np.frombuffer(tensor.data, dtype=dtype).reshape(shape)


# --- Unrolls ----------------------------------------------------------------------------

_UNROLL_FIELDS = ("observations", "terminated", "truncated", "actions", "rewards",
                  "behaviour_logits")


def encode_unroll(unroll: types.Unroll, info: types.UnrollInfo) -> pb.Unroll:
  return pb.Unroll(
      actor_id=info.actor_id, sequence=info.sequence, params_version=info.params_version,
      **{name: encode(getattr(unroll, name)) for name in _UNROLL_FIELDS},
      core_state=[encode(s) for s in unroll.core_state],
      episode_returns=encode(info.episode_returns),
      episode_lengths=encode(info.episode_lengths))


def decode_unroll(msg: pb.Unroll) -> tuple[types.Unroll, types.UnrollInfo]:
  for name in _UNROLL_FIELDS + ("episode_returns", "episode_lengths"):
    if not msg.HasField(name):
      raise DecodeError(f"{name}: missing")
  unroll = types.Unroll(
      *(decode(getattr(msg, name), name) for name in _UNROLL_FIELDS),
      core_state=tuple(decode(s, f"core_state[{i}]") for i, s in enumerate(msg.core_state)))
  returns = decode(msg.episode_returns, "episode_returns")
  lengths = decode(msg.episode_lengths, "episode_lengths")
  if returns.ndim != 1 or returns.dtype != np.float32 or not np.isfinite(returns).all():
    raise DecodeError("episode_returns: expected finite float32[E]")
  if lengths.shape != returns.shape or lengths.dtype != np.int32:
    raise DecodeError(f"episode_lengths: expected int32{list(returns.shape)}")
  return unroll, types.UnrollInfo(msg.actor_id, msg.sequence, msg.params_version, returns,
                                  lengths)


# --- Parameters -------------------------------------------------------------------------

def encode_weights(version: int, params: dict) -> bytes:
  """The serialized Weights message of one version (done once per version)."""
  return pb.Weights(version=version, params=[
      pb.Param(name=f"{module}/{name}", value=encode(value))
      for module, leaves in params.items() for name, value in leaves.items()
  ]).SerializeToString()


NOT_MODIFIED = pb.Weights(not_modified=True).SerializeToString()


def decode_weights(msg: pb.Weights) -> dict:
  """haiku params {module: {name: array}} from a Weights message."""
  params: dict = {}
  for p in msg.params:
    module, _, name = p.name.rpartition("/")
    params.setdefault(module, {})[name] = decode(p.value, p.name)
  return params


# --- Handshake --------------------------------------------------------------------------

def encode_setup(config: Config, run_id: str, actor_index: int, seed: int) -> pb.Setup:
  return pb.Setup(
      protocol_version=PROTOCOL_VERSION, run_id=run_id, actor_index=actor_index, seed=seed,
      env_id=config.env_id, env_kwargs_json=json.dumps(config.env_kwargs),
      num_envs=config.num_envs, unroll_length=config.unroll_length,
      network=pb.NetworkSpec(torso=config.torso, hidden_sizes=config.hidden_sizes,
                             lstm_size=config.lstm_size))


def decode_setup(setup: pb.Setup, config: Config) -> Config:
  """The actor's config: its own settings with the run's settings from the learner."""
  return dataclasses.replace(
      config, env_id=setup.env_id, env_kwargs=json.loads(setup.env_kwargs_json),
      num_envs=setup.num_envs, unroll_length=setup.unroll_length, seed=setup.seed,
      torso=setup.network.torso, hidden_sizes=tuple(setup.network.hidden_sizes),
      lstm_size=setup.network.lstm_size)
