"""Learner ingest. Synthetic actors (processes, no environment) send ready-made
CartPole-sized and Atari-sized (84x84x4 uint8) unrolls as fast as the learner takes them;
the learner decodes, checks, queues and batches them, with its update replaced by a
no-op so that the figure is the ingest path alone.

Every sender encodes each unroll afresh (new sequence number, as an actor does: the
learner drops resent ones), for the learner and the baselines alike.

Baselines, same run: the same serialized bytes, length-prefixed, from the same number
of sender processes over a plain loopback TCP socket into fresh buffers; and the
ceilings of grpcio itself, bare gRPC servers whose handlers drop the bytes: with one
stream per sender (what Upload is) and with unary calls (why Upload is a stream).
"""

from __future__ import annotations

import multiprocessing
import queue
import socket
import struct
import threading
import time
from concurrent import futures

import grpc
import jax.numpy as jnp

from benchmarks import common
from impala import actor as actor_lib
from impala import algorithms, distributed, environments, networks, specs, testing
from impala import learner as learner_lib
from impala.config import Config
from impala.learner import batcher
from impala.transport import codec, credentials

SENDERS = 2
IN_FLIGHT = actor_lib.MAX_IN_FLIGHT + 1  # unanswered unrolls per sender, as a real actor keeps
WARMUP, WINDOW = 1.0, 4.0
SIZES = {
  "cartpole": Config(),
  "atari": Config(env_id=common.ATARI_SHAPED, torso="deep", num_envs=8, queue_size=8),
}


def make_unroll(config: Config) -> tuple[specs.Unroll, specs.UnrollInfo]:
  """An unroll of the configured shape, with random contents."""
  spec = specs.UnrollSpec.for_run(config, environments.describe(config.env_id))
  return testing.random_unroll(spec), testing.info("sender")


def stream_sender(
  target: str, template, config: Config, stop, method: str = codec.method("Upload")
):
  """Sends unrolls on one upload stream, IN_FLIGHT unanswered at most, until `stop` is set."""
  new = testing.messages(*template)
  with grpc.insecure_channel(target, options=credentials.channel_options(config)) as channel:
    outbox = queue.SimpleQueue()
    for _ in range(IN_FLIGHT):
      outbox.put(next(new))
    for _ in channel.stream_stream(method)(iter(outbox.get, None)):
      outbox.put(None if stop.is_set() else next(new))


def unary_sender(target: str, template, config: Config, stop):
  """Sends unrolls in unary calls, IN_FLIGHT outstanding at most, until `stop` is set."""
  new = testing.messages(*template)
  with grpc.insecure_channel(target, options=credentials.channel_options(config)) as channel:
    upload = channel.unary_unary("/bench.Bare/Upload")
    in_flight = []
    while not stop.is_set():
      in_flight.append(upload.future(next(new), timeout=30))
      if len(in_flight) >= IN_FLIGHT:
        in_flight.pop(0).result()


def socket_sender(port: int, template, stop):
  new = testing.messages(*template)
  with socket.create_connection(("127.0.0.1", port)) as s:
    while not stop.is_set():
      raw = next(new)
      s.sendall(struct.pack("<Q", len(raw)))
      s.sendall(raw)


def start_senders(target, *args, **kwargs):
  ctx = multiprocessing.get_context("spawn")
  stop = ctx.Event()
  procs = [
    ctx.Process(target=target, args=(*args, stop), kwargs=kwargs, daemon=True)
    for _ in range(SENDERS)
  ]
  for p in procs:
    p.start()
  return stop, procs


def stop_senders(stop, procs):
  stop.set()
  for p in procs:
    p.join(timeout=10)
    if p.is_alive():
      p.kill()


def grpc_ingest(config: Config, template, train: bool = False) -> tuple[float, float]:
  """(unrolls/s accepted, batches/s taken by the update loop) of a learner fed unrolls like
  `template` as fast as SENDERS processes can send them; without `train` the update is a no-op."""
  batcher.keep_freed_memory()
  parts = learner_lib.build(config, algorithm=None if train else ingest_only(config))
  parts.start()
  learner = parts.learner
  learner.compile()
  grpc_server, port, _ = parts.serve(0, address="127.0.0.1")
  stop, procs = start_senders(stream_sender, f"127.0.0.1:{port}", template, config)
  try:
    rates = common.steady_rates(learner, WARMUP, WINDOW)
    return rates["unrolls"], rates["updates"]
  finally:
    stop_senders(stop, procs)
    grpc_server.stop(grace=None).wait()
    parts.close()


