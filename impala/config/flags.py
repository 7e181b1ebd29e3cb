"""Command-line flags, environment variables, a config file and a preset -> the one Config.

Every Config field is a flag `--field-name` and an environment variable
`IMPALA_FIELD_NAME` (or the name in its metadata, e.g. GRPC_HOST) of the programs it
belongs to: the learner takes all but the actor's own settings; the actor takes its own,
those it shares with the learner, and the run settings (which the learner's handshake
decides: one given to an actor is checked against it). `--config FILE` (`IMPALA_CONFIG`)
names a TOML file of settings; without it, the config.toml of an existing `--run-dir` is
that file (a resumed run keeps its settings). Lowest first: Config's defaults, the preset
(`--preset`, a `preset` key in the file, or else the family of the environment), the
file, the environment variables, the flags.

This module imports no JAX (nor anything heavy): `--help` and a bad flag answer at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
from collections.abc import Sequence
from typing import Any

from impala import presets
from impala.config import files
from impala.config.checks import ConfigError
from impala.config.fields import ACTOR_SETTINGS, RUN_SETTINGS, SHARED_SETTINGS, Config, default

CONFIG_ENV = "IMPALA_CONFIG"
GROUPS = {  # Config's groups, in --help's order, with their titles
  "environment": "environment",
  "network": "network (the policy and value network)",
  "optimisation": "optimisation (the loss, the optimiser, the batches)",
  "stopping": "stopping",
  "logging": "run directory, logging and checkpoints",
  "serving": "serving (the learner's gRPC server)",
  "several learners": "several learners",
  "security": "security",
  "actor": "actor",
}
RUN_SETTINGS_TITLE = (
  "run settings (the learner's handshake decides them; one given here that differs from "
  "the run's is warned about)"
)
_FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def fields_of(program: str | None) -> list[dataclasses.Field]:
  """The settings a program takes: "learner", "actor", or None for every one."""
  if program == "learner":
    return [f for f in _FIELDS.values() if f.name not in ACTOR_SETTINGS]
  if program == "actor":
    names = set(ACTOR_SETTINGS + SHARED_SETTINGS + RUN_SETTINGS)
    return [f for f in _FIELDS.values() if f.name in names]
  return list(_FIELDS.values())


def parse_value(field: dataclasses.Field, text: str) -> Any:
  """Turns flag or environment text into the field's type, or raises ConfigError."""
  kind = type(default(field))
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


def _metavar(field: dataclasses.Field) -> str:
  if "metavar" in field.metadata:
    return field.metadata["metavar"]
  if "choices" in field.metadata:
    return "{" + ",".join(field.metadata["choices"]) + "}"
  name, kind = field.name, type(default(field))
  if name.endswith("dir") or name == "runs":
    return "DIR"
  if name.endswith(("_file", "_cert", "_key", "_ca")):
    return "PATH"
  if name.endswith(("address", "host")):
    return "HOST:PORT"
  if name.endswith("port"):
    return "PORT"
  if name.endswith(("seconds", "_every", "timeout")):
    return "SECONDS"
  return {bool: "BOOL", tuple: "N,N,...", dict: "JSON", int: "N", float: "X"}.get(kind, "TEXT")


def _help(field: dataclasses.Field) -> str:
  doc = field.metadata["doc"]
  said = "" if "default:" in doc else f"default: {files.as_flag(default(field))}; "
  return f"{doc} ({said}env {env_name(field)})"


class _ArgumentParser(argparse.ArgumentParser):
  def error(self, message):
    raise ConfigError(message)


def _unknown(extras: list[str], parser: argparse.ArgumentParser, program: str | None):
  """ConfigError for the first argument no setting of `program` takes, with what was meant."""
  text = extras[0]
  if not text.startswith("--"):
    raise ConfigError(f"unexpected argument {text!r} (settings are flags, e.g. --env-id ID)")
  name = text.split("=", 1)[0]
  setting = name[2:].replace("-", "_")
  if setting in _FIELDS and program:
    owner = "an actor" if setting in ACTOR_SETTINGS else "the learner"
    raise ConfigError(f"unknown flag {name}: it is a setting of {owner}, not of the {program}")
  options = [o for o in parser._option_string_actions if o.startswith("--")]
  close = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
  hint = f"; did you mean {close[0]}?" if close else f"; see {parser.prog} --help"
  raise ConfigError(f"unknown flag {name}{hint}")


def parser_for(program: str | None, description: str = "", environ=None) -> argparse.ArgumentParser:
  environ = os.environ if environ is None else environ
  parser = _ArgumentParser(
    usage="%(prog)s [--setting VALUE ...]",
    description=description,
    allow_abbrev=False,
    formatter_class=argparse.RawDescriptionHelpFormatter,
  )
  parser.add_argument(
    "--config",
    metavar="FILE",
    default=environ.get(CONFIG_ENV, ""),
    help=f"TOML file of settings, e.g. a run's config.toml (env {CONFIG_ENV})",
  )
  titles = dict(GROUPS)
  if program == "actor":  # its own settings first, the run settings (whatever their group) last
    titles = {"actor": GROUPS["actor"], **GROUPS, "run": RUN_SETTINGS_TITLE}
  groups = {group: parser.add_argument_group(title) for group, title in titles.items()}
  for field in fields_of(program):
    switch = type(default(field)) is bool  # --fresh, or --fresh false
    group = field.metadata["group"]
    if program == "actor" and field.name in RUN_SETTINGS:
      group = "run"
    groups[group].add_argument(
      "--" + field.name.replace("_", "-"),
      dest=field.name,
      default=None,
      metavar=_metavar(field),
      **(dict(nargs="?", const="true") if switch else {}),
      help=_help(field),
    )
  return parser


def _recorded(run_dir: str) -> str:
  """The configuration an existing run directory recorded ("" if none): a run resumed by
  naming its directory keeps its settings unless flags change them."""
  path = os.path.join(run_dir, "config.toml")
  return path if run_dir and os.path.isfile(path) else ""


def parse(
  argv: Sequence[str] | None = None,
  program: str | None = None,
  description: str = "",
  environ: dict | None = None,
) -> tuple[Config, frozenset]:
  """(Config, the names of the settings given by flags or environment variables) from the
  layers above, for `program` ("learner", "actor", or None: every setting). ConfigError
  names the layer at fault."""
  environ = os.environ if environ is None else environ
  parser = parser_for(program, description, environ)
  args, extras = parser.parse_known_args(argv)
  if extras:
    _unknown(extras, parser, program)
  given = {}  # environment variables, then flags over them
  for field in fields_of(program):
    text = getattr(args, field.name)
    if text is None:
      text = environ.get(env_name(field))
    if text is not None:
      given[field.name] = parse_value(field, text)
  source = args.config or _recorded(given.get("run_dir", ""))
  from_file = files.read_file(source) if source else {}
  env_id = given.get("env_id", from_file.get("env_id", Config.env_id))
  in_file = from_file.pop("preset", "")
  preset = given.get("preset") or in_file or presets.family(env_id)
  base = presets.read(preset)
  files.check_layer(f"preset {preset}", {}, base)
  if from_file:
    files.check_layer(source, base, from_file)
  return Config(**{**base, **from_file, **given, "preset": preset}), frozenset(given)


def from_args(
  argv: Sequence[str] | None = None,
  description: str = "",
  environ: dict | None = None,
  program: str | None = None,
) -> Config:
  """The Config of `parse`."""
  return parse(argv, program, description, environ)[0]
