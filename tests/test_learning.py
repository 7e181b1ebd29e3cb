"""The learner's batching: unrolls stacked along the batch axis, ready for a zero-copy device_put."""

import jax
import numpy as np

from impala import learning
from test_codec import make_unroll


def test_stack_concatenates_along_the_batch_axis_into_aligned_arrays():
  (a, _), (b, _) = make_unroll(t=3, n=2, lstm=4), make_unroll(t=3, n=2, lstm=4)
  b = b._replace(rewards=b.rewards + 1.0)
  batch = learning.stack([a, b])
  for got, x, y in zip(batch[:-1], a[:-1], b[:-1]):
    np.testing.assert_array_equal(got, np.concatenate([x, y], axis=1))
  for got, x, y in zip(batch.core_state, a.core_state, b.core_state):
    np.testing.assert_array_equal(got, np.concatenate([x, y], axis=0))
  assert all(x.ctypes.data % 64 == 0 for x in batch[:-1] + batch.core_state)


def test_aligned_batches_reach_the_cpu_device_without_a_copy():
  (a, _), (b, _) = make_unroll(), make_unroll()
  batch = learning.stack([a, b])
  on_device = jax.device_put(batch.observations)
  if jax.default_backend() == "cpu":
    assert on_device.unsafe_buffer_pointer() == batch.observations.ctypes.data
  np.testing.assert_array_equal(on_device, batch.observations)
