"""Prometheus metrics of one worker process.

Two kinds:

* counted in the process by :class:`Metrics` as Lifecycle tells it each attempt's end:
  ``mailops_commands_total{command,backend,status}`` (one per processed attempt, labelled with
  the status the attempt left the command in: succeeded, failed, dead_lettered, retrying...) and
  the ``mailops_command_duration_seconds{command,backend}`` histogram;
* read from Redis at scrape time by :class:`RedisCollector` (the same on every process):
  ``mailops_queue_depth{queue,state}`` (``delayed`` counts the delay queue's messages hash: the
  delay list itself is emptied as soon as a worker prefetches the messages), ``mailops_dead_letters``,
  ``mailops_backend_inflight{backend}``, ``mailops_backend_breaker_state{backend,state}``,
  ``mailops_backend_breaker_open{backend}``, ``mailops_commands_waiting{backend,reason}``
  (backend_down, cap_full, target_busy: the waiting sets retry.lua keeps),
  ``mailops_ingest_lag_entries`` / ``mailops_ingest_pending_entries`` (the ingest group's
  XINFO GROUPS ``lag`` and ``pending``) and ``mailops_workers_live`` (heartbeats younger than the
  heartbeat timeout).

With several worker processes each serves its own endpoint (``--metrics-port`` + process index);
sum the process counters in Prometheus.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
from dramatiq.common import dq_name
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from schemas.commands import Command
from workers import constants
from workers.queue.middleware.execution import Execution
from workers.settings import Settings
from workers.store.wire import as_text

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
        state = read_state(self.client, self.settings)
        depth = GaugeMetricFamily("mailops_queue_depth", "Messages per queue: ready, or delayed (retry or wait).",
                                  labels=["queue", "state"])
        for queue, counts in state.queues.items():
            depth.add_metric([queue, "ready"], counts["ready"])
            depth.add_metric([queue, "delayed"], counts["delayed"])
        yield depth
        yield GaugeMetricFamily("mailops_dead_letters", "Dead-lettered commands awaiting an operator.",
                                value=state.dead_letters)
        inflight = GaugeMetricFamily("mailops_backend_inflight", "Panel calls in flight per backend (all workers).",
                                     labels=["backend"])
        breaker = GaugeMetricFamily("mailops_backend_breaker_state", "Circuit-breaker state per backend (1 = current).",
                                    labels=["backend", "state"])
        is_open = GaugeMetricFamily("mailops_backend_breaker_open", "1 while the backend's circuit breaker is open.",
                                    labels=["backend"])
        waiting = GaugeMetricFamily("mailops_commands_waiting",
                                    "Commands waiting to run again, by backend and reason (no attempt counted).",
                                    labels=["backend", "reason"])
        for backend, info in state.backends.items():
            inflight.add_metric([backend], info.inflight)
            current = info.breaker
            for name in (*BREAKER_STATES, *([current] if current not in BREAKER_STATES else [])):
                breaker.add_metric([backend, name], 1.0 if name == current else 0.0)
            is_open.add_metric([backend], 1.0 if current == "open" else 0.0)
            for reason, count in info.waiting.items():
                waiting.add_metric([backend, reason], count)
        yield inflight
        yield breaker
        yield is_open
        yield waiting
        yield GaugeMetricFamily("mailops_ingest_lag_entries",
                                "Stream entries not yet read by the ingest group (XINFO GROUPS lag).", value=state.ingest_lag)
        yield GaugeMetricFamily("mailops_ingest_pending_entries",
                                "Entries read by ingest but not yet admitted (XINFO GROUPS pending).",
                                value=state.ingest_pending)
        yield GaugeMetricFamily("mailops_workers_live", "Worker processes with a recent heartbeat.",
                                value=sum(1 for age in state.workers.values() if age <= self.settings.heartbeat_timeout_ms))


@dataclass
class BackendState:
    """One backend as Redis sees it now."""

    inflight: int = 0
    breaker: str = "closed"
    #: Waiting commands by reason (backend_down, cap_full, target_busy).
    waiting: dict[str, int] = field(default_factory=dict)


@dataclass
class State:
    """What is queued, waiting and stuck, read from Redis in one round trip (metrics and ``mailops status``)."""

    #: queue -> {"ready": n, "delayed": n}
    queues: dict[str, dict[str, int]]
    dead_letters: int
    backends: dict[str, BackendState]
    ingest_lag: float
    ingest_pending: int
    #: worker process (broker) id -> ms since its last heartbeat
    workers: dict[str, int]


def read_state(client: redis.Redis, settings: Settings) -> State:
    """Queues, dead letters, breakers, waiting commands, ingest lag and heartbeats: one pipeline."""
    keys = settings.keys
    dq = keys.dramatiq
    backends = sorted(settings.backends)
    reasons = list(constants.WAITING_REASONS.values())
    now_ms = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for queue in constants.QUEUES:
        pipe.llen(dq.queue(queue))
        # Dramatiq's delay queue: the list empties as soon as a consumer prefetches the messages
        # (they then wait in its memory for their eta), the messages hash holds them until enqueued.
        pipe.hlen(dq.messages(dq_name(queue)))
    pipe.zcard(keys.dead_letters)
    for backend in backends:
        pipe.zcount(keys.backend_inflight(backend), now_ms, "+inf")
        pipe.hget(keys.breaker(backend), "state")
        for reason in reasons:
            pipe.zcount(keys.waiting(backend, reason), now_ms - constants.WAITING_GRACE_MS, "+inf")
        pipe.zcard(keys.backend_parked(backend))
    pipe.zrange(dq.heartbeats, 0, -1, withscores=True)
    replies: list[Any] = pipe.execute()
    position = iter(replies)
    queues = {queue: {"ready": int(next(position)), "delayed": int(next(position))} for queue in constants.QUEUES}
    dead = int(next(position))
    states: dict[str, BackendState] = {}
    for backend in backends:
        inflight = int(next(position))
        raw = next(position)
        waiting = {reason: int(next(position)) for reason in reasons}
        # Parked commands (their backend's concurrency cap is full) wait in the parked line.
        waiting["cap_full"] = waiting.get("cap_full", 0) + int(next(position))
        states[backend] = BackendState(inflight, as_text(raw) if raw is not None else "closed", waiting)
    workers = {as_text(member): max(0, now_ms - int(score))
               for member, score in next(position)}
    lag, pending = _ingest_group(client, settings.commands_stream)
    return State(queues, dead, states, lag, pending, workers)


def _ingest_group(client: redis.Redis, stream: str) -> tuple[float, int]:
    """The ingest group's lag (entries not yet read; NaN when Redis cannot tell) and pending count."""
    try:
        groups: Any = client.xinfo_groups(stream)
    except redis.ResponseError:  # no stream yet: nothing to ingest
        return 0.0, 0
    for group in groups:
        name = group.get("name")
        if as_text(name) == constants.INGEST_GROUP:
            lag = group.get("lag")
            return (float(lag) if lag is not None else math.nan), int(group.get("pending") or 0)
    length = int(client.xlen(stream))
    return float(length), 0


#: Commands refused before admission, counted where the refusal is decided (ingest and the HTTP
#: door, :func:`workers.ingest.reader.answer_rejection`); registered in each process's registry.
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

    def attempt_started(self, execution: Execution) -> None:
        pass

    def attempt_ended(self, status: str, command: Command, execution: Execution | None) -> None:
        """Count the attempt by the status it left the command in; time those that reached a result
        (a ``waiting`` attempt made no panel call; one ended before it started has no time)."""
        labels = (command.command, command.backend or "")
        self.commands.labels(*labels, status).inc()
        if execution is not None and status != "waiting":
            self.latency.labels(*labels).observe(time.monotonic() - execution.started)

    def serve(self, port: int, addr: str = "0.0.0.0") -> Any:
        """Serve ``/metrics`` on ``port`` in a daemon thread; returns the HTTP server (``.shutdown()``)."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server