def ingest_only(config: Config) -> algorithms.Algorithm:
  """The configured algorithm with a no-op update: the learner only takes in uploads."""
  env = environments.describe(config.env_id)
  real = algorithms.for_run(
    config,
    networks.for_run(config, env),
    specs.UnrollSpec.for_run(config, env),
    distributed.make_mesh(),
  )
  # The learner counts skipped updates: a no-op update skips none.
  none = jnp.zeros(())
  return real._replace(update=lambda state, batch, control: (state, {"skipped": none}, control))


def bare_grpc_ingest(template, config: Config, stream: bool = False) -> float:
  """Messages/s a gRPC server receives when its handler does nothing with them."""
  received = [0]

  def upload(request, context):
    received[0] += 1
    return b""

  def upload_stream(requests, context):
    for _ in requests:
      received[0] += 1
      yield b""

  bare = grpc.server(futures.ThreadPoolExecutor(16), options=credentials.channel_options(config))
  bare.add_generic_rpc_handlers(
    [
      grpc.method_handlers_generic_handler(
        "bench.Bare",
        {
          "Upload": grpc.unary_unary_rpc_method_handler(upload),
          "UploadStream": grpc.stream_stream_rpc_method_handler(upload_stream),
        },
      )
    ]
  )
  port = bare.add_insecure_port("127.0.0.1:0")
  bare.start()
  if stream:
    stop, procs = start_senders(
      stream_sender, f"127.0.0.1:{port}", template, config, method="/bench.Bare/UploadStream"
    )
  else:
    stop, procs = start_senders(unary_sender, f"127.0.0.1:{port}", template, config)
  try:
    return count_rate(lambda: received[0])
  finally:
    stop_senders(stop, procs)
    bare.stop(grace=None).wait()


def count_rate(count) -> float:
  """Rate of `count()` over WINDOW seconds, after WARMUP seconds."""
  time.sleep(WARMUP)
  t0, c0 = time.monotonic(), count()
  time.sleep(WINDOW)
  return (count() - c0) / (time.monotonic() - t0)


def socket_ingest(template) -> float:
  """Messages/s received over loopback TCP, each read into a fresh buffer."""
  listener = socket.create_server(("127.0.0.1", 0))
  port = listener.getsockname()[1]
  stop, procs = start_senders(socket_sender, port, template)
  received = [0]

  def receive(conn):
    with conn:
      header = bytearray(8)
      while True:
        if conn.recv_into(header, 8, socket.MSG_WAITALL) < 8:
          return
        size = struct.unpack("<Q", header)[0]
        buffer, got = bytearray(size), 0
        view = memoryview(buffer)
        while got < size:
          n = conn.recv_into(view[got:])
          if not n:
            return
          got += n
        received[0] += 1

  threads = []
  for _ in procs:
    conn, _ = listener.accept()
    threads.append(threading.Thread(target=receive, args=(conn,), daemon=True))
    threads[-1].start()
  try:
    return count_rate(lambda: received[0])
  finally:
    stop_senders(stop, procs)
    listener.close()


def main():
  common.register_atari_shaped()
  comparisons, details = [], {}
  for size, config in SIZES.items():
    template = make_unroll(config)
    frames = config.unroll_length * config.num_envs
    mb = len(next(testing.messages(*template))) / 1e6
    unrolls, batches = grpc_ingest(config, template)
    socket_rate = socket_ingest(template)
    bare_rate = bare_grpc_ingest(template, config)
    stream_rate = bare_grpc_ingest(template, config, stream=True)
    comparisons += [
      common.comparison(
        f"{size}: learner ingest",
        "MB/s",
        unrolls * mb,
        "same bytes over a loopback socket",
        socket_rate * mb,
      ),
      common.comparison(
        f"{size}: learner ingest",
        "MB/s",
        unrolls * mb,
        "bare gRPC server, streams, bytes dropped",
        stream_rate * mb,
      ),
      common.comparison(
        f"{size}: learner ingest",
        "MB/s",
        unrolls * mb,
        "bare gRPC server, unary calls, bytes dropped",
        bare_rate * mb,
      ),
    ]
    details[size] = dict(
      unroll_megabytes=mb,
      unrolls_per_second=unrolls,
      frames_per_second=unrolls * frames,
      batches_per_second=batches,
      socket_messages_per_second=socket_rate,
      bare_grpc_messages_per_second=bare_rate,
      bare_grpc_stream_messages_per_second=stream_rate,
    )
  parameters = dict(
    senders=SENDERS,
    in_flight_per_sender=IN_FLIGHT,
    warmup_s=WARMUP,
    window_s=WINDOW,
    **{
      size: dict(
        env_id=c.env_id, num_envs=c.num_envs, unroll_length=c.unroll_length, batch_size=c.batch_size
      )
      for size, c in SIZES.items()
    },
  )
  common.emit("ingest", parameters, comparisons, details)


if __name__ == "__main__":
  main()
