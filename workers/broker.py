"""The Dramatiq broker mailops runs on: Dramatiq's Redis broker with deterministic recovery."""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from dramatiq.middleware import Middleware

from workers.settings import Settings


def _script(name: str) -> str:
    return resources.files("workers").joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")


class MailopsBroker(RedisBroker):
    """Dramatiq's Redis broker, plus :meth:`heartbeat_and_reap` run on a fixed period."""

    _reap: Any = None

    def heartbeat_and_reap(self) -> int:
        """Refresh this process's heartbeat and requeue the messages of dead processes, now.

        Dead processes' unacknowledged messages go back to the *head* of their queues, so a
        crashed command runs again about ``heartbeat_timeout`` + one period after the crash,
        not after the backlog. Returns how many messages were requeued.
        """
        if self._reap is None:
            self._reap = self.client.register_script(_script("reap"))
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


def build_broker(client: redis.Redis, settings: Settings, middleware: Sequence[Middleware]) -> MailopsBroker:
    broker: Any = MailopsBroker(  # type: ignore[no-untyped-call]
        client=client,
        namespace=settings.keys.dramatiq_namespace,
        middleware=list(middleware),
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        dead_message_ttl=7 * 24 * 3600 * 1000,
    )
    return broker  # type: ignore[no-any-return]
