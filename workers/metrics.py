"""Prometheus metrics of one worker process.

Two kinds:

* counted in the process by :class:`~workers.middleware.metrics.CommandMetrics`:
  ``mailops_commands_total{command,backend,status}`` (one per processed attempt, labelled with
  the status the attempt left the command in: succeeded, failed, dead_lettered, retrying...) and
  the ``mailops_command_duration_seconds{command,backend}`` histogram;
* read from Redis at scrape time by :class:`RedisCollector` (the same on every process):
  ``mailops_queue_depth{queue,state}``, ``mailops_dead_letters``,
  ``mailops_backend_inflight{backend}`` and ``mailops_backend_breaker_state{backend,state}``.

With several worker processes each serves its own endpoint (``--metrics-port`` + process index);
sum the process counters in Prometheus.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from workers import constants
from workers.settings import Settings

#: Breaker states exported (one series each; the current one is 1).
BREAKER_STATES = ("closed", "open", "half_open")
#: Latency buckets in seconds: panel calls take tens of milliseconds to tens of seconds.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class RedisCollector(Collector):
    """Queue depths, dead letters, in-flight calls and breakers, read from Redis on each scrape."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        keys = self.settings.keys
        dq = keys.dramatiq
        backends = sorted(self.settings.backends)
        now_ms = int(time.time() * 1000)
        pipe = self.client.pipeline(transaction=False)
        for queue in constants.QUEUES:
            pipe.llen(dq.queue(queue))
            pipe.llen(dq.queue(f"{queue}.DQ"))
        pipe.zcard(keys.dead_letters)
        for backend in backends:
            pipe.zcount(keys.backend_inflight(backend), now_ms, "+inf")
            pipe.hget(keys.breaker(backend), "state")
        replies: list[Any] = pipe.execute()
        depth = GaugeMetricFamily("mailops_queue_depth", "Messages waiting per queue (ready or delayed for retry).",
                                  labels=["queue", "state"])
        for i, queue in enumerate(constants.QUEUES):
            depth.add_metric([queue, "ready"], replies[2 * i])
            depth.add_metric([queue, "delayed"], replies[2 * i + 1])
        yield depth
        offset = 2 * len(constants.QUEUES)
        yield GaugeMetricFamily("mailops_dead_letters", "Dead-lettered commands awaiting an operator.",
                                value=replies[offset])
        inflight = GaugeMetricFamily("mailops_backend_inflight", "Panel calls in flight per backend (all workers).",
                                     labels=["backend"])
        breaker = GaugeMetricFamily("mailops_backend_breaker_state", "Circuit-breaker state per backend (1 = current).",
                                    labels=["backend", "state"])
        for j, backend in enumerate(backends):
            inflight.add_metric([backend], replies[offset + 1 + 2 * j])
            raw = replies[offset + 2 + 2 * j]
            current = raw.decode() if isinstance(raw, bytes) else "closed"
            for state in (*BREAKER_STATES, *([current] if current not in BREAKER_STATES else [])):
                breaker.add_metric([backend, state], 1.0 if state == current else 0.0)
        yield inflight
        yield breaker


#: Commands refused before admission, counted where the refusal is decided (ingest and the HTTP
#: door, :func:`workers.ingest.answer_rejection`); registered in each process's registry.
REJECTIONS = Counter("mailops_commands_rejected", "Commands rejected before admission, by producer and the field and rule.",
                     ["producer", "field", "rule"], registry=None)


class Metrics:
    """The metrics registry of one process."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.registry = CollectorRegistry()
        self.commands = Counter("mailops_commands", "Processed command attempts by the status they left the command in.",
                                ["command", "backend", "status"], registry=self.registry)
        self.latency = Histogram("mailops_command_duration_seconds", "Time to process one attempt (panel call included).",
                                 ["command", "backend"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(RedisCollector(client, settings))
        self.registry.register(REJECTIONS)

    def serve(self, port: int, addr: str = "0.0.0.0") -> Any:
        """Serve ``/metrics`` on ``port`` in a daemon thread; returns the HTTP server (``.shutdown()``)."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server
