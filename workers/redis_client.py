"""Redis connections: one place that turns the settings into a client."""

from __future__ import annotations

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from workers.errors import ConfigError
from workers.settings import Settings


def connect(settings: Settings, *, max_connections: int = 64) -> redis.Redis:
    """A pooled client with health checks and retries on connection loss."""
    if not settings.redis_url:
        raise ConfigError("no Redis URL: start an embedded Redis first (workers.embedded_redis)")
    return redis.Redis.from_url(
        settings.redis_url,
        max_connections=max_connections,
        health_check_interval=15,
        socket_connect_timeout=5,
        socket_keepalive=True,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
