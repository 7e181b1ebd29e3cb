"""Action distributions, one interface over the policy's parameters (distrax's names:
`sample`, `log_prob`, `entropy`, `mode`): the losses and the acting policy are written
against it, so a distribution for another kind of action space plugs in as one more class."""

from __future__ import annotations

import jax
import jax.numpy as jnp


class Categorical:
  """A Discrete action space: the parameters are logits [..., A], actions int32 [...]."""

  @staticmethod
  def sample(key: jax.Array, logits: jax.Array) -> jax.Array:
    return jax.random.categorical(key, logits).astype(jnp.int32)

  @staticmethod
  def log_prob(logits: jax.Array, actions: jax.Array) -> jax.Array:
    log_p = jax.nn.log_softmax(logits)
    return jnp.take_along_axis(log_p, actions[..., None], axis=-1)[..., 0]

  @staticmethod
  def entropy(logits: jax.Array) -> jax.Array:
    log_p = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)

  @staticmethod
  def mode(logits: jax.Array) -> jax.Array:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
