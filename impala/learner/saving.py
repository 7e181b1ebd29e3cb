"""What a learner keeps on disk: its checkpoints (state, counters and the run's record),
the final model, and the resumption from the newest checkpoint of its run."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from impala import algorithms, distributed
from impala import checkpoint as checkpoint_lib
from impala import config as config_lib
from impala.config import Config, ConfigError, files

if TYPE_CHECKING:
  from impala.learner.learner import Learner


def checkpoint(learner: Learner, wait: bool, seconds: float) -> str:
  """Writes params, optimizer state, counters, version and the run's settings (one
  consistent snapshot): of the newest update, or without `wait` of the newest one
  computed; `seconds`: the run's time so far. The update draws no random numbers: the
  seed is all the RNG state there is."""
  state, record = _record(learner, wait, seconds)
  config = learner.config
  return checkpoint_lib.save(
    config.checkpoint_dir, distributed.local(state), record, config.keep_checkpoints
  )


def model(learner: Learner, path: str, seconds: float) -> str:
  """Writes the final model to `path`: the moving average of the parameters of the newest
  update computed, with the checkpoint's record and the return reached."""
  state, record = _record(learner, False, seconds)
  reached = learner.snapshot(wait=False).return_mean_100
  record.update(kind="model", return_mean_100=reached if math.isfinite(reached) else None)
  return checkpoint_lib.write(path, distributed.local(state.average_params), record)


def _record(learner: Learner, wait: bool, seconds: float) -> tuple[algorithms.TrainingState, dict]:
  state, _, updates, frames, version = learner.newest(wait)
  record = dict(
    updates=updates,
    frames=frames,
    version=version,
    seconds=round(seconds, 2),
    seed=learner.config.seed,
    run_id=learner.run_id,
    lineage=learner.lineage,
    config=files.public(learner.config),
  )
  return state, record


def restore(config: Config, state: algorithms.TrainingState) -> tuple:
  """(path, state, (updates, frames, version), record) of the newest checkpoint of this
  run's task and network that fits `state`; (None, state, (0, 0, 1), {}) when there is
  none. ConfigError when there are only other settings' checkpoints, unless --fresh."""
  public = files.public(config)
  settings = {name: public[name] for name in config_lib.RESUME_SETTINGS}
  try:
    restored = checkpoint_lib.restore_latest(config.checkpoint_dir, state, settings)
  except checkpoint_lib.Mismatch as e:
    if not config.fresh:
      raise ConfigError(
        f"bad value for --checkpoint-dir: {e}; choose another folder, or pass --fresh to "
        "start a new run beside it",
        "checkpoint_dir",
      ) from None
    restored = None
  if restored is None:
    return None, state, (0, 0, 1), {}
  path, state, record = restored
  counters = (record["updates"], record["frames"], record["version"])
  return path, state, counters, record
