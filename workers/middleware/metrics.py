"""Metrics middleware: counts every processed attempt by command, backend and resulting status.

It sits *before* :class:`~workers.middleware.lifecycle.Lifecycle` in the middleware list, so its
``after_process_message`` runs after Lifecycle decided the outcome; it then reads the command
record's ``status`` (one ``HMGET``) instead of repeating Lifecycle's decision.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq
import orjson
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from workers.metrics import Metrics
from workers.settings import Settings

logger = logging.getLogger(__name__)


class CommandMetrics(Middleware):
    """Feeds ``mailops_commands_total`` and ``mailops_command_duration_seconds``."""

    def __init__(self, metrics: Metrics, client: Any, settings: Settings) -> None:
        self.metrics = metrics
        self.client = client
        self.keys = settings.keys
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
        try:
            status, stored = self.client.hmget(self.keys.command(str(message.args[0])), "status", "command")
        except Exception:  # metrics never break processing
            logger.debug("metrics: cannot read the command record", exc_info=True)
            return
        if status is None or stored is None:
            return
        command = orjson.loads(stored)
        labels = (str(command.get("command", "")), str(command.get("backend") or ""))
        self.metrics.commands.labels(*labels, status.decode()).inc()
        self.metrics.latency.labels(*labels).observe(elapsed)
