"""Atomic, self-checking checkpoints of the learner: one `.npz` file per checkpoint.

A checkpoint holds the leaves of the training state (params and optimizer state) as
plain arrays, plus a JSON record of counters, the params version and the settings.
Nothing is pickled: on restore the leaves are poured into the tree of a freshly
initialized state, and their number, shapes and dtypes must match it. Writes are atomic
(a temporary file in the same folder, fsync, rename, fsync of the folder); zip's
per-member CRC catches a corrupted file, and an unreadable one is reported and skipped,
never loaded.

Files are named `ckpt-<updates>-<lineage>.npz`: a run's lineage is the run id of its
first learner process, kept across resumes, so a run prunes only its own files and
never another run's in the same folder.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import tempfile
import zipfile

import jax
import numpy as np

log = logging.getLogger("impala.checkpoint")

_NAME = re.compile(r"^ckpt-(\d{12})(?:-([0-9a-f]+))?\.npz$")
FORMAT = 1


class Mismatch(ValueError):
  """Checkpoints that load, but were written with other settings than this run's."""


def _name(updates: int, lineage: str) -> str:
  return f"ckpt-{updates:012d}-{lineage}.npz"


def check_directory(directory: str):
  """Creates `directory` if need be; OSError unless it is a folder this process can write."""
  os.makedirs(directory, exist_ok=True)
  fd, probe = tempfile.mkstemp(prefix=".probe-", dir=directory)
  os.close(fd)
  os.unlink(probe)


def save(directory: str, state, record: dict, keep: int) -> str:
  """Writes `state` (a pytree of arrays) and `record` (JSON-able counters, with the
  run's `lineage`) atomically as the checkpoint of `record["updates"]`; keeps the newest
  `keep` checkpoints of that lineage. Raises OSError."""
  path = write(os.path.join(directory, _name(record["updates"], record["lineage"])), state, record)
  own = [
    p for p in checkpoints(directory) if _NAME.match(os.path.basename(p))[2] == record["lineage"]
  ]
  for old in own[:-keep]:
    os.unlink(old)
  return path


def write(path: str, tree, record: dict) -> str:
  """Writes the leaves of `tree` and `record` to `path` atomically (a checkpoint's format:
  a final model is the same file holding only parameters). Raises OSError."""
  directory = os.path.dirname(path) or "."
  os.makedirs(directory, exist_ok=True)
  leaves = jax.tree_util.tree_leaves(jax.device_get(tree))
  arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
  meta = json.dumps(dict(record, format=FORMAT, leaves=len(leaves))).encode()
  arrays["meta"] = np.frombuffer(meta, np.uint8)
  fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=directory)
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    os.unlink(tmp)
    raise
  dir_fd = os.open(directory, os.O_RDONLY)
  try:
    os.fsync(dir_fd)
  finally:
    os.close(dir_fd)
  return path


def checkpoints(directory: str) -> list[str]:
  """Paths of the checkpoints in `directory`, oldest (fewest updates) first."""
  if not os.path.isdir(directory):
    return []
  found = [(_NAME.match(n), n) for n in os.listdir(directory)]
  return [os.path.join(directory, n) for m, n in sorted((m[1], n) for m, n in found if m)]


def _read(path: str) -> tuple[dict, dict]:
  """(arrays, record) of one checkpoint file, every member read and CRC-checked."""
  try:
    with open(path, "rb") as f, np.load(io.BytesIO(f.read()), allow_pickle=False) as data:
      arrays = {name: data[name] for name in data.files}
  except (OSError, EOFError, zipfile.BadZipFile, ValueError, KeyError) as e:
    raise ValueError(f"unreadable: {e}") from None
  try:
    return arrays, json.loads(arrays.pop("meta").tobytes())
  except (KeyError, ValueError):
    raise ValueError("no readable record") from None


def record_of(path: str) -> dict:
  """The counters and settings saved with a checkpoint; ValueError if it is unreadable."""
  return _read(path)[1]


def load(path: str, like) -> tuple[object, dict]:
  """(state shaped like `like`, record) from one checkpoint; raises ValueError if the file
  is corrupt or does not fit `like`."""
  arrays, record = _read(path)
  return _pour(arrays, record, like), record


def _pour(arrays: dict, record: dict, like):
  expected, treedef = jax.tree_util.tree_flatten(like)
  if record.get("format") != FORMAT or not record.get("leaves") == len(expected) == len(arrays):
    raise ValueError(
      f"format {record.get('format')} with {record.get('leaves')} leaves; "
      f"this learner needs format {FORMAT} with {len(expected)}"
    )
  leaves = [arrays[f"leaf_{i:05d}"] for i in range(len(expected))]
  for i, (got, want) in enumerate(zip(leaves, expected)):
    if got.shape != np.shape(want) or got.dtype != np.asarray(want).dtype:
      raise ValueError(
        f"leaf {i} is {got.dtype}{list(got.shape)}, this learner's "
        f"configuration needs {np.asarray(want).dtype}{list(np.shape(want))}"
      )
  return jax.tree_util.tree_unflatten(treedef, leaves)


def restore_latest(
  directory: str, like, settings: dict | None = None
) -> tuple[str, object, dict] | None:
  """(path, state, record) of the newest checkpoint in `directory` that loads and whose
  recorded settings agree with `settings` (a record without settings agrees); corrupt
  ones and others that do not fit `like` are reported and skipped. Raises Mismatch when
  checkpoints load but none agrees, naming the first setting that differs."""
  differs = None
  for path in reversed(checkpoints(directory)):
    try:
      arrays, record = _read(path)
      recorded = record.get("config") or {}
      wrong = [k for k in settings or {} if k in recorded and _json(settings[k]) != recorded[k]]
      if not wrong:
        return path, _pour(arrays, record, like), record
    except ValueError as e:
      log.warning("skipping checkpoint %s: %s", path, e)
      continue
    if differs is None:
      k = wrong[0]
      differs = f"{path} was written with {k}={recorded[k]!r}, this run has {settings[k]!r}"
  if differs:
    raise Mismatch(differs)
  return None


def _json(value):
  return json.loads(json.dumps(value))
