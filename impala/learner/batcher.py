"""The batcher: a thread that assembles the next update's input (and copies it to the
devices) from the intake's queue while the current update runs."""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import Callable


def keep_freed_memory():
  """Makes glibc keep freed memory up to 32 MB blocks and 256 MB in all for reuse
  (process-wide: call it where a learner program starts).

  The learner receives and frees MB-sized messages at a high rate; by default glibc
  hands each one back to the kernel and page-faults it in again for the next
  (measured: Atari-sized ingest gains about a quarter). No-op elsewhere than glibc.
  """
  try:
    libc = ctypes.CDLL("libc.so.6")
  except OSError:
    return
  m_trim_threshold, m_mmap_threshold = -1, -3
  libc.mallopt(m_mmap_threshold, 32 << 20)
  libc.mallopt(m_trim_threshold, 256 << 20)


class Batcher:
  """Takes `size` uploads at a time from `uploads` and makes them one input with
  `assemble`; holds one input ready for `next` (each one more is a version of policy lag
  when the learner is the bottleneck)."""

  def __init__(self, uploads: queue.Queue, assemble: Callable, size: int):
    self._uploads, self._assemble, self._size = uploads, assemble, size
    self._ready: queue.Queue = queue.Queue(1)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, name="batcher", daemon=True)

  def start(self):
    self._thread.start()

  def next(self, timeout: float) -> tuple[object, tuple]:
    """(input, the uploads' infos), or (None, ()) when none is ready within `timeout` s."""
    try:
      return self._ready.get(timeout=timeout)
    except queue.Empty:
      return None, ()

  def _loop(self):
    pending = []
    while not self._stop.is_set():
      try:
        pending.append(self._uploads.get(timeout=0.1))
      except queue.Empty:
        continue
      if len(pending) == self._size:
        uploads, infos = zip(*pending)
        pending = []
        ready = (self._assemble(list(uploads)), infos)
        while not self._stop.is_set():
          try:
            self._ready.put(ready, timeout=0.1)
            break
          except queue.Full:
            continue

  def close(self):
    self._stop.set()
    if self._thread.is_alive():
      self._thread.join(timeout=5)
