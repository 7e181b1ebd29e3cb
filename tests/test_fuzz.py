"""Property-based fuzzing of what the learner does with an uploaded message: decode it
(codec.decode_unroll) and check it (Learner.enqueue). Every message is either taken
(accepted, or dropped as a duplicate) or refused with DecodeError / InvalidUnroll, which
the server turns into INVALID_ARGUMENT (tests/test_service.py checks that mapping over
gRPC); nothing else may escape. Derandomized: the same cases on every run."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from impala import specs
from impala.actor import Session
from impala.learner import Learner
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
  learner = Learner(config)
  actor = Session(config)
  actor.prepare(config)
  params = learner.params_for_actor()[1]
  valid = [codec.encode_unroll(*actor.unroll(params, 0)) for _ in range(3)]
  outcomes = {}
  yield learner, valid, outcomes
  learner.close()
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
