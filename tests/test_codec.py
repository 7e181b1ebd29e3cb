"""The tensor codec and the message conversions round-trip and reject malformed bytes."""

import numpy as np
import pytest

from impala import testing
from impala.config import Config
from impala.transport import codec
from impala.transport import payload as payload_lib
from impala.transport.proto import impala_pb2 as pb


def serialized(*arrays):
  """Arrays as the tensors of one message (a Weights message serves as the container)."""
  payload = payload_lib.Payload()
  header = pb.Weights(
    params=[pb.Param(name=str(i), value=payload.add(a)) for i, a in enumerate(arrays)]
  )
  return payload.serialize(header.SerializeToString())


@pytest.mark.parametrize("dtype", sorted(payload_lib.ALLOWED_DTYPES))
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3, 4)])
def test_round_trip(dtype, shape):
  array = (np.arange(int(np.prod(shape))) % 7).astype(dtype).reshape(shape)
  msg, payload = payload_lib.parse(pb.Weights, serialized(np.ones(5, np.int8), array))
  decoded = payload_lib.decode(msg.params[1].value, payload)
  assert decoded.dtype == array.dtype and decoded.shape == array.shape
  np.testing.assert_array_equal(decoded, array)


def test_messages_stay_plain_protobuf():
  """Any protobuf library parses them: the payload is an ordinary bytes field."""
  a, b = np.arange(3, dtype=np.float32), np.arange(4, dtype=np.int8)
  msg = pb.Weights.FromString(serialized(a, b))
  assert msg.payload == a.tobytes() + b.tobytes()
  assert [p.value.offset for p in msg.params] == [0, 12]


def test_decoding_does_not_copy():
  raw = serialized(np.arange(1000, dtype=np.float32))
  msg, payload = payload_lib.parse(pb.Weights, raw)
  decoded = payload_lib.decode(msg.params[0].value, payload)
  assert np.shares_memory(decoded, np.frombuffer(raw, np.uint8)) and not decoded.flags.writeable


def test_payload_found_wherever_it_lies():
  """Other encoders write fields in number order, the payload (15) last; that parses too."""
  a = np.arange(3, dtype=np.float32)
  msg = pb.Weights.FromString(serialized(a))
  msg.version = 9
  reordered = msg.SerializeToString()
  assert not reordered.startswith(serialized(a)[:1])
  got, payload = payload_lib.parse(pb.Weights, reordered)
  assert got.version == 9 and got.payload == b""  # the payload is not copied into the header
  np.testing.assert_array_equal(payload_lib.decode(got.params[0].value, payload), a)


def test_big_endian_input_is_sent_little_endian():
  array = np.arange(4, dtype=">i4")
  msg, payload = payload_lib.parse(pb.Weights, serialized(array))
  np.testing.assert_array_equal(payload_lib.decode(msg.params[0].value, payload), array)


@pytest.mark.parametrize(
  "tensor,message",
  [
    (
      pb.Tensor(dtype="float32", shape=[2, 3], offset=0),
      "float32[2, 3] at offset 0 ends at byte 24, past the payload (20 bytes)",
    ),
    (pb.Tensor(dtype="float32", shape=[1], offset=18), "ends at byte 22, past the payload"),
    (pb.Tensor(dtype="object", shape=[1]), "dtype 'object' not allowed"),
    (pb.Tensor(dtype="float32", shape=[-1, 4]), "bad shape"),
    # Sizes are Python integers: nothing wraps around; shapes no array could have are refused.
    (pb.Tensor(dtype="float64", shape=[2**62, 4]), "bad shape"),
    (pb.Tensor(dtype="float32", shape=[0, 2**61]), "bad shape"),  # found by tests/test_fuzz.py
    (pb.Tensor(dtype="float64", shape=[2**20, 2**19]), "past the payload"),
    (pb.Tensor(dtype="uint8", shape=[1], offset=2**64 - 1), "past the payload"),
  ],
)
def test_rejects_malformed(tensor, message):
  with pytest.raises(payload_lib.DecodeError, match="observations") as e:
    payload_lib.decode(tensor, memoryview(bytes(20)), "observations")
  assert message in str(e.value)


@pytest.mark.parametrize("raw", [b"\x80", b"\x0a\x05ab", b"\x7a\x10abc", b"\x0b"])
def test_rejects_malformed_messages(raw):
  with pytest.raises(payload_lib.DecodeError, match="malformed message"):
    payload_lib.parse(pb.Weights, raw)


