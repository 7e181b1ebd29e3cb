"""Fakes for tests and benchmarks (as acme's testing.fakes): unrolls of any spec with
random contents, and endless streams of them as an actor would upload them."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator

import numpy as np

from impala import specs
from impala.transport import codec


def cartpole_spec(
  unroll_length: int = 3, num_envs: int = 2, lstm_size: int = 0
) -> specs.UnrollSpec:
  """CartPole's shapes: 4 float32 observations, 2 actions."""
  return specs.UnrollSpec(unroll_length, num_envs, (4,), np.dtype(np.float32), 2, lstm_size)


def random_unroll(spec: specs.UnrollSpec, seed: int = 0, done: float = 0.0) -> specs.Unroll:
  """An unroll that fits `spec`, with random contents; each observation is terminal, and
  independently truncated, with probability `done`."""
  rng = np.random.default_rng(seed)
  layout = spec.layout()

  def fill(shape, dtype):
    if dtype.kind == "b":
      return rng.random(shape) < done
    if dtype == np.uint8:
      return rng.integers(0, 256, shape, dtype=np.uint8)
    if dtype == np.int32:
      return rng.integers(0, spec.num_actions, shape).astype(np.int32)
    return rng.normal(size=shape).astype(dtype)

  return specs.Unroll(
    *(fill(*field) for field in layout[:-1]), tuple(fill(*field) for field in layout.core_state)
  )


def info(
  actor_id: str = "actor-a", sequence: int = 0, params_version: int = 0, returns: tuple = ()
) -> specs.UnrollInfo:
  """An UnrollInfo; `returns` are the returns (and lengths) of episodes that ended."""
  return specs.UnrollInfo(
    actor_id, sequence, params_version, np.array(returns, np.float32), np.array(returns, np.int32)
  )


def messages(
  unroll: specs.Unroll, template: specs.UnrollInfo, actor_id: str = "sender"
) -> Iterator[bytes]:
  """Endless serialized uploads of `unroll`, each a new one (the learner drops resends):
  a fresh incarnation and the next sequence number, encoded as an actor does."""
  template = template._replace(actor_id=actor_id, incarnation=random.SystemRandom().getrandbits(64))
  for sequence in itertools.count():
    yield codec.encode_unroll(unroll, template._replace(sequence=sequence))
