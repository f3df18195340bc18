"""Metrics middleware: counts every processed attempt by command, backend and resulting status.

It sits *before* :class:`~workers.queue.middleware.lifecycle.Lifecycle` in the middleware list, so its
``after_process_message`` runs after Lifecycle decided the outcome, which it reads from
:func:`~workers.queue.middleware.lifecycle.last_outcome` (no Redis round trip). The duration histogram
observes attempts that reached a result; a ``waiting`` attempt made no panel call and is only counted.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from workers.metrics import Metrics
from workers.queue.middleware.execution import last_outcome


class CommandMetrics(Middleware):
    """Feeds ``mailops_commands_total`` and ``mailops_command_duration_seconds``."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._local = threading.local()

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._local.started = time.monotonic()

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._local.started = None

    def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        started = getattr(self._local, "started", None)
        self._local.started = None
        if started is None:
            return
        elapsed = time.monotonic() - started
        outcome = last_outcome()
        if outcome is None:
            return
        status, command = outcome
        labels = (command.command, command.backend or "")
        self.metrics.commands.labels(*labels, status).inc()
        if status != "waiting":
            self.metrics.latency.labels(*labels).observe(elapsed)
