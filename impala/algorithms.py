"""The algorithms the learner can run, each one jitted update passed to the learner.

IMPALA: actors upload trajectories; `sgd_step` takes the V-trace gradient of a batch of
them, all-reduced over the mesh of learners. A3C: actors upload the gradients of their
own unrolls; `apply_step` applies each as it comes. Both updates have one signature,
`update(state, input, control) -> (state, metrics, totals)`, so the learner runs either
(or a new one) without knowing which.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from impala import distributed, losses, networks, specs
from impala.config import Config


class TrainingState(NamedTuple):
  params: dict  # what the actors act with
  opt_state: optax.OptState
  average_params: dict  # exponential moving average of params: what evaluation uses


def initial_state(params: dict, optimizer: optax.GradientTransformation) -> TrainingState:
  return TrainingState(params, optimizer.init(params), params)


def unrolls_per_update(config: Config) -> int:
  """Uploads that make one update's input: a batch of unrolls, or (A3C) one gradient."""
  return 1 if config.algorithm == "a3c" else config.batch_size


def passes(config: Config) -> tuple[int, int]:
  """(passes over each batch, minibatches per pass): APPO's, else one of one."""
  return (config.ppo_epochs, config.ppo_minibatches) if config.algorithm == "appo" else (1, 1)


def steps_per_update(config: Config) -> int:
  """Optimizer steps in one update."""
  epochs, minibatches = passes(config)
  return epochs * minibatches


def learning_rate(config: Config) -> optax.Schedule:
  """The learning rate after n updates: constant, or decayed linearly to 0 over
  --lr-decay-frames (else --max-frames) frames of all learners."""
  if config.lr_schedule == "constant":
    return optax.constant_schedule(config.learning_rate)
  per_update = (
    config.unroll_length * config.num_envs * unrolls_per_update(config) * config.num_learners
  )
  updates = max(1, (config.lr_decay_frames or config.max_frames) // per_update)
  return optax.linear_schedule(config.learning_rate, 0.0, updates)


def make_optimizer(config: Config) -> optax.GradientTransformation:
  schedule, steps = learning_rate(config), steps_per_update(config)

  def rate(count):  # optax counts optimizer steps; the schedule, updates
    return schedule(count // steps)

  constant = config.lr_schedule == "constant"  # a number: no step count in the state
  return optax.chain(
    optax.clip_by_global_norm(config.max_grad_norm),
    optax.rmsprop(
      config.learning_rate if constant else rate,
      decay=config.rmsprop_decay,
      eps=config.rmsprop_eps,
    ),
  )


def make_apply(optimizer: optax.GradientTransformation, average_decay: float) -> Callable:
  """`apply(state, grads, also=()) -> (state, applied)`: one optimizer step and the moving
  average, unless the gradients, the new parameters or `also` (the loss) are not all
  finite (a batch of overflowing values): then the state stays as it was and `applied`
  is False."""

  def apply(state: TrainingState, grads: dict, also=()) -> tuple[TrainingState, jax.Array]:
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    average = optax.incremental_update(params, state.average_params, 1.0 - average_decay)
    new = TrainingState(params, opt_state, average)
    applied = all_finite((grads, new, also))
    return jax.tree.map(lambda n, o: jnp.where(applied, n, o), new, state), applied

  return apply


def all_finite(tree) -> jax.Array:
  return jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]).all()


def norms(state: TrainingState, grads: dict) -> dict:
  return dict(grad_norm=optax.tree.norm(grads), param_norm=optax.tree.norm(state.params))


def make_apply_step(optimizer: optax.GradientTransformation, average_decay: float) -> Callable:
  """A3C: `apply_step(state, grads, control) -> (state, metrics, control)`, jitted: an
  actor's gradient applied as it comes, with the one optimizer state (one learner)."""
  apply = make_apply(optimizer, average_decay)

  @jax.jit
  def apply_step(state: TrainingState, grads: dict, control: jax.Array):
    state, applied = apply(state, grads)
    return state, dict(norms(state, grads), skipped=1.0 - applied), control

  return apply_step


