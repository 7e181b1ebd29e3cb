"""Files of settings: a preset (`impala/presets/<name>.toml`), a user's `--config FILE`
and a run directory's `config.toml` have one format, TOML, one `name = value` line per
Config field, named as in Python (`learning_rate = 6e-4`). Read back, each value is
checked against its field's type; written, the auth token is left out."""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import tomllib

from impala.config.checks import ConfigError
from impala.config.fields import Config, default
from impala.config.setting import PRESETS

_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
# Not settings of a file: where files come from, and the token (prefer a token file).
_NOT_IN_FILES = ("preset", "auth_token")


def read_file(path, allow_preset: bool = True) -> dict:
  """The settings in a TOML file, each checked against its Config field's type, or
  ConfigError naming the file and the key. A user's file may name a `preset` to
  start from."""
  try:
    with open(path, "rb") as f:
      table = tomllib.load(f)
  except OSError as e:
    raise ConfigError(f"bad value for --config: cannot read {str(path)!r} ({e.strerror})") from None
  except tomllib.TOMLDecodeError as e:
    raise ConfigError(f"{path}: not TOML: {e}") from None
  values = {}
  for key, value in table.items():
    if key == "preset" and allow_preset:
      if value not in PRESETS:
        raise ConfigError(
          f"{path}: bad value for preset: {value!r} (allowed: {', '.join(PRESETS)})"
        )
      values[key] = value
      continue
    if key not in _FIELDS or key in _NOT_IN_FILES:
      close = difflib.get_close_matches(key, [k for k in _FIELDS if k not in _NOT_IN_FILES], 1)
      hint = f"; did you mean {close[0]!r}?" if close else ""
      raise ConfigError(f"{path}: unknown setting {key!r}{hint}")
    values[key] = _typed(path, _FIELDS[key], value)
  return values


def _typed(path, field: dataclasses.Field, value):
  kind = type(default(field))
  ok = {
    int: isinstance(value, int) and not isinstance(value, bool),
    float: isinstance(value, (int, float)) and not isinstance(value, bool),
    str: isinstance(value, str),
    bool: isinstance(value, bool),
    tuple: isinstance(value, list) and all(type(x) is int for x in value),
    dict: isinstance(value, dict),
  }[kind]
  if not ok:
    what = {tuple: "a list of integers", dict: "a table"}.get(kind, kind.__name__)
    raise ConfigError(f"{path}: bad value for {field.name}: {value!r} (expected {what})")
  return kind(value) if kind in (float, tuple) else value


def check_layer(source: str, below: dict, layer: dict) -> None:
  """Raises ConfigError, naming `source` and the key, if a setting of `layer` is not
  allowed on top of the settings `below` it."""
  try:
    Config(**{**below, **layer})
  except ConfigError as e:
    if e.setting in layer:
      raise ConfigError(
        f"{source}: bad value for {e.setting}: {layer[e.setting]!r} ({e.allowed})"
      ) from None
    raise


def public(config: Config) -> dict:
  """Every setting but the secret one (the auth token), as plain values."""
  return {
    name: list(v) if isinstance(v, tuple) else v
    for name, v in dataclasses.asdict(config).items()
    if name != "auth_token"
  }


def describe(config: Config) -> str:
  """The settings that differ from Config's defaults, as one line."""
  defaults = public(Config())
  changed = [
    f"{k}={as_toml(v)}"
    for k, v in public(config).items()
    if k != "preset" and as_toml(v) != as_toml(defaults[k])  # as text: NaN equals NaN
  ]
  return "settings: " + " ".join(changed) if changed else "the default settings"


def to_toml(config: Config) -> str:
  """The configuration as a file `--config` reads back (the auth token left out)."""
  lines = ["# The effective configuration of this run (python learner_server.py --config FILE)."]
  for name, value in public(config).items():
    if name != "preset" or value:  # a Config made in Python may name none
      lines.append(f"{name} = {as_toml(value)}")
  return "\n".join(lines) + "\n"


def as_toml(value) -> str:
  """A setting's value as a TOML file holds it."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, float) and not math.isfinite(value):
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
  if isinstance(value, (int, float)):
    return repr(value)
  if isinstance(value, str):
    return json.dumps(value)  # JSON's escapes are TOML's basic-string escapes
  if isinstance(value, (list, tuple)):
    return "[" + ", ".join(as_toml(v) for v in value) + "]"
  if isinstance(value, dict):
    return "{" + ", ".join(f"{json.dumps(str(k))} = {as_toml(v)}" for k, v in value.items()) + "}"
  if value is None:
    raise ConfigError("TOML has no null value")
  raise TypeError(f"cannot write {value!r} as TOML")


def as_flag(value) -> str:
  """A setting's value as it is typed on the command line."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, tuple):
    return ",".join(str(v) for v in value)
  if isinstance(value, dict):
    return json.dumps(value)
  if value == "" or (isinstance(value, float) and math.isnan(value)):
    return "none"
  return str(value)
