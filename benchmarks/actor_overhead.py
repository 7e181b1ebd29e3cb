"""Actor overhead. Frames/s of one actor connected to a real learner (a
`learner_server.py` process, training on what it receives) against the bare loop of
the same environments and jitted policy, no learner.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

from benchmarks import common
from impala.actor import Session
from impala.config import Config

NUM_ENVS = (32, 64)
WARMUP, WINDOW = 3.0, 6.0


def connected_frames_per_second(num_envs: int) -> float:
  port = common.free_port()
  learner = subprocess.Popen(
    [
      sys.executable,
      "learner_server.py",
      "--port",
      str(port),
      "--num-envs",
      str(num_envs),
      "--max-seconds",
      "120",
    ],
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
  )
  actor = Session(Config(grpc_host=f"127.0.0.1:{port}", actor_id="bench"))
  stop = threading.Event()
  thread = threading.Thread(target=actor.run, args=(stop,))
  thread.start()
  try:
    deadline = time.monotonic() + 120
    while (
      actor.rollout is None or actor.rollout.frames == 0
    ):  # connected, set up from the handshake, first unroll done
      if time.monotonic() > deadline or learner.poll() is not None:
        raise RuntimeError("the actor never got going")
      time.sleep(0.1)
    time.sleep(WARMUP)
    t0, f0 = time.monotonic(), actor.rollout.frames
    time.sleep(WINDOW)
    return (actor.rollout.frames - f0) / (time.monotonic() - t0)
  finally:
    stop.set()
    thread.join(timeout=30)
    learner.send_signal(signal.SIGINT)
    learner.wait(timeout=30)


def main():
  comparisons = []
  for num_envs in NUM_ENVS:
    baseline = common.acting_frames_per_second(Config(num_envs=num_envs), 3.0)
    connected = connected_frames_per_second(num_envs)
    comparisons.append(
      common.comparison(
        f"1 actor x {num_envs} envs, connected",
        "frames/s",
        connected,
        f"env + policy loop, {num_envs} envs",
        baseline,
      )
    )
  common.emit(
    "actor_overhead",
    dict(num_envs=NUM_ENVS, env_id=Config().env_id, warmup_s=WARMUP, window_s=WINDOW),
    comparisons,
  )


if __name__ == "__main__":
  main()
