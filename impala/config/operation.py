"""The settings of an operation: the run directory, stopping, serving, several learners,
security and the actor's own."""

from __future__ import annotations

import dataclasses
import math

from impala.config.setting import INFERENCE, setting


@dataclasses.dataclass
class Operation:
  """Where a run is kept, when it stops, how it is served and reached."""

  # The run directory (learner only).
  run_dir: str = setting(
    "",
    "this run's directory: config, checkpoints, progress, events, final model; reusing "
    "one resumes its run; default: a new one in --runs, named <env>-<date>-<time>",
    group="logging",
    metavar="DIR",
  )
  runs: str = setting(
    "runs", "folder of the run directories named by default", group="logging", metavar="DIR"
  )

  # Checkpoints (learner only).
  checkpoint_dir: str = setting(
    "",
    "write checkpoints here and resume from the newest; default: RUN_DIR/checkpoints",
    group="logging",
  )
  checkpoint_every: float = setting(
    60.0, "seconds between checkpoints (one more at the end)", group="logging", above=0
  )
  keep_checkpoints: int = setting(
    3, "checkpoints of this run kept; its older ones are deleted", group="logging", above=0
  )
  fresh: bool = setting(
    False,
    "start a new run although --checkpoint-dir holds checkpoints of other settings (they are kept)",
    group="logging",
  )

  # Run control (learner only).
  port: int = setting(
    50051,
    "port of the learner's gRPC server (0: any free port)",
    group="serving",
    within=(0, 65535, "]"),
  )
  local_actors: int = setting(
    0,
    "actor processes the learner starts on this machine",
    group="serving",
    at_least=0,
    at_most=1024,
  )
  max_frames: int = setting(
    0, "stop after this many environment frames; 0 for no cap", group="stopping", at_least=0
  )
  max_seconds: float = setting(
    0.0, "stop after this many seconds; 0 for no cap", group="stopping", at_least=0
  )
  stop_at_return: float = setting(
    math.nan, "stop once the 100-episode mean return reaches this", group="stopping", nan_ok=True
  )
  log_every: float = setting(
    5.0,
    "seconds between progress lines (and log records)",
    group="logging",
    above=0,
    program="shared",
  )
  logdir: str = setting(
    "",
    "write TensorBoard events and progress.jsonl here; default: the run directory",
    group="logging",
  )
  metrics_port: int = setting(
    0,
    "serve Prometheus /metrics on this port (learner and actor); 0 for none",
    group="logging",
    within=(0, 65535, "]"),
    program="shared",
  )
  max_message_mb: int = setting(
    64,
    "largest gRPC message, MiB, on both sides",
    group="serving",
    above=0,
    at_most=2047,
    program="shared",
  )
  keepalive_seconds: float = setting(
    20.0,
    "seconds between keepalive pings on a quiet connection (either end)",
    group="serving",
    at_least=2,
    program="shared",
  )
  max_upload_streams: int = setting(
    512,
    "learner: upload streams served at once (more are refused; calls keep their own)",
    group="serving",
    above=0,
  )
  max_streams_per_actor: int = setting(
    4, "learner: upload streams one actor id may hold open", group="serving", above=0
  )
  stream_idle_timeout: float = setting(
    120.0,
    "learner: seconds an upload stream may wait for its next unroll before it is closed",
    group="serving",
    above=0,
  )

  # Several learners (learner only; see README "Several learners").
  num_learners: int = setting(
    1, "learner processes that train as one, data-parallel", group="several learners", at_least=1
  )
  learner_index: int = setting(
    0,
    "this learner's index in [0, --num-learners); learner 0 "
    "coordinates, assigns actors and writes checkpoints",
    group="several learners",
  )
  coordinator_address: str = setting(
    "",
    "host:port where learner 0 runs the JAX coordination service (several learners)",
    group="several learners",
  )
  advertise_address: str = setting(
    "",
    "host:port at which actors reach this learner (several "
    "learners); default: this host's name and --port",
    group="several learners",
  )

  # Security (both ends; see README "Security").
  auth_token: str = setting(
    "",
    "shared token actors must send; prefer --auth-token-file",
    group="security",
    program="shared",
  )
  auth_token_file: str = setting(
    "",
    "file holding the shared token (a mounted Secret); an empty file: no token",
    group="security",
    program="shared",
  )
  tls_cert: str = setting(
    "", "learner: PEM certificate chain; with --tls-key turns TLS on", group="security"
  )
  tls_key: str = setting("", "learner: PEM private key of --tls-cert", group="security")
  tls_client_ca: str = setting(
    "", "learner: PEM CA that actors' certificates must chain to (mutual TLS)", group="security"
  )
  tls_ca: str = setting(
    "", "actor: PEM CA to verify the learner with; turns TLS on", group="security", program="actor"
  )
  tls_client_cert: str = setting(
    "", "actor: PEM certificate for mutual TLS", group="security", program="actor"
  )
  tls_client_key: str = setting(
    "", "actor: PEM private key of --tls-client-cert", group="security", program="actor"
  )
  tls_server_name: str = setting(
    "",
    "actor: name to expect in the learner's certificate; default: the host of --grpc-host",
    group="security",
    program="actor",
  )
  inference: str = setting(
    "actor",
    "where the policy acts: in each actor, which pulls weights (small networks, CPU), or on "
    "the learner's device, which batches every actor's observations (large networks, GPU)",
    choices=INFERENCE,
    run=True,
    group="serving",
  )
  inference_batch: int = setting(
    4096, "learner-side inference: most environments in one batch", group="serving", above=0
  )
  inference_wait_ms: float = setting(
    2.0,
    "learner-side inference: milliseconds a batch waits for more actors' observations",
    group="serving",
    at_least=0,
  )
  health_port: int = setting(
    0,
    "learner: also serve the gRPC health service, in plaintext "
    "and nothing else, on this port (probes); 0 for none",
    group="serving",
    within=(0, 65535, "]"),
  )

  # Actor only.
  grpc_host: str = setting(
    "localhost:50051",
    "the learner's address, host:port",
    env="GRPC_HOST",
    group="actor",
    program="actor",
  )
  actor_id: str = setting(
    "", "stable actor id; default: hostname-pid", group="actor", program="actor"
  )
  rpc_timeout: float = setting(
    30.0, "deadline of one RPC, seconds", group="actor", above=0, program="actor"
  )
  wait_for_next_run: bool = setting(
    False,
    "actor: when the learner's run ends, wait for the next run at --grpc-host instead of stopping",
    group="actor",
    program="actor",
  )
