"""Prometheus `/metrics` for the learner and the actors (prometheus-client).

Collectors read the counters the learner and actor keep anyway, at scrape time: nothing
is added to the hot path. Each server has its own registry with the process collector
(CPU seconds, resident memory, open file descriptors) plus thread count and, on an
accelerator, device memory.
"""

from __future__ import annotations

import re
import threading
import time

import jax
from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from impala.config import ConfigError


def _threads() -> int:
  try:
    with open("/proc/self/status") as f:
      return int(re.search(r"^Threads:\s+(\d+)", f.read(), re.M).group(1))
  except (OSError, AttributeError):
    return threading.active_count()


def _resources():
  yield GaugeMetricFamily("process_threads", "Threads of this process (native ones included).",
                          value=_threads())
  device = jax.devices()[0]
  if device.platform != "cpu":
    stats = device.memory_stats() or {}
    yield GaugeMetricFamily("impala_device_memory_bytes", "Accelerator memory in use.",
                            value=stats.get("bytes_in_use", 0))


class LearnerCollector:
  """Training counters and gauges of a `learning.Learner`."""

  def __init__(self, learner):
    self.learner = learner

  def collect(self):
    learner = self.learner
    now_wall, now = time.time(), time.monotonic()
    with learner.lock:
      s = learner.stats
      counters = dict(frames=s.frames, updates=s.updates, episodes=s.episodes,
                      unauthenticated_calls=s.unauthenticated)
      outcomes = dict(accepted=s.accepted, duplicate=s.duplicates, stale=s.stale,
                      abandoned=s.abandoned,
                      **{f"rejected_{reason}": n for reason, n in s.rejected.items()})
      received, lag, ret, version = s.received, s.policy_lag, s.return_mean_100, learner.version
      last_seen, connected = dict(learner.last_seen), learner.actors_connected()
    for name, value in counters.items():
      yield CounterMetricFamily(f"impala_{name}", f"{name.replace('_', ' ').capitalize()} so far.",
                                value=value)
    yield CounterMetricFamily("impala_unrolls_received", "Unrolls that reached the learner.",
                              value=received)
    unrolls = CounterMetricFamily("impala_unrolls", "Unrolls by what became of them.",
                                  labels=["outcome"])
    for outcome, value in outcomes.items():
      unrolls.add_metric([outcome], value)
    yield unrolls
    for name, doc, value in (
        ("return_mean_100", "Mean return of the last 100 episodes.", ret),
        ("policy_lag", "Updates between acting and learning, last batch.", lag),
        ("queue_depth", "Unrolls waiting for a batch.", learner.queue_depth()),
        ("params_version", "Version of the newest parameters.", version),
        ("actors_connected", "Actors heard from in the last 10 s.", connected)):
      yield GaugeMetricFamily(f"impala_{name}", doc, value=value)
    seen = GaugeMetricFamily("impala_actor_last_seen_timestamp_seconds",
                             "When each actor was last heard from (Unix time).", labels=["actor"])
    for actor, t in last_seen.items():
      seen.add_metric([actor], now_wall - (now - t))
    yield seen
    yield from _resources()


class ActorCollector:
  """Counters of an `acting.Actor`."""

  def __init__(self, actor):
    self.actor = actor

  def collect(self):
    a = self.actor
    for name, doc, value in (
        ("frames", "Environment frames stepped.", a.frames),
        ("unrolls", "Unrolls made.", a.sequence),
        ("env_step_seconds", "Time spent stepping the environments.", a.env_seconds),
        ("inference_seconds", "Time spent in the policy (inference).", a.inference_seconds),
        ("reconnects", "Failed connections to the learner, each retried after a backoff.",
         a.reconnects),
        ("stalls", "0.1 s waits for a learner that fell behind.", a.stalls)):
      yield CounterMetricFamily(f"impala_actor_{name}", doc, value=value)
    yield from _resources()


def serve(collector, port: int, address: str = "") -> int:
  """Serves `collector`'s metrics and the process's on http://address:port/metrics;
  returns the port (useful with 0)."""
  registry = CollectorRegistry()
  ProcessCollector(registry=registry)
  registry.register(collector)
  try:
    server, _ = start_http_server(port, addr=address or "0.0.0.0", registry=registry)
  except OSError as e:
    raise ConfigError(f"bad value for --metrics-port: cannot listen on {port} ({e.strerror})") from None
  return server.server_port
