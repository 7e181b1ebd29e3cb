"""Presets: files of settings known to work for one suite of environments (data:
`impala/presets/<name>.toml`, in the format of a `--config` file, config/files.py), and the
rule that picks one: the suite of the environment id (suites.py)."""

from __future__ import annotations

from pathlib import Path

from impala import suites
from impala.config import PRESETS as NAMES
from impala.config import ConfigError, files

_FOLDER = Path(__file__).parent


def family(env_id: str) -> str:
  """The preset of the suite `env_id` belongs to (suites.py)."""
  return suites.suite_of(env_id).preset


def read(name: str) -> dict:
  """The settings of preset `name`, or ConfigError."""
  if name not in NAMES:
    raise ConfigError(f"bad value for --preset: {name!r} (allowed: {', '.join(NAMES)})")
  return files.read_file(_FOLDER / f"{name}.toml", allow_preset=False)
