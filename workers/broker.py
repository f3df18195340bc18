"""The Dramatiq broker mailops runs on: Dramatiq's Redis broker with deterministic recovery."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis, dq_name
from dramatiq.middleware import Middleware

from workers.settings import Settings


class MailopsBroker(RedisBroker):
    """Dramatiq's Redis broker, plus :meth:`heartbeat_and_reap` run on a fixed period."""

    def heartbeat_and_reap(self) -> None:
        """Refresh this process's heartbeat and requeue the messages of dead processes, now."""
        dispatch = self.scripts["dispatch"]
        for queue in sorted(self.queues):
            for name in (queue, dq_name(queue)):
                dispatch(
                    args=[
                        "qsize", current_millis(), name, self.broker_id, self.heartbeat_timeout,
                        self.dead_message_ttl, 1, self._max_unpack_size(),  # type: ignore[no-untyped-call]
                    ],
                    keys=[self.namespace],
                )

    def hand_back(self) -> None:
        """Mark this process dead now, so the next reap (within a second) requeues whatever it
        still holds; used when a drain ends with commands still running."""
        self.client.zadd(f"{self.namespace}:__heartbeats__", {self.broker_id: 0})

    def _should_do_maintenance(self, command: str) -> int:
        # Maintenance runs deterministically from heartbeat_and_reap; never at random.
        return 0


def build_broker(client: redis.Redis, settings: Settings, middleware: Sequence[Middleware]) -> MailopsBroker:
    broker: Any = MailopsBroker(  # type: ignore[no-untyped-call]
        client=client,
        namespace=settings.keys.dramatiq_namespace,
        middleware=list(middleware),
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        dead_message_ttl=7 * 24 * 3600 * 1000,
    )
    return broker  # type: ignore[no-any-return]
