"""Soak: the real learner program under synthetic load for minutes, its resident memory
sampled all along: `python -m benchmarks.soak [--actors 64] [--seconds 600]
[--new-ids-per-second 100]`.

The load is --actors synthetic upload streams at full speed (benchmarks/synthetic_actors)
and, beside them, a client that says Hello and uploads one unroll under a new actor id
every 1/--new-ids-per-second s (the tables a hostile client would grow). Compares the
learner's RSS at the end with its RSS after a minute of warm-up, and checks the accounting
identity of the summary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

import grpc

from benchmarks import common
from impala import environments, healthcheck, specs, testing
from impala.config import Config
from impala.transport import codec, credentials
from impala.transport.proto import impala_pb2 as pb

WARMUP = 60.0


def resident_mib(pid: int) -> float:
  with open(f"/proc/{pid}/status") as f:
    kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
  return kib / 1024


def new_ids(target: str, per_second: float, stop: threading.Event, counts: dict):
  """Hello, then one unroll, from a new actor id each time."""
  config = Config()
  spec = specs.UnrollSpec.for_run(config, environments.describe(config.env_id))
  unroll = testing.random_unroll(spec)
  with grpc.insecure_channel(target, options=credentials.channel_options(config)) as channel:
    hello = channel.unary_unary(codec.method("Hello"), pb.HelloRequest.SerializeToString)
    upload = channel.stream_stream(codec.method("Upload"))
    n = 0
    while not stop.wait(1.0 / per_second):
      actor_id = f"churn-{n}"
      hello(pb.HelloRequest(actor_id=actor_id, protocol_version=codec.PROTOCOL_VERSION))
      message = codec.encode_unroll(unroll, testing.info(actor_id, 0, 0))
      counts["sent"] += 1
      counts["answered"] += len(list(upload(iter([message]), timeout=30)))
      n += 1


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--actors", type=int, default=64)
  parser.add_argument("--seconds", type=float, default=600.0)
  parser.add_argument("--new-ids-per-second", type=float, default=100.0)
  args = parser.parse_args(argv)
  port = common.free_port()
  target = f"127.0.0.1:{port}"
  learner = subprocess.Popen(
    [sys.executable, "learner_server.py", "--port", str(port), "--log-every", "10"],
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    text=True,
  )
  stop, churn = threading.Event(), dict(sent=0, answered=0)
  try:
    deadline = time.monotonic() + 120
    while healthcheck.status(target, timeout=1.0) != "SERVING":
      assert time.monotonic() < deadline and learner.poll() is None, "the learner did not start"
      time.sleep(0.5)
    load = subprocess.Popen(
      [sys.executable, "-m", "benchmarks.synthetic_actors", target, str(args.actors)]
      + [str(args.seconds)],
      stdout=subprocess.PIPE,
      text=True,
    )
    churner = threading.Thread(target=new_ids, args=(target, args.new_ids_per_second, stop, churn))
    churner.start()
    started, curve = time.monotonic(), []
    while load.poll() is None:
      curve.append((round(time.monotonic() - started), round(resident_mib(learner.pid), 1)))
      time.sleep(10)
    stop.set()
    churner.join(timeout=60)
    results = json.loads(load.communicate()[0])
    final = resident_mib(learner.pid)
    learner.terminate()
    summary = json.loads(learner.communicate(timeout=60)[0].strip().splitlines()[-1])
  finally:
    stop.set()
    if learner.poll() is None:
      learner.kill()
  warm = next(mib for t, mib in curve if t >= WARMUP)
  outcomes = ("accepted", "duplicates", "stale", "abandoned")
  taken = sum(summary[k] for k in outcomes) + sum(summary["rejected"].values())
  common.emit(
    "soak",
    dict(actors=args.actors, seconds=args.seconds, new_ids_per_second=args.new_ids_per_second),
    [common.comparison("learner RSS at the end", "MiB", final, f"RSS after {WARMUP:.0f} s", warm)],
    dict(
      rss_curve_mib=curve,
      accounting_holds=summary["received"] == taken,
      received=summary["received"],
      accepted=summary["accepted"],
      sent=sum(r["sent"] for r in results) + churn["sent"],
      errors=[r["error"] for r in results if r["error"]],
      new_ids=churn["sent"],
      actors_in_summary=len(summary["unrolls_by_actor"]),
      updates=summary["updates"],
    ),
  )


if __name__ == "__main__":
  main()
