"""The Dramatiq broker mailops runs on: Dramatiq's Redis broker with deterministic recovery,
consumers that wake when work arrives, and acknowledgements folded into the terminal step."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff, current_millis
from dramatiq.errors import ConnectionClosed
from dramatiq.message import Message
from dramatiq.middleware import Middleware

from workers.lua import lua_script
from workers.settings import Settings

#: Message option set once the terminal step (``finish.lua``) has acknowledged the message itself.
ACKED_OPTION = "mailops_acked"


def doorbell_key(namespace: str, queue: str) -> str:
    """List that ingest pushes a token to for each command it enqueues on ``queue``."""
    return f"{namespace}:{queue}.bell"


def ack_keys(namespace: str, broker_id: str, queue: str) -> tuple[str, str]:
    """Dramatiq's ack set of this process for ``queue`` and the queue's message hash."""
    return f"{namespace}:__acks__.{broker_id}.{queue}", f"{namespace}:{queue}.msgs"


class WakingConsumer(_RedisConsumer):
    """Dramatiq's Redis consumer, with two changes.

    * An idle consumer waits on its queue's doorbell (BLPOP) instead of sleeping, so a command is
      fetched as soon as ingest enqueues it, not after a poll interval of up to ``worker_timeout``.
    * A message the terminal step already acknowledged (:data:`ACKED_OPTION`) costs no second
      round trip.
    * When Redis drops the connection, the messages it had fetched but not handed out yet are
      not forgotten: they sit in this live process's ack set, where no reaper looks, so the
      broker requeues them once Redis answers again (:meth:`MailopsBroker.strand`).
    """

    def ack(self, message: MessageProxy) -> None:
        if message.options.get(ACKED_OPTION):
            self.queued_message_ids.discard(message.message_id)
            return
        super().ack(message)  # type: ignore[no-untyped-call]

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if self.message_cache:
                    data = self.message_cache.pop(0)
                    if data is None:
                        continue
                    self.misses = 0
                    message = Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
                messages = []
                if self.outstanding_message_count < self.prefetch:
                    self.message_cache = messages = self.broker.do_fetch(
                        self.queue_name, self.prefetch - self.outstanding_message_count
                    )
                if not messages:
                    self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
                    self._wait(backoff_ms, wake=self.outstanding_message_count < self.prefetch)
                    return None
        except redis.ConnectionError as e:
            self._strand()
            raise ConnectionClosed(e) from None  # type: ignore[no-untyped-call]

    def _strand(self) -> None:
        ids = [str(Message.decode(data).options["redis_message_id"]) for data in self.message_cache if data]
        self.message_cache = []
        if ids:
            self.broker.strand(self.queue_name, ids)

    def _wait(self, backoff_ms: int, *, wake: bool) -> None:
        # Delay queues hold messages until their ETA: sleep the backoff.
        if self.queue_name.endswith(".DQ"):
            time.sleep(backoff_ms / 1000)
            return
        # A full prefetch cannot take more until a worker thread finishes one; look again soon
        # (no Redis call until then) rather than after a backoff of up to worker_timeout.
        if not wake:
            time.sleep(min(backoff_ms, 5) / 1000)
            return
        self.broker.client.blpop([doorbell_key(self.broker.namespace, self.queue_name)], timeout=max(backoff_ms, 10) / 1000)


class MailopsBroker(RedisBroker):
    """Dramatiq's Redis broker, plus :meth:`heartbeat_and_reap` run on a fixed period."""

    _reap: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._stranded: list[tuple[str, list[str]]] = []
        self._stranded_lock = threading.Lock()

    @property
    def consumer_class(self) -> type[WakingConsumer]:
        return WakingConsumer

    def strand(self, queue: str, redis_message_ids: list[str]) -> None:
        """Note messages this process fetched and will not run (its consumer lost Redis); the next
        :meth:`heartbeat_and_reap` puts them back on their queue."""
        with self._stranded_lock:
            self._stranded.append((queue, redis_message_ids))

    def requeue_stranded(self) -> int:
        """Put stranded messages back on their queues (kept for the next call if Redis is still away)."""
        with self._stranded_lock:
            stranded, self._stranded = self._stranded, []
        done = 0
        try:
            while stranded:
                queue, ids = stranded[0]
                self.do_requeue(queue, *ids)
                stranded.pop(0)
                done += len(ids)
        finally:
            if stranded:
                with self._stranded_lock:
                    self._stranded[:0] = stranded
        return done

    def heartbeat_and_reap(self) -> int:
        """Refresh this process's heartbeat and requeue the messages of dead processes, now.

        Dead processes' unacknowledged messages go back to the *head* of their queues, so a
        crashed command runs again about ``heartbeat_timeout`` + one period after the crash,
        not after the backlog. Returns how many messages were requeued.
        """
        self.requeue_stranded()
        if self._reap is None:
            self._reap = self.client.register_script(lua_script("reap"))
        queues = sorted({q for q in self.queues if not q.endswith(".DQ")})
        requeued = self._reap(
            keys=[self.namespace],
            args=[current_millis(), self.broker_id, self.heartbeat_timeout, self.dead_message_ttl, *queues],
        )
        return int(requeued)

    def hand_back(self) -> None:
        """Mark this process dead now, so the next reap (within a second) requeues whatever it
        still holds; used when a drain ends with commands still running."""
        self.client.zadd(f"{self.namespace}:__heartbeats__", {self.broker_id: 0})

    def _should_do_maintenance(self, command: str) -> int:
        # Maintenance runs deterministically from heartbeat_and_reap; never at random.
        return 0


def build_broker(client: redis.Redis, settings: Settings, middleware: Sequence[Middleware], *,
                 broker_id: str | None = None) -> MailopsBroker:
    """The broker of one worker process; ``broker_id`` (its worker id) names its heartbeat and
    ack sets, so ``mailops worker --check`` can find this host's processes."""
    broker: Any = MailopsBroker(
        client=client,
        namespace=settings.keys.dramatiq_namespace,
        middleware=list(middleware),
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        dead_message_ttl=7 * 24 * 3600 * 1000,
    )
    if broker_id is not None:
        broker.broker_id = broker_id
    return broker  # type: ignore[no-any-return]
