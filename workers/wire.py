"""Redis round trips without redis-py's per-call bookkeeping: several commands in one write on
the calling thread's own connection, and their replies read back in order.

The worker makes two such round trips per command (its first steps, then the terminal steps;
see :mod:`workers.lua`). Through a redis-py pipeline each one also built a pipeline object and a
command stack, took a connection from the pool and gave it back (a lock, a readiness probe of the
socket, connection-count bookkeeping, an event), and encoded every argument through a chunking
encoder; measured here that was about half of the round trip's CPU.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from typing import Any

import redis

_own = threading.local()


def exchange(client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Write ``commands`` in one send and read every reply; an error reply takes its command's
    place in the list.

    The connection is the calling thread's own (made like the client pool's, so Sentinel and
    TLS settings apply), so no other thread can have left a reply unread on it; after any
    failure it is closed and the next call reconnects. A dropped connection is retried the way
    redis-py retries its own pipelines (the connection's retry policy, reconnecting in between).
    """
    connection = own_connection(client.connection_pool)
    payload = [packed(commands)]

    def send_and_read() -> list[Any]:
        connection.send_packed_command(payload)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies

    try:
        result: list[Any] = connection.retry.call_with_retry(send_and_read, lambda _error: connection.disconnect())
        return result
    except BaseException:
        connection.disconnect()
        raise


def own_connection(pool: redis.ConnectionPool) -> Any:
    """The calling thread's connection to ``pool``'s server, opened on first use (and again in a
    forked child). It is dropped with the thread, or with the pool."""
    connections: weakref.WeakKeyDictionary[redis.ConnectionPool, Any] | None = getattr(_own, "connections", None)
    if connections is None:
        connections = _own.connections = weakref.WeakKeyDictionary()
    connection = connections.get(pool)
    if connection is None or connection.pid != os.getpid():
        connection = pool.connection_class(**pool.connection_kwargs)
        connections[pool] = connection
    return connection


def packed(commands: Sequence[tuple[Any, ...]]) -> bytes:
    """``commands`` in the Redis protocol (RESP), each argument encoded as redis-py's encoder
    does: bytes as they are, text as UTF-8, numbers by ``repr``; anything else is refused."""
    parts: list[bytes] = []
    add = parts.append
    for command in commands:
        add(b"*%d\r\n" % len(command))
        for arg in command:
            kind = type(arg)
            if kind is str:
                data = arg.encode()
            elif kind is bytes:
                data = arg
            else:
                data = _encoded(arg)
            add(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _encoded(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value).encode()
    raise redis.DataError(f"Invalid input of type: '{type(value).__name__}'. Convert to bytes, str, int or float.")
