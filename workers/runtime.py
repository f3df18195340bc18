"""One worker process: the Dramatiq worker, the ingest consumer and the liveness thread."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Sequence

import dramatiq

from workers import constants
from workers.actors import declare_actors
from workers.backends.registry import build_backends
from workers.broker import MailopsBroker, build_broker
from workers.command_store import CommandStore
from workers.executor import Executor
from workers.ingest import IngestGate, Ingestor
from workers.middleware import Lifecycle, Liveness
from workers.redis_client import connect
from workers.settings import Settings

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
        gates: Sequence[IngestGate] = (),
    ) -> None:
        self.settings = settings
        self.threads = threads
        self.queues = tuple(queues)
        self.ingest_enabled = ingest
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.client = connect(settings, max_connections=threads * 2 + 16)
        self.store = CommandStore(self.client, settings)
        self.executor = Executor(build_backends(settings.backends))
        self.liveness = Liveness()
        self.broker: MailopsBroker = build_broker(
            self.client, settings, [Lifecycle(self.store, self.worker_id), self.liveness]
        )
        declare_actors(self.broker, self.executor)
        for queue in constants.QUEUES:
            self.broker.declare_queue(queue)
        self.ingestor = Ingestor(self.client, settings, self.store, gates=gates, consumer=self.worker_id)
        self._worker: dramatiq.Worker | None = None
        self._ingest_thread: threading.Thread | None = None

    def start(self) -> Runtime:
        self._worker = dramatiq.Worker(self.broker, worker_threads=self.threads, queues=set(self.queues), worker_timeout=100)
        self._worker.start()
        if self.ingest_enabled:
            self.ingestor.ensure_group()
            self._ingest_thread = threading.Thread(target=self.ingestor.run, name="mailops-ingest", daemon=True)
            self._ingest_thread.start()
        return self

    def stop(self, *, drain_timeout_ms: int = 30_000) -> None:
        """Stop taking work, let in-flight commands finish (or hand them back), release everything."""
        self.ingestor.stop()
        if self._ingest_thread is not None:
            self._ingest_thread.join(timeout=5)
        if self._worker is not None:
            self._worker.stop(timeout=drain_timeout_ms)
        self.executor.close()
        self.broker.close()

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
