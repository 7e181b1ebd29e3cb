"""The learner's batching (unrolls stacked along the batch axis, ready for a zero-copy
device_put) and its update over the mesh of learners (here: one)."""

import os
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest
from conftest import ROOT
from test_codec import make_unroll

from impala import algorithms, distributed, environments, networks, specs
from impala.config import Config


def test_stack_concatenates_along_the_batch_axis_into_aligned_arrays():
  (a, _), (b, _) = make_unroll(t=3, n=2, lstm=4), make_unroll(t=3, n=2, lstm=4)
  b = b._replace(rewards=b.rewards + 1.0)
  batch = specs.stack([a, b])
  for got, x, y in zip(batch[:-1], a[:-1], b[:-1]):
    np.testing.assert_array_equal(got, np.concatenate([x, y], axis=1))
  for got, x, y in zip(batch.core_state, a.core_state, b.core_state):
    np.testing.assert_array_equal(got, np.concatenate([x, y], axis=0))
  assert all(x.ctypes.data % 64 == 0 for x in batch[:-1] + batch.core_state)


def test_aligned_batches_reach_the_cpu_device_without_a_copy():
  (a, _), (b, _) = make_unroll(), make_unroll()
  batch = specs.stack([a, b])
  on_device = jax.device_put(batch.observations)
  if jax.default_backend() == "cpu":
    assert on_device.unsafe_buffer_pointer() == batch.observations.ctypes.data
  np.testing.assert_array_equal(on_device, batch.observations)


