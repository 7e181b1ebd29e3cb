"""The one configuration shared by the learner and the actors: the settings of an
experiment (experiment.py) and of its operation (operation.py), each with a default, a
one-line description and the metadata that checks it (checks.py) and places it (its
group, its program, whether it defines the run). Command-line flags (`--field-name`) and
environment variables (`IMPALA_FIELD_NAME`, plus `GRPC_HOST` for the actor) only fill it
in (flags.py)."""

from __future__ import annotations

import dataclasses

from impala.config import checks
from impala.config.checks import ConfigError
from impala.config.experiment import Experiment
from impala.config.operation import Operation


@dataclasses.dataclass
class Config(Operation, Experiment):
  """IMPALA hyperparameters and deployment settings (learner and actor)."""

  def __post_init__(self):
    self.hidden_sizes = tuple(self.hidden_sizes)
    checks.check(self)

  def run_settings(self) -> dict:
    """The settings that define the run: sent to actors in the handshake and saved in
    checkpoints, as one unit."""
    return {name: getattr(self, name) for name in RUN_SETTINGS}

  @property
  def max_message_bytes(self) -> int:
    return self.max_message_mb * 1024 * 1024

  def token(self) -> str:
    """The shared auth token, "" for none."""
    if self.auth_token_file:
      return read_file(self, "auth_token_file").decode().strip()
    return self.auth_token


def _named(**metadata) -> tuple[str, ...]:
  """The names of the fields whose metadata has these values."""
  return tuple(
    f.name
    for f in dataclasses.fields(Config)
    if all(f.metadata.get(k) == v for k, v in metadata.items())
  )


# The environment, network and loss settings (marked run=True above).
RUN_SETTINGS = _named(run=True)
# What a checkpoint must have been written with to be resumed: the same task and network.
RESUME_SETTINGS = _named(resume=True)
# The settings of the experiment: a run directory keeps them (another value is refused),
# and TensorBoard shows them as the run's hyperparameters.
HPARAMS = tuple(
  f.name
  for f in dataclasses.fields(Config)
  if f.metadata["group"] in ("environment", "network", "optimisation") and f.name != "preset"
)
# The actor's own settings, and those it shares with the learner; the rest are the
# learner's (of them, an actor takes the run settings from the handshake).
ACTOR_SETTINGS = _named(program="actor")
SHARED_SETTINGS = _named(program="shared")


def read_file(config: Config, name: str) -> bytes:
  """The contents of the file that setting `name` names, or ConfigError."""
  path = getattr(config, name)
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise ConfigError(
      f"bad value for --{name.replace('_', '-')}: cannot read {path!r} ({e.strerror})"
    ) from None


def default(field: dataclasses.Field):
  """The default value of a Config field."""
  if field.default_factory is not dataclasses.MISSING:
    return field.default_factory()
  return field.default