def make_unroll(t=3, n=2, lstm=0):
  """A CartPole-shaped unroll with random contents and episode ends, and its info."""
  unroll = testing.random_unroll(testing.cartpole_spec(t, n, lstm), done=0.3)
  return unroll, testing.info("actor-a", 7, 3, returns=(9, 10))


@pytest.mark.parametrize("lstm", [0, 8])
def test_unroll_round_trip(lstm):
  unroll, info = make_unroll(lstm=lstm)
  got, got_info = codec.decode_unroll(codec.encode_unroll(unroll, info))
  for a, b in zip(got[:-1] + got.core_state, unroll[:-1] + unroll.core_state):
    np.testing.assert_array_equal(a, b)
  assert got_info.actor_id == "actor-a" and got_info.sequence == 7 and got_info.params_version == 3
  np.testing.assert_array_equal(got_info.episode_returns, info.episode_returns)


def test_bool_tensors_travel_packed_eight_to_a_byte():
  """MinAtar's observations are bools: a 10x10x4 image of 400 cells takes 50 bytes."""
  spec = testing.cartpole_spec(20, 64)._replace(
    observation_shape=(10, 10, 4), observation_dtype=np.dtype(bool), num_actions=3
  )
  unroll = testing.random_unroll(spec, done=0.4)
  raw = codec.encode_unroll(unroll, testing.info())
  msg = pb.Unroll.FromString(raw)
  sizes = {name: getattr(msg, name) for name in ("observations", "terminated")}
  assert sizes["terminated"].offset - sizes["observations"].offset == 21 * 64 * 400 // 8
  got, _ = codec.decode_unroll(raw)
  for a, b in zip(got[:-1], unroll[:-1]):
    assert a.dtype == b.dtype
    np.testing.assert_array_equal(a, b)
  float_sized = unroll._replace(observations=unroll.observations.astype(np.uint8))
  assert len(raw) < len(codec.encode_unroll(float_sized, testing.info())) / 4


def test_unroll_missing_field_is_named():
  msg = pb.Unroll.FromString(codec.encode_unroll(*make_unroll()))
  msg.ClearField("rewards")
  with pytest.raises(payload_lib.DecodeError, match="rewards: missing"):
    codec.decode_unroll(msg.SerializeToString())


def test_weights_round_trip():
  params = {
    "mlp/linear": {"w": np.ones((4, 3), np.float32), "b": np.zeros(3, np.float32)},
    "policy": {"w": np.full((3, 2), 2.0, np.float32)},
  }
  version, got = codec.decode_weights(codec.encode_weights(5, params))
  assert version == 5 and got.keys() == params.keys()
  for module in params:
    for name in params[module]:
      np.testing.assert_array_equal(got[module][name], params[module][name])
  assert codec.decode_weights(codec.NOT_MODIFIED) is None


def test_setup_round_trip():
  config = Config(
    env_id="CartPole-v1",
    env_kwargs={"max_episode_steps": 200},
    num_envs=3,
    unroll_length=7,
    torso="mlp",
    hidden_sizes=(8, 9),
    lstm_size=4,
    seed=5,
    algorithm="a3c",
    discount=0.9,
    baseline_cost=0.25,
    entropy_cost=0.125,
    clip_rho=1.5,
    clip_pg_rho=2.5,
    max_abs_reward=1.0,
  )
  setup = pb.Setup.FromString(
    codec.encode_setup(config.run_settings(), "run", 2, 1234).SerializeToString()
  )
  got = codec.decode_setup(setup, Config(grpc_host="learner:1"))
  assert got.grpc_host == "learner:1"  # the actor's own settings stay
  assert (got.env_id, got.env_kwargs, got.num_envs, got.unroll_length, got.seed) == (
    "CartPole-v1",
    {"max_episode_steps": 200},
    3,
    7,
    1234,
  )
  assert (got.torso, got.hidden_sizes, got.lstm_size) == ("mlp", (8, 9), 4)
  assert setup.actor_index == 2 and setup.protocol_version == codec.PROTOCOL_VERSION
  # Every run setting travels, under its own name; the seed is the actor's own.
  assert got.run_settings() == dict(config.run_settings(), seed=1234)
  assert setup.settings.seed == 5
