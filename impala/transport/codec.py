"""Arrays and run data <-> protobuf messages: unrolls (or A3C's gradients), weights and the
handshake, and the service's method paths. Tensors travel as payload.py lays them out."""

from __future__ import annotations

import dataclasses
import functools
import json

import numpy as np
from google.protobuf import message as protobuf_message

from impala import specs
from impala.config import ACTOR_ID, ACTOR_ID_ALLOWED, RUN_SETTINGS, Config
from impala.transport import frames
from impala.transport.payload import DecodeError, Payload, decode, parse
from impala.transport.proto import impala_pb2 as pb

# Protocol 7: bool tensors travel packed 8 to a byte. An actor and a learner of
# different protocols refuse each other (FAILED_PRECONDITION).
PROTOCOL_VERSION = 7
_SERVICE = pb.DESCRIPTOR.services_by_name["Learner"]
SERVICE_NAME = _SERVICE.full_name  # "impala.v1.Learner", as protos/impala.proto names it


def method(name: str) -> str:
  """The gRPC path of one of the service's methods, e.g. "/impala.v1.Learner/Upload"."""
  return f"/{SERVICE_NAME}/{_SERVICE.methods_by_name[name].name}"


# --- Unrolls ----------------------------------------------------------------------------

_UNROLL_FIELDS = specs.Unroll._fields[:-1]  # the tensors; core_state is a repeated field


def encode_unroll(
  unroll: specs.Unroll, info: specs.UnrollInfo, stacked_frames: bool = False
) -> bytes:
  """An unroll's trajectory; with `stacked_frames` (observations [..., H, W, K]) each
  frame is sent once (see frames.py)."""
  payload = Payload()
  observations, fields = unroll.observations, {}
  if stacked_frames:
    observations, history = frames.split(observations)
    fields["frame_history"] = payload.add(history)
  return _serialize_upload(
    payload,
    info,
    observations=payload.add(observations),
    **{name: payload.add(getattr(unroll, name)) for name in _UNROLL_FIELDS[1:]},
    core_state=[payload.add(s) for s in unroll.core_state],
    **fields,
  )


def encode_gradients(grads: dict, info: specs.UnrollInfo) -> bytes:
  """The gradient an actor took on an unroll (A3C), in place of the trajectory."""
  payload = Payload()
  return _serialize_upload(payload, info, gradients=_params(payload, grads))


def _serialize_upload(payload: Payload, info: specs.UnrollInfo, **fields) -> bytes:
  header = pb.Unroll(
    actor_id=info.actor_id,
    sequence=info.sequence,
    params_version=info.params_version,
    incarnation=info.incarnation,
    episode_returns=payload.add(info.episode_returns),
    episode_lengths=payload.add(info.episode_lengths),
    **fields,
  )
  return payload.serialize(header.SerializeToString())


def decode_unroll(raw: bytes) -> tuple[specs.Unroll | dict, specs.UnrollInfo]:
  """(the trajectory, or the gradients {module: {name: array}} of an A3C actor, info)."""
  msg, payload = parse(pb.Unroll, raw)
  for name in (() if msg.gradients else _UNROLL_FIELDS) + ("episode_returns", "episode_lengths"):
    if not msg.HasField(name):
      raise DecodeError(f"{name}: missing")
  check_actor_id(msg.actor_id)
  returns = decode(msg.episode_returns, payload, "episode_returns")
  lengths = decode(msg.episode_lengths, payload, "episode_lengths")
  if returns.ndim != 1 or returns.dtype != np.float32 or not np.isfinite(returns).all():
    raise DecodeError("episode_returns: expected finite float32[E]")
  if lengths.shape != returns.shape or lengths.dtype != np.int32:
    raise DecodeError(f"episode_lengths: expected int32{list(returns.shape)}")
  info = specs.UnrollInfo(
    msg.actor_id, msg.sequence, msg.params_version, returns, lengths, msg.incarnation
  )
  if msg.gradients:
    return _decode_params(msg.gradients, payload), info
  unroll = specs.Unroll(
    *(decode(getattr(msg, name), payload, name) for name in _UNROLL_FIELDS),
    core_state=tuple(decode(s, payload, f"core_state[{i}]") for i, s in enumerate(msg.core_state)),
  )
  if msg.HasField("frame_history"):
    unroll = unroll._replace(
      observations=_rebuild_stacks(unroll, decode(msg.frame_history, payload, "frame_history"))
    )
  return unroll, info


def check_actor_id(actor_id: str):
  """DecodeError unless `actor_id` is one an actor may have (ids key the learner's tables
  and its log lines)."""
  if not ACTOR_ID.fullmatch(actor_id):
    shown = actor_id if len(actor_id) <= 40 else actor_id[:40] + "..."
    raise DecodeError(f"actor_id: {shown!r} is not {ACTOR_ID_ALLOWED}")


def parse_request(message_type, raw: bytes):
  """A small request message (Hello, GetWeights) parsed, or DecodeError."""
  try:
    return message_type.FromString(raw)
  except protobuf_message.DecodeError as e:
    raise DecodeError(f"{message_type.DESCRIPTOR.name}: malformed message: {e}") from None


