"""Sentry and structured logs, both carrying the command a worker thread is running.

* :func:`init_sentry` starts sentry-sdk with its Dramatiq integration (unexpected exceptions
  raised through Dramatiq) and :func:`workers.scrubbing.before_send` (no secrets leave).
  :class:`SentryContext` tags every event with ``command_id``, ``command`` and ``backend`` and
  reports the errors panel calls raise, which Lifecycle handles without re-raising.
* :class:`JsonFormatter` writes one JSON object per log line with the current command's id.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
import sentry_sdk
from sentry_sdk.integrations.dramatiq import DramatiqIntegration

from schemas.commands import Command
from workers import __version__
from workers.errors import CommandError, PanelRefused
from workers.queue.middleware.execution import Execution, current_execution
from workers.scrubbing import SecretFilter, before_send


def init_sentry(dsn: str, *, environment: str | None = None, transport: Any = None) -> None:
    """Start Sentry for this process; call it before the broker is built (the integration patches it)."""
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=f"mailops@{__version__}",
        integrations=[DramatiqIntegration()],
        before_send=before_send,  # type: ignore[arg-type]  # sentry types events as a TypedDict
        transport=transport,
    )


def _execution() -> Execution | None:
    try:
        return current_execution()
    except RuntimeError:
        return None


class SentryContext:
    """Tags Sentry events with the running command; reports the panel errors Lifecycle swallows
    (an :class:`~workers.queue.middleware.execution.AttemptObserver`)."""

    def attempt_started(self, execution: Execution) -> None:
        scope = sentry_sdk.get_current_scope()
        scope.set_tag("command_id", execution.command.id)
        scope.set_tag("command", execution.command.command)
        scope.set_tag("backend", execution.command.backend or "")
        scope.set_tag("attempt", str(execution.attempt))

    def attempt_ended(self, status: str, command: Command, execution: Execution | None) -> None:
        if execution is None or execution.error is None or isinstance(execution.error, CommandError):
            return
        level = "warning" if isinstance(execution.error, PanelRefused) else "error"
        with sentry_sdk.new_scope() as scope:
            scope.level = level
            sentry_sdk.capture_exception(execution.error)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the current command if any."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        execution = _execution()
        if execution is not None:
            data.update(command_id=execution.command.id, command=execution.command.command,
                        backend=execution.command.backend, attempt=execution.attempt)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(data).decode()


def configure_json_logs(level: str = "INFO", stream: Any = None) -> logging.Handler:
    """Replace the root handlers with one JSON handler (secrets filtered) on ``stream`` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(SecretFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    return handler


def start_observability(settings: Any, *, metrics_port: int | None, json_logs: bool) -> Any:
    """What ``mailops worker`` turns on: JSON logs, Sentry (when a DSN is set), a metrics endpoint.

    Returns the :class:`~workers.metrics.Metrics` to give the Runtime (``None`` without a port).
    """
    from workers.metrics import Metrics
    from workers.store.redis_client import connect

    if json_logs:
        configure_json_logs(logging.getLevelName(logging.getLogger().level))
    if settings.sentry_dsn:
        init_sentry(settings.sentry_dsn)
    if metrics_port is None:
        return None
    metrics = Metrics(connect(settings, max_connections=4), settings)
    metrics.serve(metrics_port)
    return metrics
