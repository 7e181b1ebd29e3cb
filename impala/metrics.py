"""Prometheus `/metrics` for the learner and the actors (prometheus-client).

Collectors render, at scrape time, the learner's snapshot and the actor's counters:
nothing is added to the hot path. Each server has its own registry with the process collector
(CPU seconds, resident memory, open file descriptors) plus thread count and, on an
accelerator, device memory.
"""

from __future__ import annotations

import re
import sys
import threading

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
  yield GaugeMetricFamily(
    "process_threads", "Threads of this process (native ones included).", value=_threads()
  )
  jax = sys.modules.get("jax")  # an actor that leaves inference to the learner has none
  device = jax.devices()[0] if jax else None
  if device is not None and device.platform != "cpu":
    stats = device.memory_stats() or {}
    yield GaugeMetricFamily(
      "impala_device_memory_bytes", "Accelerator memory in use.", value=stats.get("bytes_in_use", 0)
    )


COUNTER_DOCS = {
  "frames": "Environment frames consumed by updates.",
  "updates": "Updates of the parameters.",
  "skipped_updates": "Updates skipped: their loss, gradients or new parameters were not finite.",
  "episodes": "Episodes that ended in the trajectories this learner took.",
  "received": "Uploads that reached the learner, decodable or not.",
  "accepted": "Uploads queued for training.",
  "duplicates": "Uploads resent after a reconnect, already taken: dropped.",
  "stale": "Uploads acted by parameters older than --max-policy-lag: dropped.",
  "abandoned": "Uploads abandoned while they waited for room in the queue.",
  "unauthenticated": "Calls refused for a missing or wrong token.",
  "unfinished": "Unrolls the learner was assembling (--inference learner) when their actor left.",
}
GAUGE_DOCS = {
  "return_mean_100": "Mean return of the last 100 episodes (of every learner).",
  "episodes_in_mean": "Episodes that mean is over (at most 100 per learner).",
  "learner_return_mean_100": "Mean return of this learner's last 100 episodes.",
  "length_mean_100": "Mean length of this learner's last 100 episodes.",
  "policy_lag": "Updates between acting and learning, last batch.",
  "policy_lag_mean": "Updates between acting and learning, every batch since the start.",
  "queue_depth": "Uploads waiting for a batch.",
  "version": "Version of the newest parameters.",
  "actors_connected": "Actors heard from in the last 10 s.",
}


MAX_ACTOR_SERIES = 1000  # actors with a last-seen series: the most recently heard from


class LearnerCollector:
  """A learner's snapshot, as Prometheus metrics named as the snapshot's fields."""

  def __init__(self, learner):
    self.learner = learner

  def collect(self):
    s = self.learner.snapshot()
    for name, value in s.counters().items():
      yield CounterMetricFamily(f"impala_{name}", COUNTER_DOCS[name], value=value)
    rejected = CounterMetricFamily(
      "impala_rejected", "Uploads refused as malformed or invalid, by reason.", labels=["reason"]
    )
    for reason, value in s.rejected.items():
      rejected.add_metric([reason], value)
    yield rejected
    for name, doc in GAUGE_DOCS.items():
      yield GaugeMetricFamily(f"impala_{name}", doc, value=getattr(s, name))
    seen = GaugeMetricFamily(
      "impala_actor_last_seen_timestamp_seconds",
      "When each actor was last heard from (Unix time).",
      labels=["actor"],
    )
    newest = sorted(s.actor_last_seen.items(), key=lambda item: -item[1])
    for actor, t in newest[:MAX_ACTOR_SERIES]:
      seen.add_metric([actor], t)
    yield seen
    yield from _resources()


ACTOR_DOCS = {
  "frames": "Environment frames stepped.",
  "unrolls": "Unrolls made.",
  "env_step_seconds": "Time spent stepping the environments.",
  "inference_seconds": "Time spent in the policy, or (--inference learner) waiting for the learner's actions.",
  "reconnects": "Failed connections to the learner, each retried after a backoff.",
  "stalls": "0.1 s waits for a learner that fell behind.",
}


class ActorCollector:
  """An actor session's counters (see `Session.counters`)."""

  def __init__(self, session):
    self.session = session

  def collect(self):
    for name, value in self.session.counters().items():
      yield CounterMetricFamily(f"impala_actor_{name}", ACTOR_DOCS[name], value=value)
    yield from _resources()


class Exporter:
  """A running /metrics server."""

  def __init__(self, server):
    self._server = server
    self.port = server.server_port

  def close(self):
    self._server.shutdown()
    self._server.server_close()


def serve(collector, port: int, address: str = "") -> Exporter:
  """Serves `collector`'s metrics and the process's on http://address:port/metrics."""
  registry = CollectorRegistry()
  ProcessCollector(registry=registry)
  registry.register(collector)
  try:
    server, _ = start_http_server(port, addr=address or "0.0.0.0", registry=registry)
  except OSError as e:
    raise ConfigError(
      f"bad value for --metrics-port: cannot listen on {port} ({e.strerror})"
    ) from None
  return Exporter(server)
