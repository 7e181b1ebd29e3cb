"""Synthetic actors for load tests: N upload streams, each sending CartPole-sized unrolls
(benchmarks/ingest.py's: new sequence numbers, no environment) as fast as the learner
takes them.

    python tests/synthetic_actors.py HOST:PORT STREAMS SECONDS

Prints one JSON line: unrolls sent and answered per stream, and any errors.
"""

import json
import queue
import sys
import threading
import time

import grpc

sys.path.insert(0, __file__.rsplit("/tests/", 1)[0])

from benchmarks import ingest  # noqa: E402
from impala import acting, environments, server  # noqa: E402
from impala.config import Config  # noqa: E402


def stream(target: str, index: int, deadline: float, results: list):
  config = Config()
  new = ingest.messages(ingest.make_unroll(config, environments.describe(config.env_id)),
                        actor_id=f"synthetic-{index}")
  sent = answered = 0
  try:
    with grpc.insecure_channel(target, options=server.channel_options(config.max_message_bytes)) as ch:
      outbox = queue.SimpleQueue()
      for _ in range(acting.MAX_IN_FLIGHT + 1):
        outbox.put(next(new))
        sent += 1
      for _ in ch.stream_stream(f"/{server.SERVICE_NAME}/Upload")(iter(outbox.get, None)):
        answered += 1
        if time.monotonic() < deadline:
          outbox.put(next(new))
          sent += 1
        else:
          outbox.put(None)  # end of stream
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
