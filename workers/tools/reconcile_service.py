"""``mailops reconcile --every 1h``: the drift check as a service.

Each round reads every known target (:func:`workers.tools.reconcile.check`), publishes one ``drift_found``
event per target that differs (on the events stream, not terminal, with the aspect and both
states in ``details``), sets the Prometheus gauges below on its own ``--metrics-port``, and with
``--apply`` issues the converging commands as the operator (without waiting: the next round
shows whether they took). A round that fails (Redis or a panel unreachable) is logged and the
service waits for the next one.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping

import redis
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from schemas.events import Event
from workers.backends.base import Backend
from workers.constants import BODY_FIELD
from workers.settings import Settings
from workers.tools.reconcile import Finding, check

logger = logging.getLogger(__name__)

#: ``90s``, ``30m``, ``1h``, ``1d`` (or a bare number of seconds).
EVERY = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds_of(every: str) -> float:
    """The period ``every`` names, in seconds; ``ValueError`` when it names none."""
    found = EVERY.match(every.strip())
    if found is None or float(found.group(1)) <= 0:
        raise ValueError(f"{every!r} is not a period such as 90s, 30m, 1h or 1d")
    return float(found.group(1)) * UNIT_S[found.group(2)]


class DriftGauges:
    """``mailops_reconcile_targets{backend,state}`` (ok, drift, unknown) of the last round, and
    ``mailops_reconcile_last_round_timestamp_seconds``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.targets = Gauge("mailops_reconcile_targets", "Targets in each state at the last reconcile round.",
                             ["backend", "state"], registry=self.registry)
        self.last_round = Gauge("mailops_reconcile_last_round_timestamp_seconds",
                                "When the last reconcile round ended.", registry=self.registry)

    def record(self, findings: list[Finding], backends: Mapping[str, Backend]) -> None:
        counts = Counter((f.backend, f.state) for f in findings)
        for backend in {*backends, *(f.backend for f in findings)}:
            for state in ("ok", "drift", "unknown"):
                self.targets.labels(backend, state).set(counts[(backend, state)])
        self.last_round.set(time.time())

    def serve(self, port: int) -> None:
        start_http_server(port, registry=self.registry)


def drift_event(finding: Finding) -> Event:
    """The ``drift_found`` event of one target that differs from its holds."""
    row = finding.as_dict()
    return Event(status="drift_found", backend=finding.backend, target=finding.target, producer="reconcile",
                 details={"aspect": finding.aspect, "expected": row["expected"], "panel": row["panel"],
                          "held_by": row["held_by"], **({"last": row["last"]} if "last" in row else {})})


def publish_drift(client: redis.Redis, settings: Settings, findings: list[Finding]) -> int:
    """One ``drift_found`` event per differing target; returns how many."""
    events = [drift_event(f) for f in findings if f.state == "drift"]
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.xadd(settings.events_stream, {BODY_FIELD: event.to_json()}, maxlen=settings.events_maxlen,
                  approximate=True)
    pipe.execute()
    return len(events)


def run_rounds(client: redis.Redis, settings: Settings, backends: Mapping[str, Backend], *, every_s: float,
               gauges: DriftGauges, stop: threading.Event, only: str | None = None,
               fix: Callable[[list[Finding]], None] | None = None) -> None:
    """A round every ``every_s`` seconds until ``stop`` is set."""
    while not stop.is_set():
        try:
            findings = check(client, settings.keys, backends, only=only)
            published = publish_drift(client, settings, findings)
            gauges.record(findings, backends)
            if fix is not None and published:
                fix(findings)
            logger.info("reconcile round: %d checked, %d differ, %d unknown", len(findings), published,
                        sum(f.state == "unknown" for f in findings))
        except (redis.RedisError, OSError) as exc:
            logger.warning("reconcile round failed: %s", exc)
        stop.wait(every_s)
