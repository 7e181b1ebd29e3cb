"""Atomic, self-checking checkpoints of the learner: one `.npz` file per checkpoint.

A checkpoint holds the leaves of the training state (params and optimizer state) as
plain arrays, plus a JSON record of counters and the params version. Nothing is
pickled: on restore the leaves are poured into the tree of a freshly initialized state,
and their number, shapes and dtypes must match it. Writes are atomic (a temporary file
in the same folder, fsync, rename, fsync of the folder); zip's per-member CRC catches a
corrupted file, and an unreadable one is reported and skipped, never loaded.
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

_NAME = re.compile(r"^ckpt-(\d{12})\.npz$")
FORMAT = 1


def _name(updates: int) -> str:
  return f"ckpt-{updates:012d}.npz"


def save(directory: str, state, record: dict, keep: int) -> str:
  """Writes `state` (a pytree of arrays) and `record` (JSON-able counters) atomically as
  the checkpoint of `record["updates"]`; keeps the newest `keep` checkpoints."""
  os.makedirs(directory, exist_ok=True)
  leaves = jax.tree_util.tree_leaves(jax.device_get(state))
  arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
  meta = json.dumps(dict(record, format=FORMAT, leaves=len(leaves))).encode()
  arrays["meta"] = np.frombuffer(meta, np.uint8)
  path = os.path.join(directory, _name(record["updates"]))
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
  for old in checkpoints(directory)[:-keep]:
    os.unlink(old)
  return path


def checkpoints(directory: str) -> list[str]:
  """Paths of the checkpoints in `directory`, oldest first."""
  if not os.path.isdir(directory):
    return []
  return [os.path.join(directory, n) for n in sorted(os.listdir(directory)) if _NAME.match(n)]


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
  return jax.tree_util.tree_unflatten(treedef, leaves), record


def restore_latest(directory: str, like) -> tuple[str, object, dict] | None:
  """(path, state, record) of the newest checkpoint in `directory` that loads; corrupt
  ones are reported and skipped."""
  for path in reversed(checkpoints(directory)):
    try:
      return (path, *load(path, like))
    except ValueError as e:
      log.warning("skipping checkpoint %s: %s", path, e)
  return None
