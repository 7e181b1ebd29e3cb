"""Synthetic actors for load tests: N upload streams, each sending CartPole-sized unrolls
(new sequence numbers, no environment) as fast as the learner takes them.

    python -m benchmarks.synthetic_actors HOST:PORT STREAMS SECONDS

Prints one JSON line: unrolls sent and answered per stream, and any errors.
"""

import json
import queue
import sys
import threading
import time

import grpc

from impala import actor as actor_lib
from impala import environments, specs, testing
from impala.config import Config
from impala.transport import codec, credentials


def stream(target: str, index: int, deadline: float, results: list):
  config = Config()
  spec = specs.UnrollSpec.for_run(config, environments.describe(config.env_id))
  new = testing.messages(testing.random_unroll(spec), testing.info(), actor_id=f"synthetic-{index}")
  sent = answered = 0
  try:
    with grpc.insecure_channel(target, options=credentials.channel_options(config)) as ch:
      outbox = queue.SimpleQueue()
      for _ in range(actor_lib.MAX_IN_FLIGHT + 1):
        outbox.put(next(new))
        sent += 1
      for _ in ch.stream_stream(codec.method("Upload"))(iter(outbox.get, None)):
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
  threads = [
    threading.Thread(target=stream, args=(target, i, deadline, results)) for i in range(streams)
  ]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  print(json.dumps(results))


if __name__ == "__main__":
  main()
