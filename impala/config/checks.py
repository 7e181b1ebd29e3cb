"""The checks of a Config: each field's own, read from its metadata (finite, bounds,
choices), then the rules that tie several fields together. The first setting that is
not allowed raises ConfigError with one line: the flag, the value, what is allowed."""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

# What an actor may call itself: a hostname-pid, a pod name; bounded, so that a client
# cannot grow the learner's tables and logs with its ids.
ACTOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")
ACTOR_ID_ALLOWED = "1-128 letters, digits and ._:@/- , starting with a letter or digit"
# Sizes beyond which a setting is a typo, not a run this program can hold.
MAX_LAYER = 16384


class ConfigError(ValueError):
  """A bad configuration value; the message is one line meant for the user. `setting`
  names the setting at fault, when there is one, and `allowed` says what it may be."""

  def __init__(self, message: str, setting: str | None = None, allowed: str = ""):
    super().__init__(message)
    self.setting, self.allowed = setting, allowed


def bad(name: str, value: Any, allowed: str):
  raise ConfigError(
    f"bad value for --{name.replace('_', '-')}: {value!r} ({allowed})", name, allowed
  )


def check(config) -> None:
  """Raises ConfigError for the first setting of `config` (a Config) that is not allowed."""
  fields = dataclasses.fields(config)
  for field in fields:  # NaN only means "none" where the field says so
    value = getattr(config, field.name)
    if isinstance(value, float) and not (
      math.isfinite(value) or (field.metadata.get("nan_ok") and math.isnan(value))
    ):
      bad(field.name, value, "must be a finite number")
  for field in fields:
    _check_field(field, getattr(config, field.name))
  for rule in RULES:
    rule(config)


def _check_field(field: dataclasses.Field, value):
  meta = field.metadata
  if (
    "choices" in meta and value not in meta["choices"] and not (meta.get("optional") and not value)
  ):
    bad(field.name, value, f"allowed: {', '.join(meta['choices'])}")
  if "above" in meta and not value > meta["above"]:
    bad(field.name, value, f"must be > {meta['above']}")
  if "at_least" in meta and not value >= meta["at_least"]:
    bad(field.name, value, f"must be >= {meta['at_least']}")
  if "at_most" in meta and value > meta["at_most"]:
    bad(field.name, value, f"must be <= {meta['at_most']}")
  if "within" in meta:
    low, high, end = meta["within"]
    if not (low <= value <= high if end == "]" else low <= value < high):
      bad(field.name, value, f"must be in [{low}, {high}{end}")


def is_address(text: str) -> bool:
  host, _, port = text.rpartition(":")
  return bool(host) and port.isdigit()


def _learners(c):
  if not 0 <= c.learner_index < c.num_learners:
    bad("learner_index", c.learner_index, f"must be in [0, {c.num_learners})")
  if c.num_learners > 1 and not is_address(c.coordinator_address):
    bad(
      "coordinator_address",
      c.coordinator_address,
      "several learners need learner 0's host:port, e.g. learner-0:7000",
    )
  if c.advertise_address and not is_address(c.advertise_address):
    bad("advertise_address", c.advertise_address, "must be host:port")
  if c.algorithm == "a3c" and c.num_learners > 1:
    bad("num_learners", c.num_learners, "a3c runs with one learner")


def _schedule(c):
  if c.lr_schedule == "linear" and not (c.lr_decay_frames or c.max_frames):
    bad("lr_decay_frames", 0, "a linear schedule needs --lr-decay-frames or --max-frames")
  if c.inference == "learner" and c.algorithm == "a3c":
    bad("inference", c.inference, "a3c's actors take gradients: they act themselves")


def _values(c):
  if not c.hidden_sizes or any(not 0 < h <= MAX_LAYER for h in c.hidden_sizes):
    bad("hidden_sizes", c.hidden_sizes, f"must be one or more sizes in [1, {MAX_LAYER}]")
  if c.actor_id and not ACTOR_ID.fullmatch(c.actor_id):
    bad("actor_id", c.actor_id, ACTOR_ID_ALLOWED)
  if not is_address(c.grpc_host):
    bad("grpc_host", c.grpc_host, "must be host:port, e.g. localhost:50051")
  if not isinstance(c.env_kwargs, dict):
    bad("env_kwargs", c.env_kwargs, "must be a JSON object")


def _security(c):
  for a, b in (("tls_cert", "tls_key"), ("tls_client_cert", "tls_client_key")):
    if bool(getattr(c, a)) != bool(getattr(c, b)):
      bad(
        a if not getattr(c, a) else b,
        "",
        f"--{a.replace('_', '-')} and --{b.replace('_', '-')} go together",
      )
  if c.auth_token and c.auth_token_file:
    bad("auth_token", "...", "give --auth-token or --auth-token-file, not both")


# The rules that tie settings together, after each field's own checks.
RULES = (_learners, _schedule, _values, _security)
