"""A run's directory: everything a run keeps, in one place.

    RUN_DIR/config.toml      the effective configuration (`--config` reads it back)
    RUN_DIR/checkpoints/     the checkpoints the run resumes from
    RUN_DIR/progress.jsonl   a progress record every --log-every s (python -m impala.plot)
    RUN_DIR/events.out.*     TensorBoard scalars, and the hyperparameters (HPARAMS)
    RUN_DIR/model.npz        the final model: the averaged parameters and the run's record

By default each run gets a new one, `--runs/<env>-<date>-<time>`. Naming an existing one
(`--run-dir`) resumes its run with its settings (flags.parse reads its config.toml); a
different value of one of its HPARAMS is refused.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re

from impala.config import HPARAMS, Config, ConfigError, files

CONFIG = "config.toml"
MODEL = "model.npz"
CHECKPOINTS = "checkpoints"


def _new(config: Config) -> str:
  """A folder name in --runs that is not taken yet."""
  env = re.sub(r"[^A-Za-z0-9._-]+", "_", config.env_id).strip("_")
  stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
  team = f"-learner{config.learner_index}" if config.num_learners > 1 else ""
  base = os.path.join(config.runs, f"{env}-{stamp}{team}")
  path, n = base, 1
  while os.path.exists(path):
    n += 1
    path = f"{base}-{n}"
  return path


def resolve(config: Config) -> Config:
  """`config` with its run directory named (a new one unless --run-dir names one), and the
  logs and checkpoints in it unless --logdir or --checkpoint-dir put them elsewhere.
  ConfigError if the named run directory holds a run of other settings."""
  run_dir = config.run_dir or _new(config)
  recorded = os.path.join(run_dir, CONFIG)
  if os.path.exists(recorded):
    before = files.read_file(recorded)
    for name in HPARAMS:
      if name in before and before[name] != getattr(config, name):
        flag = "--" + name.replace("_", "-")
        raise ConfigError(
          f"bad value for {flag}: {getattr(config, name)!r} (the run in {run_dir} has "
          f"{name} = {before[name]!r}: resume it with that, or start another --run-dir)",
          name,
        )
  return dataclasses.replace(
    config,
    run_dir=run_dir,
    logdir=config.logdir or run_dir,
    checkpoint_dir=config.checkpoint_dir or os.path.join(run_dir, CHECKPOINTS),
  )


def recorded(config: Config) -> Config:
  """What config.toml keeps of a resolved `config`: its folders only where they are not
  the run directory's own, so that the directory can be moved or copied, and the file
  read back (`--config`) starts a new run."""
  return dataclasses.replace(
    config,
    run_dir="",
    logdir="" if config.logdir == config.run_dir else config.logdir,
    checkpoint_dir=""
    if config.checkpoint_dir == os.path.join(config.run_dir, CHECKPOINTS)
    else config.checkpoint_dir,
  )


def create(config: Config):
  """Makes the (resolved) run directory and writes its config.toml. Raises ConfigError."""
  try:
    os.makedirs(config.run_dir, exist_ok=True)
    with open(os.path.join(config.run_dir, CONFIG), "w") as f:
      f.write(files.to_toml(recorded(config)))
  except OSError as e:
    raise ConfigError(
      f"bad value for --run-dir: {config.run_dir!r} (not a folder this learner can write: "
      f"{e.strerror or e})",
      "run_dir",
    ) from None
