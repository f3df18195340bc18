"""Liveness middleware: a heartbeat thread per worker process and deterministic dead-worker recovery.

Dramatiq refreshes a process's heartbeat only when a consumer fetches, and redelivers a dead
process's messages only when a random 0.1 % of calls triggers maintenance. Here a thread
heartbeats every ``interval`` and runs maintenance on every queue, so the messages of a process
that died (kill -9, OOM) are back on their queue within ``heartbeat_timeout + interval``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware

logger = logging.getLogger(__name__)


class Liveness(Middleware):
    """Heartbeat and reap on a fixed period in every worker process."""

    def __init__(self, *, interval_s: float = 1.0, chores: Sequence[Callable[[], object]] = ()) -> None:
        self.interval_s = interval_s
        #: Run after each heartbeat (e.g. releasing commands parked for backends with room).
        self.chores = tuple(chores)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: monotonic time of the last successful heartbeat (for ``mailops worker --check``).
        self.last_beat = 0.0

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(broker,), name="mailops-liveness", daemon=True)
        self._thread.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Heartbeat through the whole drain: stopping at the start of it would let other
        # processes reap (and run a second time) the commands this process is still finishing.
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self, broker: Any) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                broker.heartbeat_and_reap()
                self.last_beat = time.monotonic()
                for chore in self.chores:
                    chore()
            except redis.RedisError as exc:
                logger.warning("liveness: Redis error %s", type(exc).__name__)