def make_sgd_step(
  loss_fn: Callable,
  optimizer: optax.GradientTransformation,
  mesh: Mesh,
  average_decay: float = 0.99,
  epochs: int = 1,
  minibatches: int = 1,
) -> Callable:
  """`sgd_step(state, batch, control) -> (state, metrics, totals)`, jitted over `mesh`.

  Each device takes the gradient of the loss on its part of the batch; the gradients
  of the devices whose learner brought a batch are averaged across the mesh (the
  all-reduce), and every device applies that same update to its replica of the state.
  `control` holds each device's Control row; `totals` is their sum over learners. When
  no learner brought a batch the state is left as it is.

  `epochs` passes over the batch, each in `minibatches` parts split along the
  environments (APPO), take one such step per part; metrics are their mean.
  """
  devices_per_learner = len(mesh.local_devices)
  apply = make_apply(optimizer, average_decay)

  def sgd(state: TrainingState, batch: specs.Unroll, row: jax.Array):
    weight = row[distributed.WEIGHT]
    (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
    # One all-reduce of everything, as one vector: each is a round trip between learners.
    contribution = jax.tree.map(lambda x: jnp.where(weight > 0, x, 0.0), (grads, metrics))
    flat, unflatten = jax.flatten_util.ravel_pytree((contribution, row))
    (grads, metrics), totals = unflatten(jax.lax.psum(flat, distributed.AXIS))
    # Devices that took a gradient: each of the mean over its part.
    shares = totals[distributed.WEIGHT]
    grads, metrics = jax.tree.map(lambda x: x / jnp.maximum(shares, 1.0), (grads, metrics))
    new, applied = apply(state, grads, metrics)
    state = jax.tree.map(lambda n, o: jnp.where(shares > 0, n, o), new, state)
    metrics.update(norms(state, grads), skipped=jnp.where(shares > 0, 1.0 - applied, 0.0))
    return state, metrics, totals

  def step(state: TrainingState, batch: specs.Unroll, control: jax.Array):
    if epochs == minibatches == 1:
      state, metrics, totals = sgd(state, batch, control[0])
    else:
      state, metrics, totals = _passes(sgd, state, batch, control[0], epochs, minibatches)
    return state, metrics, totals / devices_per_learner

  # check_vma=False: rlax's V-trace scan does not mark its carry as varying across the
  # mesh; the outputs are replicated all the same (psums, and updates computed from them).
  return jax.jit(
    jax.shard_map(
      step,
      mesh=mesh,
      in_specs=(P(), distributed.BATCH_SPEC, P(distributed.AXIS)),
      out_specs=(P(), P(), P()),
      check_vma=False,
    )
  )


def _passes(sgd: Callable, state, batch: specs.Unroll, row, epochs: int, minibatches: int):
  """`epochs` passes of `sgd` over the batch, each in `minibatches` parts; the metrics are
  their mean, the totals the last step's."""
  parts = split(batch, minibatches)

  def one_pass(state, _):
    def one_part(state, part):
      state, metrics, totals = sgd(state, part, row)
      return state, (metrics, totals)

    # Unrolled: XLA:CPU runs a convolution inside a loop 4x slower than outside one.
    return jax.lax.scan(one_part, state, parts, unroll=True)

  state, (metrics, totals) = jax.lax.scan(one_pass, state, None, length=epochs, unroll=True)
  return state, jax.tree.map(jnp.mean, metrics), totals[-1, -1]


def split(batch: specs.Unroll, parts: int) -> specs.Unroll:
  """The batch as `parts` minibatches of its environments, stacked on a new first axis."""

  def by_env(x, axis):
    x = x.reshape(x.shape[:axis] + (parts, x.shape[axis] // parts) + x.shape[axis + 1 :])
    return jnp.moveaxis(x, axis, 0)

  return batch._replace(
    **{name: by_env(getattr(batch, name), 1) for name in batch._fields if name != "core_state"},
    core_state=tuple(by_env(x, 0) for x in batch.core_state),
  )


class Algorithm(NamedTuple):
  """How one algorithm learns, as the learner uses it: its loss inside its update."""

  name: str
  unrolls_per_update: int  # uploads that make one update's input
  init: Callable  # (params) -> TrainingState
  check: Callable  # (upload, info) -> None; raises specs.InvalidUnroll
  assemble: Callable  # (list of uploads) -> the update's input, on the devices
  placeholder: Callable  # () -> an input of the right shapes (compiling, empty shares)
  update: Callable  # jitted (state, input, control) -> (state, metrics, totals)


def loss_for_run(config: Config, unroll_fn: Callable) -> Callable:
  """The loss of the configured algorithm (losses.py), of the network's `unroll_fn`."""
  costs = losses.costs(config)
  if config.algorithm == "appo":
    return losses.appo_loss(unroll_fn, ppo_clip=config.ppo_clip, **costs)
  return {"impala": losses.impala_loss, "a3c": losses.a3c_loss}[config.algorithm](
    unroll_fn, **costs
  )


def for_run(
  config: Config, network: networks.Network, spec: specs.UnrollSpec, mesh: Mesh
) -> Algorithm:
  """The configured algorithm."""
  return ALGORITHMS[config.algorithm](config, network, spec, mesh)


def impala(
  config: Config, network: networks.Network, spec: specs.UnrollSpec, mesh: Mesh
) -> Algorithm:
  """IMPALA, and APPO: the same trajectories, another loss and several steps on each batch."""
  optimizer = make_optimizer(config)

  def check(upload, info: specs.UnrollInfo):
    _expect_kind(upload, config.algorithm, gradients=False)
    spec.check(upload, config.max_abs_input)

  return Algorithm(
    config.algorithm,
    unrolls_per_update(config),
    lambda params: initial_state(params, optimizer),
    check,
    lambda unrolls: distributed.shard_batch(mesh, specs.stack(unrolls)),
    lambda: distributed.shard_batch(mesh, spec.zeros(spec.num_envs * unrolls_per_update(config))),
    make_sgd_step(
      loss_for_run(config, network.unroll),
      optimizer,
      mesh,
      config.average_decay,
      *passes(config),
    ),
  )


def a3c(config: Config, network: networks.Network, spec: specs.UnrollSpec, mesh: Mesh) -> Algorithm:
  """A3C: the actors take the gradients of their loss (actor/rollout.py); the update
  applies each as it comes."""
  optimizer = make_optimizer(config)
  layout = jax.eval_shape(network.init, jax.random.PRNGKey(0))

  def check(upload, info: specs.UnrollInfo):
    _expect_kind(upload, config.algorithm, gradients=True)
    _check_gradients(upload, layout, config.max_abs_input)
    spec.check_report(info, config.max_abs_input)

  return Algorithm(
    config.algorithm,
    unrolls_per_update(config),
    lambda params: initial_state(params, optimizer),
    check,
    lambda grads: distributed.replicate(mesh, grads[0]),
    lambda: distributed.replicate(mesh, jax.tree.map(lambda p: np.zeros(p.shape, p.dtype), layout)),
    make_apply_step(optimizer, config.average_decay),
  )


# Each algorithm's builder; APPO is IMPALA's with its own loss and passes (see `impala`).
ALGORITHMS = {"impala": impala, "appo": impala, "a3c": a3c}


def _expect_kind(upload, algorithm: str, gradients: bool):
  if isinstance(upload, dict) != gradients:
    sent = "gradients" if isinstance(upload, dict) else "trajectory"
    raise specs.InvalidUnroll(
      f"{sent}: this learner trains {algorithm}, whose actors send "
      f"{'gradients' if gradients else 'trajectories'}",
      "wrong_algorithm",
    )


def _check_gradients(grads: dict, layout: dict, max_abs: float):
  names = {(m, n) for m, leaves in grads.items() for n in leaves}
  expected = {(m, n) for m, leaves in layout.items() for n in leaves}
  if names != expected:
    m, n = min(names ^ expected)
    raise specs.InvalidUnroll(
      f"gradients: {m}/{n} {'missing' if (m, n) in expected else 'unknown'}", "wrong_shape"
    )
  for m, n in sorted(names):
    value, want = grads[m][n], layout[m][n]
    if value.shape != want.shape or value.dtype != want.dtype:
      raise specs.InvalidUnroll(
        f"gradients: {m}/{n}: expected {want.dtype.name}"
        f"{list(want.shape)}, got {value.dtype.name}{list(value.shape)}",
        "wrong_shape",
      )
    specs.check_magnitude(f"gradients: {m}/{n}", value, max_abs)
