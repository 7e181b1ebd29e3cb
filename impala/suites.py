"""The environment suites, declared once: for each, which ids are its own, how gymnasium
learns its ids, how a batch of its environments is made (and so what its observations
look like), and the preset of settings known to work for it. The presets, the
environments, the learner and docs/configuration.md read this table (a test checks the
docs), so a new suite is one entry here and its tests.

This module imports nothing heavy: flags read it before JAX or gymnasium is loaded.
"""

from __future__ import annotations

import importlib
import re
from typing import NamedTuple


class Suite(NamedTuple):
  name: str
  ids: str  # a regular expression its environment ids match in full
  preset: str  # impala/presets/<preset>.toml
  register: str = ""  # "MODULE:FUNCTION" (or "MODULE") that registers its ids with gymnasium
  # How a batch is made: "gymnasium" (gymnasium's vector environment; observations that are
  # not a Box become float32 vectors), or "ale" (ale-py's C++ vector environment, IMPALA's
  # Atari preprocessing, stacks of frames [H, W, K]).
  maker: str = "gymnasium"
  about: str = ""  # a few words for the docs


SUITES = (
  Suite(
    "atari",
    r"ALE/\w+-v5",
    "atari",
    maker="ale",
    about="Atari 2600 through ale-py, e.g. ALE/Pong-v5",
  ),
  Suite(
    "minatar",
    r"MinAtar/.+",
    "minatar",
    register="minatar.gym:register_envs",
    about="MinAtar's five games, 10x10xC boolean images, e.g. MinAtar/Breakout-v1",
  ),
  Suite(
    "popgym",
    r"popgym-.+",
    "popgym",
    register="popgym",
    about="POPGym's memory tasks, e.g. popgym-RepeatPreviousEasy-v0",
  ),
  Suite(
    "bsuite",
    r"bsuite/catch",
    "catch",
    register="impala.catch:register",
    about="bsuite's Catch, a dm_env environment through an adapter",
  ),
  # Last: every other id is gymnasium's own (classic control, toy text, ...) or a user's.
  Suite(
    "gymnasium",
    r".*",
    "classic",
    about="gymnasium's registry: classic control (CartPole-v1, Acrobot-v1, ...) and your own",
  ),
)


def suite_of(env_id: str) -> Suite:
  """The suite an environment id belongs to (without a MODULE: prefix)."""
  return next(suite for suite in SUITES if re.fullmatch(suite.ids, env_id))


def register(suite: Suite):
  """Registers the suite's ids with gymnasium, if it has a module that does."""
  if not suite.register:
    return
  module, _, function = suite.register.partition(":")
  loaded = importlib.import_module(module)
  if function:
    getattr(loaded, function)()
