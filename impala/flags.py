"""Command-line flags, environment variables, a config file and a preset -> the one Config.

Every Config field is a flag `--field-name` and an environment variable
`IMPALA_FIELD_NAME` (or the name in its metadata, e.g. GRPC_HOST). `--config FILE`
(`IMPALA_CONFIG`) names a TOML file of settings. Lowest first: Config's defaults, the
preset (`--preset`, a `preset` key in the file, or else the family of the environment),
the file, the environment variables, the flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

from impala import config as config_lib
from impala import presets
from impala.config import Config, ConfigError

CONFIG_ENV = "IMPALA_CONFIG"


def _parse(field: dataclasses.Field, text: str) -> Any:
  """Turns flag or environment text into the field's type, or raises ConfigError."""
  kind = type(config_lib.default(field))
  try:
    if kind is bool:
      return {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}[
        text.strip().lower()
      ]
    if kind is tuple:
      return tuple(int(x) for x in text.split(",") if x.strip())
    if kind is dict:
      value = json.loads(text)
      if not isinstance(value, dict):
        raise ValueError
      return value
    return kind(text)
  except (ValueError, KeyError):
    what = {
      tuple: "comma-separated integers",
      dict: "a JSON object",
      bool: "true or false",
    }.get(kind, kind.__name__)
    raise ConfigError(
      f"bad value for --{field.name.replace('_', '-')}: {text!r} (expected {what})"
    ) from None


def env_name(field: dataclasses.Field) -> str:
  return field.metadata.get("env", "IMPALA_" + field.name.upper())


class _ArgumentParser(argparse.ArgumentParser):
  def error(self, message):
    raise ConfigError(message)


def from_args(
  argv: Sequence[str] | None = None, description: str = "", environ: dict | None = None
) -> Config:
  """Builds a Config from the layers above; ConfigError names the layer at fault."""
  environ = os.environ if environ is None else environ
  parser = _ArgumentParser(description=description)
  parser.add_argument(
    "--config",
    metavar="FILE",
    default=environ.get(CONFIG_ENV, ""),
    help=f"TOML file of settings, e.g. a run's config.toml (env {CONFIG_ENV})",
  )
  fields = dataclasses.fields(Config)
  for field in fields:
    choices = field.metadata.get("choices")
    switch = type(config_lib.default(field)) is bool  # --fresh, or --fresh false
    parser.add_argument(
      "--" + field.name.replace("_", "-"),
      dest=field.name,
      default=None,
      metavar="X",
      **(dict(nargs="?", const="true") if switch else {}),
      help=f"{field.metadata['doc']} (default: {config_lib.default(field)!r}; "
      f"env {env_name(field)})" + (f"; one of {', '.join(choices)}" if choices else ""),
    )
  args = parser.parse_args(argv)
  given = {}  # environment variables, then flags over them
  for field in fields:
    text = getattr(args, field.name)
    if text is None:
      text = environ.get(env_name(field))
    if text is not None:
      given[field.name] = _parse(field, text)
  from_file = presets.read_file(args.config) if args.config else {}
  env_id = given.get("env_id", from_file.get("env_id", Config.env_id))
  in_file = from_file.pop("preset", "")
  preset = given.get("preset") or in_file or presets.family(env_id)
  base = presets.read(preset)
  presets.check_layer(f"preset {preset}", {}, base)
  if from_file:
    presets.check_layer(args.config, base, from_file)
  return Config(**{**base, **from_file, **given, "preset": preset})
