"""Command-line flags and environment variables -> the one Config.

Every Config field is a flag `--field-name` and an environment variable
`IMPALA_FIELD_NAME` (or the name in its metadata, e.g. GRPC_HOST); flags win over the
environment, which wins over the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

from impala.config import Config, ConfigError


def _parse(field: dataclasses.Field, text: str) -> Any:
  """Turns flag or environment text into the field's type, or raises ConfigError."""
  kind = type(field.default) if field.default is not dataclasses.MISSING else dict
  try:
    if kind is tuple:
      return tuple(int(x) for x in text.split(",") if x.strip())
    if kind is dict:
      value = json.loads(text)
      if not isinstance(value, dict):
        raise ValueError
      return value
    return kind(text)
  except ValueError:
    what = {tuple: "comma-separated integers", dict: "a JSON object"}.get(kind, kind.__name__)
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
  """Builds a Config from defaults, then environment variables, then flags."""
  environ = os.environ if environ is None else environ
  parser = _ArgumentParser(description=description)
  fields = dataclasses.fields(Config)
  for field in fields:
    choices = field.metadata.get("choices")
    parser.add_argument(
      "--" + field.name.replace("_", "-"),
      dest=field.name,
      default=None,
      metavar="X",
      help=f"{field.metadata['doc']} (default: {_default(field)!r}; env {env_name(field)})"
      + (f"; one of {', '.join(choices)}" if choices else ""),
    )
  args = parser.parse_args(argv)
  values = {}
  for field in fields:
    text = getattr(args, field.name)
    if text is None:
      text = environ.get(env_name(field))
    if text is not None:
      values[field.name] = _parse(field, text)
  return Config(**values)


def _default(field: dataclasses.Field):
  if field.default_factory is not dataclasses.MISSING:
    return field.default_factory()
  return field.default
