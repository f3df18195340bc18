"""Redis connections: one place that turns the settings into a client.

Two forms of :attr:`Settings.redis_url` are understood:

``redis://[user:password@]host:port/db`` (also ``rediss://``, ``unix://``)
    One Redis server.
``redis+sentinel://[user:password@]host:port,host:port/master-name/db``
    A Sentinel-managed master. The client asks the Sentinels for the current master on every
    new connection and drops its connections when the master it talks to turns into a replica,
    so a failover costs a few retried calls, not a restart. The password is the master's; the
    Sentinels are contacted without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from workers.errors import ConfigError
from workers.settings import Settings

#: URL scheme of a Sentinel-managed Redis.
SENTINEL_SCHEME = "redis+sentinel"


@dataclass(frozen=True)
class SentinelAddress:
    """Where the Sentinels are and which master they watch (parsed from a ``redis+sentinel://`` URL)."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None


def parse_sentinel_url(url: str) -> SentinelAddress:
    """Parse ``redis+sentinel://[user:password@]host:port,host:port/master/db``."""
    prefix = f"{SENTINEL_SCHEME}://"
    if not url.startswith(prefix):
        raise ConfigError(f"not a {SENTINEL_SCHEME}:// URL")
    netloc, _, path = url[len(prefix):].partition("/")
    username = password = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, _, pw = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(pw) or None
    sentinels = tuple(_host_port(part) for part in netloc.split(",") if part.strip())
    parts = [p for p in path.split("/") if p]
    if not sentinels:
        raise ConfigError(f"{SENTINEL_SCHEME} URL names no Sentinel (host:port,host:port)")
    if not parts or len(parts) > 2:
        raise ConfigError(f"{SENTINEL_SCHEME} URL must end in /master-name or /master-name/db")
    try:
        db = int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise ConfigError(f"{SENTINEL_SCHEME} URL: database {parts[1]!r} is not a number") from None
    return SentinelAddress(sentinels, unquote(parts[0]), db, username, password)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"Sentinel address {text.strip()!r} is not host:port")
    return host.strip("[]"), int(port)


class _MasterFollowingConnection(SentinelManagedConnection):
    """A Sentinel-managed connection that asks for the current master on every reconnect.

    redis-py 8 reconnects a dropped connection through ``connect_check_health``, which skips
    Sentinel and dials the old address again (redis/redis-py#3874, open): after a failover a
    pooled connection would keep reaching the demoted master and retry into READONLY errors.
    """

    def connect_check_health(self, check_health: bool = True, retry_socket_connect: bool = True) -> None:
        if not self._sock and self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        super().connect_check_health(check_health=check_health, retry_socket_connect=retry_socket_connect)


def connect(settings: Settings, *, max_connections: int = 64) -> redis.Redis:
    """A pooled client with health checks and retries on connection loss (following failovers under Sentinel)."""
    if not settings.redis_url:
        raise ConfigError("no Redis URL: start an embedded Redis first (workers.store.embedded_redis)")
    common: dict[str, Any] = {
        "health_check_interval": 15,
        "socket_connect_timeout": 5,
        "socket_keepalive": True,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
    }
    if settings.redis_url.startswith(f"{SENTINEL_SCHEME}://"):
        address = parse_sentinel_url(settings.redis_url)
        sentinel = Sentinel(
            list(address.sentinels), sentinel_kwargs={"socket_timeout": 2, "socket_connect_timeout": 2}
        )
        client: redis.Redis = sentinel.master_for(
            address.master, db=address.db, username=address.username, password=address.password,
            max_connections=max_connections, connection_class=_MasterFollowingConnection,
            # A failover takes seconds: retry long enough (about 5 s) to reach the new master.
            **{**common, "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=8)},
        )
        return client
    return redis.Redis.from_url(settings.redis_url, max_connections=max_connections, **common)