def test_sgd_step_over_the_mesh_is_the_plain_update_and_none_without_a_batch():
  config = Config(num_envs=4, unroll_length=5)
  spec = environments.describe(config.env_id)
  network = networks.for_run(config, spec)
  loss, optimizer = (
    algorithms.loss_for_run(config, network.unroll),
    algorithms.make_optimizer(config),
  )
  mesh = distributed.make_mesh()
  sgd_step = algorithms.make_sgd_step(loss, optimizer, mesh, average_decay=0.9)
  params = jax.device_get(network.init(jax.random.PRNGKey(0)))
  state = algorithms.initial_state(params, optimizer)
  unroll, _ = make_unroll(t=5, n=8)  # CartPole-shaped

  grads, metrics = jax.jit(jax.grad(loss, has_aux=True))(params, unroll)
  updates, _ = optimizer.update(grads, state.opt_state, params)
  expected = optax.apply_updates(params, updates)

  def run(weight: float):
    control = distributed.Control(weight, 12.0, 3.0, 0.0, 1.0).row()
    return sgd_step(
      distributed.replicate(mesh, state),
      distributed.shard_batch(mesh, unroll),
      distributed.per_device(mesh, control),
    )

  new, got_metrics, totals = run(1.0)
  for x, y in zip(jax.tree.leaves(distributed.local(new.params)), jax.tree.leaves(expected)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(
    float(distributed.local(got_metrics)["loss"]), float(metrics["loss"]), rtol=1e-6
  )
  np.testing.assert_array_equal(distributed.local(totals), [1.0, 12.0, 3.0, 0.0, 1.0])
  unchanged, _, totals = run(0.0)  # no learner brought a batch: the state stays as it was
  for x, y in zip(jax.tree.leaves(distributed.local(unchanged)), jax.tree.leaves(state)):
    np.testing.assert_array_equal(x, y)
  assert distributed.local(totals)[0] == 0.0


def test_appo_takes_one_step_per_minibatch_and_pass_in_order():
  """APPO's update over 2 passes of 2 minibatches is 4 plain steps: on the first half of
  the environments, the second, the first, the second."""
  config = Config(num_envs=4, unroll_length=5, algorithm="appo", ppo_epochs=2, ppo_minibatches=2)
  network = networks.for_run(config, environments.describe(config.env_id))
  loss, optimizer = (
    algorithms.loss_for_run(config, network.unroll),
    algorithms.make_optimizer(config),
  )
  mesh = distributed.make_mesh()
  params = jax.device_get(network.init(jax.random.PRNGKey(0)))
  state = distributed.replicate(mesh, algorithms.initial_state(params, optimizer))
  unroll, _ = make_unroll(t=5, n=8, lstm=0)
  control = distributed.per_device(mesh, distributed.WITH_A_BATCH.row())
  appo = algorithms.make_sgd_step(loss, optimizer, mesh, 0.9, epochs=2, minibatches=2)
  got, metrics, _ = appo(state, distributed.shard_batch(mesh, unroll), control)

  plain = algorithms.make_sgd_step(loss, optimizer, mesh, 0.9)
  halves = [jax.tree.map(lambda x: x[:, :4], unroll), jax.tree.map(lambda x: x[:, 4:], unroll)]
  for half in halves * 2:
    state, _, _ = plain(state, distributed.shard_batch(mesh, half), control)
  for x, y in zip(
    jax.tree.leaves(distributed.local(got)), jax.tree.leaves(distributed.local(state))
  ):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
  assert np.isfinite(float(distributed.local(metrics)["loss"]))
  assert not np.allclose(distributed.local(got).params["policy"]["w"], params["policy"]["w"])


TWO_DEVICES = """
import jax, numpy as np
from jax.sharding import Mesh
from impala import algorithms, distributed, environments, losses, networks
from impala.config import Config
from test_codec import make_unroll
config = Config(num_envs=4, unroll_length=5)
spec = environments.describe(config.env_id)
network = networks.for_run(config, spec)
loss, optimizer = algorithms.loss_for_run(config, network.unroll), algorithms.make_optimizer(config)
state = algorithms.initial_state(jax.device_get(network.init(jax.random.PRNGKey(0))), optimizer)
unroll, _ = make_unroll(t=5, n=8)
results = []
for mesh in (Mesh(np.array(jax.devices()[:1]), (distributed.AXIS,)), distributed.make_mesh()):
  sgd_step = algorithms.make_sgd_step(loss, optimizer, mesh)
  control = distributed.per_device(mesh, distributed.Control(1, 5, 1, 0, 0).row())
  new, _, totals = sgd_step(distributed.replicate(mesh, state),
                            distributed.shard_batch(mesh, unroll), control)
  results.append((distributed.local(new.params), distributed.local(totals)))
(one, totals_one), (two, totals_two) = results
print(len(jax.devices()), max(float(np.abs(a - b).max()) for a, b in
                              zip(jax.tree.leaves(one), jax.tree.leaves(two))))
print(totals_one.tolist(), totals_two.tolist())
"""


@pytest.mark.slow
def test_a_learner_on_two_devices_splits_its_batch_and_makes_the_same_update():
  # As on a machine with several GPUs; XLA makes two CPU devices (in a fresh process).
  env = dict(
    os.environ,
    XLA_FLAGS="--xla_force_host_platform_device_count=2",
    PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "tests")]),
  )
  done = subprocess.run(
    [sys.executable, "-c", TWO_DEVICES], env=env, capture_output=True, text=True, timeout=120
  )
  assert done.returncode == 0, done.stderr[-2000:]
  devices, difference = done.stdout.splitlines()[0].split()
  assert devices == "2" and float(difference) < 1e-6, done.stdout
  assert done.stdout.splitlines()[1] == "[1.0, 5.0, 1.0, 0.0, 0.0] [1.0, 5.0, 1.0, 0.0, 0.0]"


@pytest.mark.parametrize("algorithm", ["impala", "appo"])
def test_a_linear_learning_rate_reaches_zero_at_the_frame_budget(algorithm):
  config = Config(lr_schedule="linear", max_frames=2560 * 100, algorithm=algorithm)
  schedule = algorithms.learning_rate(config)  # of updates, each of 20 x 64 x 2 frames
  assert [float(schedule(n)) for n in (0, 50, 100, 200)] == pytest.approx([1e-3, 5e-4, 0, 0])
  # The optimizer counts steps (APPO takes 16 per update): the step after 50 updates'
  # worth takes half the rate. RMSProp (optax: eps inside the root) of a constant gradient
  # 1 from nu = 0: the k-th step is rate / sqrt(1 - decay**k + eps).
  optimizer, params = algorithms.make_optimizer(config), {"w": np.zeros(3, np.float32)}
  state, grads = optimizer.init(params), {"w": np.ones(3, np.float32)}
  k = 50 * algorithms.steps_per_update(config) + 1
  for _ in range(k):
    step, state = optimizer.update(grads, state, params)
  expected = float(schedule(50)) / np.sqrt(1 - config.rmsprop_decay**k + config.rmsprop_eps)
  np.testing.assert_allclose(-step["w"], expected, rtol=1e-4)
