"""The one configuration shared by the learner and the actors.

Every field has a default (a known-good CartPole-v1 setup), a one-line description
and a check. Command-line flags (`--field-name`) and environment variables
(`IMPALA_FIELD_NAME`, plus `GRPC_HOST` for the actor) only fill it in (flags.py).
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

TORSOS = ("mlp", "minatar", "shallow", "deep")
ALGORITHMS = ("impala", "appo", "a3c")
LR_SCHEDULES = ("constant", "linear")
INFERENCE = ("actor", "learner")
# What an actor may call itself: a hostname-pid, a pod name; bounded, so that a client
# cannot grow the learner's tables and logs with its ids.
ACTOR_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")
ACTOR_ID_ALLOWED = "1-128 letters, digits and ._:@/- , starting with a letter or digit"
# Sizes beyond which a setting is a typo, not a run this program can hold.
MAX_LAYER = 16384
PRESETS = tuple(sorted(p.stem for p in (Path(__file__).parent / "presets").glob("*.toml")))


class ConfigError(ValueError):
  """A bad configuration value; the message is one line meant for the user. `setting`
  names the setting at fault, when there is one, and `allowed` says what it may be."""

  def __init__(self, message: str, setting: str | None = None, allowed: str = ""):
    super().__init__(message)
    self.setting, self.allowed = setting, allowed


def _field(default, doc: str, **kwargs):
  """A setting; `run=True` marks the settings that define a run (see RUN_SETTINGS)."""
  if isinstance(default, (dict, list)):
    return dataclasses.field(
      default_factory=lambda: type(default)(default), metadata={"doc": doc, **kwargs}
    )
  return dataclasses.field(default=default, metadata={"doc": doc, **kwargs})


@dataclasses.dataclass
class Config:
  """IMPALA hyperparameters and deployment settings (learner and actor)."""

  preset: str = _field(
    "",
    "start from the settings known to work for a family of environments "
    "(impala/presets/); default: the family of --env-id",
    choices=PRESETS,
    group="environment",
  )

  # Environment.
  env_id: str = _field(
    "CartPole-v1",
    "gymnasium environment id; MODULE:ID imports MODULE first",
    run=True,
    group="environment",
  )
  env_kwargs: dict = _field(
    {}, "extra keyword arguments for the environment, as JSON", run=True, group="environment"
  )
  env_module: str = _field(
    "",
    "modules to import first, comma-separated: they register your own environments "
    "(in the learner, its actors and evaluation alike)",
    run=True,
    group="environment",
    metavar="MODULE",
  )
  num_envs: int = _field(
    64, "environments per actor, stepped as one batch", run=True, group="environment"
  )
  unroll_length: int = _field(20, "steps per unroll (T)", run=True, group="environment")
  seed: int = _field(
    0, "seed of parameters, environments and sampling", run=True, group="environment"
  )

  # Network.
  torso: str = _field("mlp", "network torso", choices=TORSOS, run=True, group="network")
  hidden_sizes: tuple = _field(
    (64, 64), "layer sizes of the MLP torso, comma-separated", run=True, group="network"
  )
  lstm_size: int = _field(0, "size of the LSTM core; 0 for none", run=True, group="network")

  # Learning (learner only, but the loss settings reach A3C actors).
  algorithm: str = _field(
    "impala",
    "impala: actors send unrolls, the learner takes V-trace gradients; appo: "
    "the same with PPO's clipped surrogate and several steps per batch; "
    "a3c: actors send the gradients of their own unrolls",
    choices=ALGORITHMS,
    run=True,
    group="optimisation",
  )
  batch_size: int = _field(
    2,
    "unrolls per update (each holds num_envs environments); "
    "a3c applies each actor's gradient alone",
    group="optimisation",
  )
  discount: float = _field(0.99, "discount factor gamma", run=True, group="optimisation")
  learning_rate: float = _field(1e-3, "RMSProp learning rate", group="optimisation")
  lr_schedule: str = _field(
    "constant",
    "constant, or linear: decayed to 0 over --lr-decay-frames",
    choices=LR_SCHEDULES,
    group="optimisation",
  )
  lr_decay_frames: int = _field(
    0, "frames of the linear decay; 0 for --max-frames", group="optimisation"
  )
  rmsprop_decay: float = _field(
    0.99, "RMSProp decay of the squared-gradient average", group="optimisation"
  )
  rmsprop_eps: float = _field(0.01, "RMSProp epsilon", group="optimisation")
  max_grad_norm: float = _field(40.0, "clip gradients to this global norm", group="optimisation")
  average_decay: float = _field(
    0.99, "decay of the moving average of the parameters kept for evaluation", group="optimisation"
  )
  baseline_cost: float = _field(0.5, "weight of the value loss", run=True, group="optimisation")
  entropy_cost: float = _field(0.01, "weight of the entropy bonus", run=True, group="optimisation")
  clip_rho: float = _field(
    1.0, "V-trace clipping of importance weights (rho-bar)", run=True, group="optimisation"
  )
  clip_pg_rho: float = _field(
    1.0, "V-trace clipping of the policy-gradient weights", run=True, group="optimisation"
  )
  max_abs_reward: float = _field(
    0.0, "clip rewards to [-x, x] in the loss; 0 for no clipping", run=True, group="optimisation"
  )
  max_abs_input: float = _field(
    1e6, "refuse unrolls whose rewards or float observations exceed this magnitude", group="serving"
  )
  ppo_clip: float = _field(
    0.2, "appo: clip the ratio pi/mu to [1 - x, 1 + x]", group="optimisation"
  )
  ppo_epochs: int = _field(4, "appo: passes over each batch", group="optimisation")
  ppo_minibatches: int = _field(
    4, "appo: steps per pass, each on a part of the environments", group="optimisation"
  )
  queue_size: int = _field(
    2, "unrolls the learner holds before actors must wait", group="optimisation"
  )
  max_policy_lag: int = _field(
    0,
    "drop unrolls (a3c: gradients) acted by parameters more "
    "than this many updates old; 0 for no limit",
    group="optimisation",
  )

  # The run directory (learner only).
  run_dir: str = _field(
    "",
    "this run's directory: config, checkpoints, progress, events, final model; reusing "
    "one resumes its run; default: a new one in --runs, named <env>-<date>-<time>",
    group="logging",
    metavar="DIR",
  )
  runs: str = _field(
    "runs", "folder of the run directories named by default", group="logging", metavar="DIR"
  )

  # Checkpoints (learner only).
  checkpoint_dir: str = _field(
    "",
    "write checkpoints here and resume from the newest; default: RUN_DIR/checkpoints",
    group="logging",
  )
  checkpoint_every: float = _field(
    60.0, "seconds between checkpoints (one more at the end)", group="logging"
  )
  keep_checkpoints: int = _field(
    3, "checkpoints of this run kept; its older ones are deleted", group="logging"
  )
  fresh: bool = _field(
    False,
    "start a new run although --checkpoint-dir holds checkpoints of other settings (they are kept)",
    group="logging",
  )

  # Run control (learner only).
  port: int = _field(50051, "port of the learner's gRPC server (0: any free port)", group="serving")
  local_actors: int = _field(
    0, "actor processes the learner starts on this machine", group="serving"
  )
  max_frames: int = _field(
    0, "stop after this many environment frames; 0 for no cap", group="stopping"
  )
  max_seconds: float = _field(0.0, "stop after this many seconds; 0 for no cap", group="stopping")
  stop_at_return: float = _field(
    math.nan, "stop once the 100-episode mean return reaches this", group="stopping"
  )
  log_every: float = _field(
    5.0, "seconds between progress lines (and log records)", group="logging"
  )
  logdir: str = _field(
    "",
    "write TensorBoard events and progress.jsonl here; default: the run directory",
    group="logging",
  )
  metrics_port: int = _field(
    0, "serve Prometheus /metrics on this port (learner and actor); 0 for none", group="logging"
  )
  max_message_mb: int = _field(64, "largest gRPC message, MiB, on both sides", group="serving")
  keepalive_seconds: float = _field(
    20.0, "seconds between keepalive pings on a quiet connection (either end)", group="serving"
  )
  max_upload_streams: int = _field(
    512,
    "learner: upload streams served at once (more are refused; calls keep their own)",
    group="serving",
  )
  max_streams_per_actor: int = _field(
    4, "learner: upload streams one actor id may hold open", group="serving"
  )
  stream_idle_timeout: float = _field(
    120.0,
    "learner: seconds an upload stream may wait for its next unroll before it is closed",
    group="serving",
  )

  # Several learners (learner only; see README "Several learners").
  num_learners: int = _field(
    1, "learner processes that train as one, data-parallel", group="several learners"
  )
  learner_index: int = _field(
    0,
    "this learner's index in [0, --num-learners); learner 0 "
    "coordinates, assigns actors and writes checkpoints",
    group="several learners",
  )
  coordinator_address: str = _field(
    "",
    "host:port where learner 0 runs the JAX coordination service (several learners)",
    group="several learners",
  )
  advertise_address: str = _field(
    "",
    "host:port at which actors reach this learner (several "
    "learners); default: this host's name and --port",
    group="several learners",
  )

  # Security (both ends; see README "Security").
  auth_token: str = _field(
    "", "shared token actors must send; prefer --auth-token-file", group="security"
  )
  auth_token_file: str = _field(
    "",
    "file holding the shared token (a mounted Secret); an empty file: no token",
    group="security",
  )
  tls_cert: str = _field(
    "", "learner: PEM certificate chain; with --tls-key turns TLS on", group="security"
  )
  tls_key: str = _field("", "learner: PEM private key of --tls-cert", group="security")
  tls_client_ca: str = _field(
    "", "learner: PEM CA that actors' certificates must chain to (mutual TLS)", group="security"
  )
  tls_ca: str = _field(
    "", "actor: PEM CA to verify the learner with; turns TLS on", group="security"
  )
  tls_client_cert: str = _field("", "actor: PEM certificate for mutual TLS", group="security")
  tls_client_key: str = _field("", "actor: PEM private key of --tls-client-cert", group="security")
  tls_server_name: str = _field(
    "",
    "actor: name to expect in the learner's certificate; default: the host of --grpc-host",
    group="security",
  )
  inference: str = _field(
    "actor",
    "where the policy acts: in each actor, which pulls weights (small networks, CPU), or on "
    "the learner's device, which batches every actor's observations (large networks, GPU)",
    choices=INFERENCE,
    run=True,
    group="serving",
  )
  inference_batch: int = _field(
    4096, "learner-side inference: most environments in one batch", group="serving"
  )
  inference_wait_ms: float = _field(
    2.0,
    "learner-side inference: milliseconds a batch waits for more actors' observations",
    group="serving",
  )
  health_port: int = _field(
    0,
    "learner: also serve the gRPC health service, in plaintext "
    "and nothing else, on this port (probes); 0 for none",
    group="serving",
  )

  # Actor only.
  grpc_host: str = _field(
    "localhost:50051", "the learner's address, host:port", env="GRPC_HOST", group="actor"
  )
  actor_id: str = _field("", "stable actor id; default: hostname-pid", group="actor")
  rpc_timeout: float = _field(30.0, "deadline of one RPC, seconds", group="actor")
  wait_for_next_run: bool = _field(
    False,
    "actor: when the learner's run ends, wait for the next run at --grpc-host instead of stopping",
    group="actor",
  )

  def __post_init__(self):
    self.hidden_sizes = tuple(self.hidden_sizes)
    _check(self)

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


# The environment, network and loss settings (marked run=True above).
RUN_SETTINGS = tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get("run"))
# What a checkpoint must have been written with to be resumed: the same task and network.
RESUME_SETTINGS = ("env_id", "env_kwargs", "torso", "hidden_sizes", "lstm_size")
# The settings of the experiment: a run directory keeps them (another value is refused),
# and TensorBoard shows them as the run's hyperparameters.
HPARAMS = tuple(
  f.name
  for f in dataclasses.fields(Config)
  if f.metadata["group"] in ("environment", "network", "optimisation") and f.name != "preset"
)
# The actor's own settings, and those it shares with the learner; the rest are the
# learner's (of them, an actor takes the run settings from the handshake).
ACTOR_SETTINGS = (
  "grpc_host",
  "actor_id",
  "rpc_timeout",
  "wait_for_next_run",
  "tls_ca",
  "tls_client_cert",
  "tls_client_key",
  "tls_server_name",
)
SHARED_SETTINGS = (
  "log_every",
  "metrics_port",
  "max_message_mb",
  "keepalive_seconds",
  "auth_token",
  "auth_token_file",
)


def _check(self: Config):
  """Raises ConfigError for the first setting that is not allowed."""
  positive = (
    "num_envs",
    "unroll_length",
    "batch_size",
    "queue_size",
    "max_message_mb",
    "learning_rate",
    "rmsprop_eps",
    "max_grad_norm",
    "log_every",
    "rpc_timeout",
    "checkpoint_every",
    "keep_checkpoints",
    "ppo_clip",
    "ppo_epochs",
    "ppo_minibatches",
    "max_abs_input",
    "max_upload_streams",
    "max_streams_per_actor",
    "stream_idle_timeout",
    "inference_batch",
  )
  for field in dataclasses.fields(self):  # NaN only means "none" for --stop-at-return
    value = getattr(self, field.name)
    if isinstance(value, float) and not (
      math.isfinite(value) or (field.name == "stop_at_return" and math.isnan(value))
    ):
      _bad(field.name, value, "must be a finite number")
  for name in positive:
    if not getattr(self, name) > 0:
      _bad(name, getattr(self, name), "must be > 0")
  non_negative = (
    "lstm_size",
    "local_actors",
    "max_frames",
    "max_seconds",
    "baseline_cost",
    "entropy_cost",
    "max_abs_reward",
    "seed",
    "max_policy_lag",
    "lr_decay_frames",
    "inference_wait_ms",
  )
  for name in non_negative:
    if not getattr(self, name) >= 0:
      _bad(name, getattr(self, name), "must be >= 0")
  if not self.keepalive_seconds >= 2.0:  # what the server accepts: see credentials.py
    _bad("keepalive_seconds", self.keepalive_seconds, "must be >= 2")
  limits = dict(
    num_envs=1 << 16,
    unroll_length=1 << 16,
    lstm_size=MAX_LAYER,
    max_message_mb=2047,  # gRPC's limit: 2 GiB - 1 bytes
    seed=2**32 - 1,
    local_actors=1024,
  )
  for name, limit in limits.items():
    if getattr(self, name) > limit:
      _bad(name, getattr(self, name), f"must be <= {limit}")
  if not self.num_learners >= 1:
    _bad("num_learners", self.num_learners, "must be >= 1")
  if not 0 <= self.learner_index < self.num_learners:
    _bad("learner_index", self.learner_index, f"must be in [0, {self.num_learners})")
  if self.num_learners > 1 and not _is_address(self.coordinator_address):
    _bad(
      "coordinator_address",
      self.coordinator_address,
      "several learners need learner 0's host:port, e.g. learner-0:7000",
    )
  if self.advertise_address and not _is_address(self.advertise_address):
    _bad("advertise_address", self.advertise_address, "must be host:port")
  if self.algorithm not in ALGORITHMS:
    _bad("algorithm", self.algorithm, f"allowed: {', '.join(ALGORITHMS)}")
  if self.algorithm == "a3c" and self.num_learners > 1:
    _bad("num_learners", self.num_learners, "a3c runs with one learner")
  if self.preset and self.preset not in PRESETS:
    _bad("preset", self.preset, f"allowed: {', '.join(PRESETS)}")
  if self.lr_schedule not in LR_SCHEDULES:
    _bad("lr_schedule", self.lr_schedule, f"allowed: {', '.join(LR_SCHEDULES)}")
  if self.lr_schedule == "linear" and not (self.lr_decay_frames or self.max_frames):
    _bad("lr_decay_frames", 0, "a linear schedule needs --lr-decay-frames or --max-frames")
  if self.inference not in INFERENCE:
    _bad("inference", self.inference, f"allowed: {', '.join(INFERENCE)}")
  if self.inference == "learner" and self.algorithm == "a3c":
    _bad("inference", self.inference, "a3c's actors take gradients: they act themselves")
  if self.torso not in TORSOS:
    _bad("torso", self.torso, f"allowed: {', '.join(TORSOS)}")
  if not self.hidden_sizes or any(not 0 < h <= MAX_LAYER for h in self.hidden_sizes):
    _bad("hidden_sizes", self.hidden_sizes, f"must be one or more sizes in [1, {MAX_LAYER}]")
  if self.actor_id and not ACTOR_ID.fullmatch(self.actor_id):
    _bad("actor_id", self.actor_id, ACTOR_ID_ALLOWED)
  if not 0.0 <= self.discount <= 1.0:
    _bad("discount", self.discount, "must be in [0, 1]")
  for name in ("rmsprop_decay", "average_decay"):
    if not 0.0 <= getattr(self, name) < 1.0:
      _bad(name, getattr(self, name), "must be in [0, 1)")
  for name in ("clip_rho", "clip_pg_rho"):
    if not getattr(self, name) >= 1.0:
      _bad(name, getattr(self, name), "must be >= 1.0")
  for name in ("port", "health_port", "metrics_port"):
    if not 0 <= getattr(self, name) <= 65535:
      _bad(name, getattr(self, name), "must be in [0, 65535]")
  for a, b in (("tls_cert", "tls_key"), ("tls_client_cert", "tls_client_key")):
    if bool(getattr(self, a)) != bool(getattr(self, b)):
      _bad(
        a if not getattr(self, a) else b,
        "",
        f"--{a.replace('_', '-')} and --{b.replace('_', '-')} go together",
      )
  if self.auth_token and self.auth_token_file:
    _bad("auth_token", "...", "give --auth-token or --auth-token-file, not both")
  if not _is_address(self.grpc_host):
    _bad("grpc_host", self.grpc_host, "must be host:port, e.g. localhost:50051")
  if not isinstance(self.env_kwargs, dict):
    _bad("env_kwargs", self.env_kwargs, "must be a JSON object")


def _is_address(text: str) -> bool:
  host, _, port = text.rpartition(":")
  return bool(host) and port.isdigit()


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


def _bad(name: str, value: Any, allowed: str):
  raise ConfigError(
    f"bad value for --{name.replace('_', '-')}: {value!r} ({allowed})", name, allowed
  )


def default(field: dataclasses.Field):
  """The default value of a Config field."""
  if field.default_factory is not dataclasses.MISSING:
    return field.default_factory()
  return field.default
