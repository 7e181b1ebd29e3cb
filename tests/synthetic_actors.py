"""Synthetic actors for load tests: N upload streams, each sending ready-made CartPole
unrolls (new sequence numbers, no environment) as fast as the learner takes them.

    python tests/synthetic_actors.py HOST:PORT STREAMS SECONDS

Prints one JSON line: unrolls sent and answered per stream, and any errors.
"""

import json
import queue
import sys
import threading
import time

import grpc
import numpy as np

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0])

from impala import acting, codec, server, types  # noqa: E402
from impala.config import Config  # noqa: E402


def template(config: Config) -> types.Unroll:
  rng = np.random.default_rng(0)
  t, n = config.unroll_length, config.num_envs
  return types.Unroll(rng.normal(size=(t + 1, n, 4)).astype(np.float32),
                      np.zeros((t + 1, n), bool), np.zeros((t + 1, n), bool),
                      rng.integers(0, 2, (t, n)).astype(np.int32), np.ones((t, n), np.float32),
                      rng.normal(size=(t, n, 2)).astype(np.float32), ())


def stream(target: str, index: int, deadline: float, results: list):
  config = Config()
  unroll, sent, answered = template(config), 0, 0
  no_episodes = (np.zeros(0, np.float32), np.zeros(0, np.int32))
  try:
    with grpc.insecure_channel(target, options=server.channel_options(config.max_message_bytes)) as ch:
      outbox = queue.SimpleQueue()

      def message():
        nonlocal sent
        sent += 1
        return codec.encode_unroll(unroll, types.UnrollInfo(f"synthetic-{index}", sent - 1, 0,
                                                            *no_episodes, index + 1))
      for _ in range(acting.MAX_IN_FLIGHT + 1):
        outbox.put(message())
      for _ in ch.stream_stream(f"/{server.SERVICE_NAME}/Upload")(iter(outbox.get, None)):
        answered += 1
        outbox.put(message() if time.monotonic() < deadline else None)  # None: end of stream
    results[index] = dict(sent=sent, answered=answered, error=None)
  except grpc.RpcError as e:
    results[index] = dict(sent=sent, answered=answered, error=f"{e.code().name}: {e.details()}")


def main():
  target, streams, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
  deadline = time.monotonic() + seconds
  results = [None] * streams
  threads = [threading.Thread(target=stream, args=(target, i, deadline, results))
             for i in range(streams)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  print(json.dumps(results))


if __name__ == "__main__":
  main()