def _rebuild_stacks(unroll: specs.Unroll, history: np.ndarray) -> np.ndarray:
  newest, done_shape = unroll.observations, unroll.observations.shape[:2]
  if (
    newest.ndim < 2
    or history.shape[:-1] != newest.shape[1:]
    or history.dtype != newest.dtype
    or not 2 <= history.shape[-1] + 1 <= 64
  ):
    raise DecodeError(
      f"frame_history: expected {newest.dtype.name}{list(newest.shape[1:])} "
      f"+ [K-1] with 2 <= K <= 64, got {history.dtype.name}{list(history.shape)}"
    )
  for name in ("terminated", "truncated"):
    flags = getattr(unroll, name)
    if flags.shape != done_shape or flags.dtype != bool:
      raise DecodeError(f"{name}: expected bool{list(done_shape)}")
  return frames.rebuild(newest, history, unroll.terminated | unroll.truncated)


# --- Learner-side inference -------------------------------------------------------------

_STEP_FIELDS = specs.Step._fields[2:]  # the tensors


def encode_observations(step: specs.Step) -> bytes:
  """One step of an actor's environments (see Observations in protos/impala.proto)."""
  payload = Payload()
  header = pb.Observations(
    actor_id=step.actor_id,
    step=step.step,
    **{name: payload.add(getattr(step, name)) for name in _STEP_FIELDS},
  )
  return payload.serialize(header.SerializeToString())


def decode_observations(raw: bytes) -> specs.Step:
  """The step an actor sent, or DecodeError; its shapes are the learner's to check."""
  msg, payload = parse(pb.Observations, raw)
  for name in _STEP_FIELDS:
    if not msg.HasField(name):
      raise DecodeError(f"{name}: missing")
  check_actor_id(msg.actor_id)
  return specs.Step(
    msg.actor_id,
    msg.step,
    *(decode(getattr(msg, name), payload, name) for name in _STEP_FIELDS),
  )


def encode_actions(actions: np.ndarray) -> bytes:
  payload = Payload()
  return payload.serialize(pb.Actions(actions=payload.add(actions)).SerializeToString())


def encode_run_ended(reason: str) -> bytes:
  return pb.Actions(run_ended=reason).SerializeToString()


def decode_actions(raw: bytes, num_envs: int, num_actions: int) -> tuple[np.ndarray | None, str]:
  """(actions [N] int32, "") or, once the learner's run is over, (None, its stop reason);
  DecodeError for actions that do not fit the actor's environments."""
  msg, payload = parse(pb.Actions, raw)
  if msg.run_ended:
    return None, msg.run_ended
  actions = decode(msg.actions, payload, "actions")
  if actions.shape != (num_envs,) or actions.dtype != np.int32:
    raise DecodeError(
      f"actions: expected int32[{num_envs}], got {actions.dtype}{list(actions.shape)}"
    )
  if num_envs and not (0 <= actions.min() and actions.max() < num_actions):
    raise DecodeError(f"actions: out of range [0, {num_actions})")
  return actions, ""


# --- Parameters -------------------------------------------------------------------------


def encode_weights(version: int, params: dict) -> bytes:
  """The serialized Weights message of one version (done once per version)."""
  payload = Payload()
  layout = tuple(
    (module, name, *payload.append(value))
    for module, leaves in params.items()
    for name, value in leaves.items()
  )
  return payload.serialize(pb.Weights(version=version).SerializeToString() + _params_field(layout))


@functools.lru_cache(maxsize=4)
def _params_field(layout: tuple) -> bytes:
  """The serialized `params` of Weights: the same for every version of a network, made once."""
  return pb.Weights(
    params=[
      pb.Param(
        name=f"{module}/{name}", value=pb.Tensor(dtype=dtype.name, shape=shape, offset=offset)
      )
      for module, name, dtype, shape, offset in layout
    ]
  ).SerializeToString()


NOT_MODIFIED = pb.Weights(not_modified=True).SerializeToString()


def _params(payload: Payload, params: dict) -> list[pb.Param]:
  return [
    pb.Param(name=f"{module}/{name}", value=payload.add(value))
    for module, leaves in params.items()
    for name, value in leaves.items()
  ]


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


def encode_setup(run_settings: dict, run_id: str, actor_index: int, seed: int) -> pb.Setup:
  settings = {
    name: json.dumps(value) if isinstance(value, dict) else value
    for name, value in run_settings.items()
  }
  return pb.Setup(
    protocol_version=PROTOCOL_VERSION,
    run_id=run_id,
    actor_index=actor_index,
    seed=seed,
    settings=pb.RunSettings(**settings),
  )


def decode_setup(setup: pb.Setup, config: Config) -> Config:
  """The actor's config: its own settings with the run's settings from the learner, and
  its own seed."""
  settings = {}
  for name in RUN_SETTINGS:
    value, own = getattr(setup.settings, name), getattr(config, name)
    settings[name] = json.loads(value) if isinstance(own, dict) else type(own)(value)
  return dataclasses.replace(config, **dict(settings, seed=setup.seed))
