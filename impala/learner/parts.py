"""The learner's parts, composed in one place: what it learns (the environment, the
unroll spec, the network, the mesh, the algorithm), the intake, the actor registry, the
batcher, learner-side inference, the learner and the port the server sees. Nothing else
builds a sibling or starts a thread; `Parts.start` starts them all."""

from __future__ import annotations

import warnings
from typing import NamedTuple

import jax
import numpy as np

from impala import algorithms, checkpoint, distributed, environments, networks, specs
from impala.config import Config, ConfigError
from impala.learner.batcher import Batcher
from impala.learner.inference import Inference
from impala.learner.intake import Intake
from impala.learner.learner import Learner
from impala.learner.port import LearnerPort
from impala.learner.registry import ActorRegistry
from impala.transport import server


class Design(NamedTuple):
  """What a learner learns, and how."""

  env: environments.EnvSpec
  spec: specs.UnrollSpec
  network: networks.Network
  mesh: jax.sharding.Mesh
  algorithm: algorithms.Algorithm


class Parts(NamedTuple):
  learner: Learner
  intake: Intake
  actors: ActorRegistry
  batcher: Batcher
  inference: Inference
  port: LearnerPort

  def start(self):
    """Starts assembling batches and serving learner-side inference."""
    self.batcher.start()
    self.inference.start()

  def serve(self, number: int, address: str = "[::]") -> tuple[server.Servers, int, object]:
    """The started gRPC servers of the port (see server.create_server)."""
    return server.create_server(self.port, self.learner.config, number, address)

  def close(self):
    """Lets go of whatever waits on the intake, and stops the threads."""
    self.intake.close()
    self.batcher.close()
    self.inference.stop()


def design(config: Config, algorithm: algorithms.Algorithm | None = None) -> Design:
  """The run's design, checked; `algorithm` defaults to the configured one."""
  _check_devices(config)
  env = environments.describe(config.env_id, config.env_kwargs, config.env_module)
  spec = specs.UnrollSpec.for_run(config, env)
  network = networks.for_run(config, env)
  _check_sizes(config, spec, network)
  if config.checkpoint_dir and config.learner_index == 0:
    try:
      checkpoint.check_directory(config.checkpoint_dir)
    except OSError as e:
      raise ConfigError(
        f"bad value for --checkpoint-dir: {config.checkpoint_dir!r} (not a folder this "
        f"learner can write: {e.strerror or e})",
        "checkpoint_dir",
      ) from None
  mesh = distributed.make_mesh()
  algorithm = algorithm or algorithms.for_run(config, network, spec, mesh)
  return Design(env, spec, network, mesh, algorithm)


def build(config: Config, algorithm: algorithms.Algorithm | None = None) -> Parts:
  """A learner and its parts, not started. With several learners, call
  `distributed.initialize` first: all learners build theirs together."""
  made = design(config, algorithm)
  actors = ActorRegistry(config.learner_index, config.num_learners, config.seed)
  learner = None  # the intake reads its version once it exists
  intake = Intake(
    made.algorithm.check,
    lambda: learner.version,
    actors.seen,
    config.queue_size,
    config.max_policy_lag,
  )
  batcher = Batcher(intake.queue, made.algorithm.assemble, made.algorithm.unrolls_per_update)
  learner = Learner(config, made, intake, actors, batcher)
  inference = Inference(config, made.network, learner.acting_params)
  port = LearnerPort(learner, intake, actors, inference)
  return Parts(learner, intake, actors, batcher, inference, port)


def _check_sizes(config: Config, spec: specs.UnrollSpec, network: networks.Network):
  """ConfigError unless the network fits the observations and its weights and an
  unroll each fit in one message."""
  shape = list(spec.observation_shape)
  if config.torso != "mlp" and len(shape) != 3:
    raise ConfigError(
      f"bad value for --torso: {config.torso!r} (a convolutional torso needs image "
      f"observations [H, W, C]; {config.env_id} has {shape}; use mlp)",
      "torso",
    )
  try:
    with warnings.catch_warnings(action="ignore"):  # haiku's, about an empty layer
      layout = jax.eval_shape(network.init, jax.random.PRNGKey(0))
    if any(leaf.size == 0 for leaf in jax.tree.leaves(layout)):
      raise ValueError("the images are too small for it")
  except (ValueError, TypeError) as e:
    raise ConfigError(
      f"bad value for --torso: {config.torso!r} (does not fit observations {shape}: "
      f"{str(e).splitlines()[0]})",
      "torso",
    ) from None
  limit = config.max_message_mb
  weights = sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(layout))
  if weights > config.max_message_bytes:
    raise ConfigError(
      f"bad value for --lstm-size/--hidden-sizes: the network's weights are "
      f"{weights / 2**20:,.0f} MiB, over --max-message-mb {limit}"
    )
  layout = spec.layout()
  unroll = sum(
    int(np.prod(shape)) * dtype.itemsize for shape, dtype in (*layout[:-1], *layout.core_state)
  )
  if unroll > config.max_message_bytes:
    raise ConfigError(
      f"bad value for --num-envs/--unroll-length: an unroll of {config.num_envs} "
      f"environments x {config.unroll_length} steps is {unroll / 2**20:,.0f} MiB, over "
      f"--max-message-mb {limit}"
    )


def _check_devices(config: Config):
  if jax.process_count() != config.num_learners:
    raise ConfigError(
      f"bad value for --num-learners: {config.num_learners} (the JAX job has "
      f"{jax.process_count()} processes)"
    )
  devices, batch = jax.local_device_count(), config.num_envs * config.batch_size
  if batch % devices:
    raise ConfigError(
      f"bad value for --batch-size: {config.batch_size} (num_envs * batch_size "
      f"must be a multiple of the {devices} devices)"
    )
  per_device = batch // devices
  if per_device % algorithms.passes(config)[1]:
    raise ConfigError(
      f"bad value for --ppo-minibatches: {config.ppo_minibatches} (must divide the "
      f"{per_device} environments of a batch on each of the {devices} devices)"
    )
