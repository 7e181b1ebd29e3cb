"""The configuration's room: the one Config shared by the learner and the actors, its
fields and their metadata (fields.py), their checks (checks.py), the TOML files of
settings (files.py) and the layers of flags, environment variables, a file and a preset
that fill it in (flags.py).

Every field has a default (a known-good CartPole-v1 setup), a one-line description, and
metadata that the checks, the flags and the files read; nothing names fields again by
hand. This package imports nothing heavy: `--help` and a bad flag answer at once.
"""

from impala.config.checks import ACTOR_ID, ACTOR_ID_ALLOWED, MAX_LAYER, ConfigError
from impala.config.fields import (
  ACTOR_SETTINGS,
  HPARAMS,
  RESUME_SETTINGS,
  RUN_SETTINGS,
  SHARED_SETTINGS,
  Config,
  default,
  read_file,
)
from impala.config.setting import ALGORITHMS, INFERENCE, LR_SCHEDULES, PRESETS, TORSOS

__all__ = [
  "ACTOR_ID",
  "ACTOR_ID_ALLOWED",
  "ACTOR_SETTINGS",
  "ALGORITHMS",
  "HPARAMS",
  "INFERENCE",
  "LR_SCHEDULES",
  "MAX_LAYER",
  "PRESETS",
  "RESUME_SETTINGS",
  "RUN_SETTINGS",
  "SHARED_SETTINGS",
  "TORSOS",
  "Config",
  "ConfigError",
  "default",
  "read_file",
]
