"""Actor-critic networks (dm-haiku): a torso, an optional LSTM core, policy and value heads.

Torsos: an MLP for vector observations, the MinAtar paper's small convolution for its
10x10 boolean images, and the IMPALA paper's shallow and deep (ResNet) torsos for Atari
images (uint8 pixels are scaled to [0, 1]).
The LSTM core resets its state at the first observation of every episode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from impala.distributions import Categorical


class AgentOutput(NamedTuple):
  logits: jnp.ndarray  # [..., A]
  value: jnp.ndarray  # [...]


class Network(NamedTuple):
  """Pure functions of one network description.

  `step` acts on one time step of a batch ([B, ...]); `unroll` replays a
  time-major sequence ([T, B, ...]) from a core state. Both give the same
  outputs for the same inputs, so the learner sees what the actor saw.
  """

  init: Callable  # (rng) -> params
  initial_state: Callable  # (batch_size) -> core state (a tuple of arrays, () without LSTM)
  step: Callable  # (params, obs, first, state) -> (AgentOutput, state)
  unroll: Callable  # (params, obs, first, state) -> AgentOutput


def mlp_torso(hidden_sizes):
  def torso(x):
    x = hk.Flatten()(x.astype(jnp.float32))
    for size in hidden_sizes:
      x = jax.nn.relu(hk.Linear(size)(x))
    return x

  return torso


def minatar_torso(x):
  """Young and Tian 2019 (MinAtar), section 4: one 3x3 convolution, then 128 units."""
  x = jax.nn.relu(hk.Conv2D(16, 3, stride=1, padding="VALID")(x.astype(jnp.float32)))
  return jax.nn.relu(hk.Linear(128)(hk.Flatten()(x)))


def shallow_torso(x):
  """Espeholt et al. 2018, Figure 3 (left)."""
  x = x.astype(jnp.float32) / 255.0
  x = jax.nn.relu(hk.Conv2D(16, 8, stride=4, padding="VALID")(x))
  x = jax.nn.relu(hk.Conv2D(32, 4, stride=2, padding="VALID")(x))
  return jax.nn.relu(hk.Linear(256)(hk.Flatten()(x)))


def deep_torso(x):
  """Espeholt et al. 2018, Figure 3 (right): three residual sections."""
  x = x.astype(jnp.float32) / 255.0
  for channels in (16, 32, 32):
    x = hk.Conv2D(channels, 3, stride=1, padding="SAME")(x)
    x = hk.max_pool(x, window_shape=(1, 3, 3, 1), strides=(1, 2, 2, 1), padding="SAME")
    for _ in range(2):
      block = jax.nn.relu(x)
      block = hk.Conv2D(channels, 3, stride=1, padding="SAME")(block)
      block = jax.nn.relu(block)
      block = hk.Conv2D(channels, 3, stride=1, padding="SAME")(block)
      x = x + block
  x = jax.nn.relu(hk.Flatten()(x))
  return jax.nn.relu(hk.Linear(256)(x))


def make_network(
  torso: str, hidden_sizes, lstm_size: int, observation_shape, num_actions: int
) -> Network:
  """Builds the network for a description (as carried by the handshake)."""
  torso_fn = {
    "mlp": mlp_torso(tuple(hidden_sizes)),
    "minatar": minatar_torso,
    "shallow": shallow_torso,
    "deep": deep_torso,
  }[torso]

  def heads(x):
    logits = hk.Linear(num_actions, name="policy")(x)
    value = jnp.squeeze(hk.Linear(1, name="value")(x), axis=-1)
    return AgentOutput(logits, value)

  def core():
    return hk.ResetCore(hk.LSTM(lstm_size))

  def step_fn(obs, first, state):
    x = torso_fn(obs)
    if lstm_size:
      x, state = core()((x, first), hk.LSTMState(*state))
      state = tuple(state)
    return heads(x), state

  def unroll_fn(obs, first, state):
    x = hk.BatchApply(torso_fn)(obs)
    if lstm_size:
      x, _ = hk.dynamic_unroll(core(), (x, first), hk.LSTMState(*state))
    return hk.BatchApply(heads)(x)

  def initial_state(batch_size: int):
    if not lstm_size:
      return ()
    zeros = np.zeros((batch_size, lstm_size), np.float32)
    return (zeros, zeros.copy())

  step = hk.without_apply_rng(hk.transform(step_fn))
  unroll = hk.without_apply_rng(hk.transform(unroll_fn))
  dummy_obs = np.zeros((1, 1) + tuple(observation_shape), np.float32)

  @jax.jit  # one compilation instead of one per layer op (1.5 s -> 0.2 s for the MLP)
  def init(rng):
    return unroll.init(rng, dummy_obs, np.zeros((1, 1), bool), initial_state(1))

  return Network(init, initial_state, step.apply, unroll.apply)


def make_policy(network: Network, greedy: bool = False, distribution=Categorical):
  """`policy(params, rng, obs, first, state) -> (rng, action, logits, state)`, jitted:
  actions sampled from the policy, or (`greedy`) its most likely ones."""

  @jax.jit
  def policy(params, rng, obs, first, state):
    rng, key = jax.random.split(rng)
    out, state = network.step(params, obs, first, state)
    if greedy:
      action = distribution.mode(out.logits)
    else:
      action = distribution.sample(key, out.logits)
    return rng, action, out.logits, state

  return policy


def for_run(config, env) -> Network:
  """The network of a run: `config` a Config, `env` an environments.EnvSpec."""
  return make_network(
    config.torso, config.hidden_sizes, config.lstm_size, env.observation_shape, env.num_actions
  )
