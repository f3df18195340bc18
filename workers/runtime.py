"""One worker process: the Dramatiq worker, the ingest consumer and the liveness thread."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence

import dramatiq
import redis

from schemas.commands import Command
from workers import constants
from workers.attempt.executor import Executor
from workers.attempt.limits import BackendLimits
from workers.attempt.ordering import TargetGuard
from workers.backends.registry import build_backends
from workers.ingest.auth import sealer_for, security_gates
from workers.ingest.reader import IngestGate, Ingestor
from workers.ingest.routing import RouteMap, RoutingGate
from workers.metrics import Metrics
from workers.observability import SentryContext
from workers.queue.actors import declare_actors
from workers.queue.broker import IDLE_WAIT_MS, MailopsBroker, build_broker
from workers.queue.middleware import Lifecycle, Liveness
from workers.settings import Settings
from workers.store.command_store import CommandStore
from workers.store.legacy_keys import upgrade
from workers.store.lua import load_scripts
from workers.store.redis_client import connect

logger = logging.getLogger(__name__)


class Runtime:
    """Everything one worker process runs; :meth:`start` and :meth:`stop` it."""

    def __init__(
        self,
        settings: Settings,
        *,
        threads: int = 8,
        queues: Sequence[str] = constants.QUEUES,
        ingest: bool = True,
        gates: Sequence[IngestGate] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.threads = threads
        self.queues = tuple(queues)
        self.ingest_enabled = ingest
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.client = connect(settings, max_connections=threads * 2 + 16)
        self.store = CommandStore(self.client, settings)
        self.limits = BackendLimits(self.client, settings, holder=self.worker_id)
        self.executor = Executor(
            build_backends(settings.backends),
            limits=self.limits,
            ordering=TargetGuard(self.client, settings.keys, max_skew_ms=settings.max_clock_skew_s * 1000,
                                 repeat_window_ms=settings.repeat_window_s * 1000),
            opener=_opener(settings),
        )
        self.liveness = Liveness(chores=[self.limits.release_parked])
        self.broker: MailopsBroker = build_broker(
            self.client, settings,
            [Lifecycle(self.store, self.worker_id, starter=self.executor,
                       observers=[*([metrics] if metrics else []), SentryContext()]), self.liveness],
            broker_id=self.worker_id,
        )
        declare_actors(self.broker, self.executor, self.store)
        for queue in constants.QUEUES:
            self.broker.declare_queue(queue)
        if gates is None:
            # Default gates, in order: routing, then authentication, then sealing of secrets.
            gates = [RoutingGate(self.client, settings), *security_gates(settings, self.client)]
        self.ingestor = Ingestor(self.client, settings, self.store, gates=gates, consumer=self.worker_id)
        self._worker: dramatiq.Worker | None = None
        self._ingest_thread: threading.Thread | None = None

    def start(self) -> Runtime:
        load_scripts(self.client)
        self.limits.publish_caps()
        upgrade(self.client, self.settings.keys, self.settings.backends, RouteMap(self.client, self.settings).resolve)
        self._worker = dramatiq.Worker(self.broker, worker_threads=self.threads, queues=set(self.queues), worker_timeout=100)
        self._worker.start()
        if self.ingest_enabled:
            self.ingestor.ensure_group()
            self._ingest_thread = threading.Thread(target=self.ingestor.run, name="mailops-ingest", daemon=True)
            self._ingest_thread.start()
        return self

    def stop(self, *, drain_timeout_ms: int = 30_000) -> None:
        """Stop taking work, let in-flight commands finish (or hand them back), release everything."""
        # Ingest and execution stop together: the drain time is the commands' own, not spent
        # waiting for the ingest thread's blocking read to return.
        self.ingestor.stop()
        if self._worker is not None:
            try:
                self.broker.wake_consumers()
            except redis.RedisError:
                logger.warning("could not wake the consumers (Redis unreachable); they notice the stop within %d ms",
                               IDLE_WAIT_MS)
            self._worker.stop(timeout=drain_timeout_ms)
            if any(thread.is_alive() for thread in self._worker.workers):
                logger.warning("drain timed out with commands still running; handing them back")
                self.broker.hand_back()
        if self._ingest_thread is not None:
            self._ingest_thread.join(timeout=5)
        self.executor.close()
        self.broker.close()

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _opener(settings: Settings) -> Callable[[Command], Command] | None:
    sealer = sealer_for(settings)
    return sealer.open_command if sealer is not None else None
