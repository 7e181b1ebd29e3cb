"""Property-based fuzzing of what the learner does with an uploaded message: decode it
(codec.decode_unroll) and check it (Learner.enqueue). Every message is either taken
(accepted, or dropped as a duplicate) or refused with DecodeError / InvalidUnroll, which
the server turns into INVALID_ARGUMENT (tests/test_service.py checks that mapping over
gRPC); nothing else may escape. Derandomized: the same cases on every run."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from impala import learner as learner_lib
from impala import specs
from impala.actor import Session
from impala.transport import codec
from impala.transport import payload as payload_lib
from impala.transport.proto import impala_pb2 as pb

pytestmark = pytest.mark.slow  # over 10,000 cases: a long property test, not a fast layer

EXAMPLES = 3_400  # per strategy: over 10,000 messages in all
SETTINGS = settings(
  max_examples=EXAMPLES,
  deadline=None,
  derandomize=True,
  database=None,
  suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def target():
  """(learner, valid serialized unrolls, outcomes seen); the learner never waits on its queue."""
  from impala.config import Config

  config = Config(num_envs=3, unroll_length=4, batch_size=2, queue_size=4)
  parts = learner_lib.build(config)
  learner = parts.learner
  actor = Session(config)
  actor.prepare(config)
  params = learner.params_for_actor()[1]
  valid = [codec.encode_unroll(*actor.unroll(params, 0)) for _ in range(3)]
  outcomes = {}
  yield learner, valid, outcomes
  parts.close()
  # Every kind of outcome occurred: the strategies reach past the first check.
  assert {"taken", "DecodeError", "InvalidUnroll"} <= set(outcomes), outcomes
  assert sum(outcomes.values()) >= 3 * EXAMPLES


def ingest(target, raw: bytes):
  learner, _, outcomes = target
  try:
    unroll, info = codec.decode_unroll(raw)
    learner.intake.enqueue(unroll, info, keep_waiting=lambda: False)
    kind = "taken"
  except (codec.DecodeError, specs.InvalidUnroll) as e:
    assert str(e), "a refusal names the field and the problem"
    kind = type(e).__name__
  outcomes[kind] = outcomes.get(kind, 0) + 1


@SETTINGS
@given(data=st.data())
def test_mutated_valid_messages(target, data):
  raw = bytearray(data.draw(st.sampled_from(target[1])))
  for _ in range(data.draw(st.integers(0, 6))):
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] = data.draw(st.integers(0, 255))
  cut = data.draw(st.one_of(st.just(len(raw)), st.integers(0, len(raw))))
  ingest(target, bytes(raw[:cut]))


@SETTINGS
@given(raw=st.binary(max_size=300))
def test_random_bytes(target, raw):
  ingest(target, raw)


DTYPES = sorted(payload_lib.ALLOWED_DTYPES) + ["float128", "object", "<U4", "", "V8", "int32 "]
FIELDS = (
  "observations",
  "terminated",
  "truncated",
  "actions",
  "rewards",
  "behaviour_logits",
  "episode_returns",
  "episode_lengths",
)


@SETTINGS
@given(data=st.data())
def test_valid_messages_with_one_tensor_description_changed(target, data):
  """Wrong dtypes, shapes, ranks and offsets, in Python-integer sizes up to 2**64."""
  msg = pb.Unroll.FromString(data.draw(st.sampled_from(target[1])))
  tensor = getattr(msg, data.draw(st.sampled_from(FIELDS)))
  change = data.draw(st.sampled_from(["dtype", "shape", "offset", "payload"]))
  if change == "dtype":
    tensor.dtype = data.draw(st.sampled_from(DTYPES))
  elif change == "shape":
    tensor.ClearField("shape")
    tensor.shape.extend(
      data.draw(
        st.lists(st.one_of(st.integers(-2, 8), st.integers(-(2**63), 2**63 - 1)), max_size=10)
      )
    )
  elif change == "offset":
    tensor.offset = data.draw(st.one_of(st.integers(0, 2048), st.integers(0, 2**64 - 1)))
  else:
    msg.payload = data.draw(st.binary(max_size=2048))
  ingest(target, msg.SerializeToString())


@SETTINGS
@given(data=st.data())
def test_valid_messages_with_hostile_values(target, data):
  """Any float32 (huge, NaN, infinite) in the float tensors, any end flags, any id,
  sequence and version: taken or refused, and what is taken leaves the learner's episode
  figures finite and within --max-abs-input per step."""
  learner, valid, _ = target
  unroll, info = codec.decode_unroll(data.draw(st.sampled_from(valid)))
  floats = st.floats(width=32)
  fields = {}
  for name in ("rewards", "observations", "behaviour_logits", "terminated", "truncated"):
    if data.draw(st.booleans()):
      shape = getattr(unroll, name).shape
      size = int(np.prod(shape))
      values = st.booleans() if name in ("terminated", "truncated") else floats
      drawn = data.draw(st.lists(values, min_size=size, max_size=size))
      fields[name] = np.array(drawn, getattr(unroll, name).dtype).reshape(shape)
  reported = data.draw(st.lists(floats, max_size=120))
  info = info._replace(
    actor_id=data.draw(st.one_of(st.just(info.actor_id), st.text(max_size=140))),
    sequence=data.draw(st.integers(0, 2**63 - 1)),
    params_version=data.draw(st.one_of(st.integers(0, 1), st.integers(0, 2**64 - 1))),
    episode_returns=np.array(reported, np.float32),
    episode_lengths=np.array(
      data.draw(
        st.lists(st.integers(-(2**31), 2**31 - 1), min_size=len(reported), max_size=len(reported))
      ),
      np.int32,
    ),
  )
  ingest(target, codec.encode_unroll(unroll._replace(**fields), info))
  _, returns, lengths = learner.intake.counts()
  bound = learner.config.max_abs_input
  assert all(np.isfinite(returns)) and all(0 <= n <= 2**31 for n in lengths)
  assert all(abs(r) <= bound * max(n, 1) for r, n in zip(returns, lengths))
