"""How a setting is declared (`setting`), and the choices some settings have."""

from __future__ import annotations

import dataclasses
from pathlib import Path

TORSOS = ("mlp", "minatar", "shallow", "deep")
ALGORITHMS = ("impala", "appo", "a3c")
LR_SCHEDULES = ("constant", "linear")
INFERENCE = ("actor", "learner")
PRESETS = tuple(sorted(p.stem for p in (Path(__file__).parent.parent / "presets").glob("*.toml")))


def setting(default, doc: str, **metadata):
  """A setting, its one-line doc, and metadata that the checks, the flags and the files
  read: `group` (its --help group); `run=True`, the settings that define a run (sent in
  the handshake, saved in checkpoints); `resume=True`, those a checkpoint must share to be
  resumed; `program`, "actor" (the actor's own) or "shared" (both programs'; else the
  learner's); its bounds, each checked with its own message: `above`, `at_least`,
  `at_most`, `within=(low, high, "]" or ")")`; `choices` (`optional`: "" too); `nan_ok`
  (NaN means "none"); `env` (its environment variable, if not IMPALA_<NAME>) and
  `metavar`."""
  if isinstance(default, (dict, list)):
    return dataclasses.field(
      default_factory=lambda: type(default)(default), metadata={"doc": doc, **metadata}
    )
  return dataclasses.field(default=default, metadata={"doc": doc, **metadata})
