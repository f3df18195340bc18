"""Redis round trips without redis-py's per-call bookkeeping: several commands in one write on
the calling thread's own connection, and their replies read back in order.

The worker makes two such round trips per command (its first steps, then the terminal steps;
see :mod:`workers.store.lua`), and may write a step ahead of them (:func:`send_ahead`) whose reply is read
with the next round trip. Through a redis-py pipeline each one also built a pipeline object and a
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
from hiredis import pack_command

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
        _read_ahead(client.connection_pool, connection)
        return _replies(connection, len(commands))

    def reconnect(_error: Exception) -> None:
        _lose_ahead(client.connection_pool)
        connection.disconnect()

    try:
        result: list[Any] = connection.retry.call_with_retry(send_and_read, reconnect)
        return result
    except BaseException:
        reconnect(RuntimeError())
        raise


def execute(client: redis.Redis, *command: Any) -> Any:
    """One command through :func:`exchange`: its reply, or its error reply raised."""
    reply = exchange(client, [command])[0]
    if isinstance(reply, redis.ResponseError):
        raise reply
    return reply


class Ahead:
    """Commands written by :func:`send_ahead`; their replies are read with the thread's next
    :func:`exchange`, or by :meth:`replies`."""

    def __init__(self, pool: redis.ConnectionPool, count: int) -> None:
        self.pool = pool
        self.count = count
        self._replies: list[Any] | None = None
        #: The connection failed before the replies were read: the commands may or may not have run.
        self.lost = False

    def replies(self) -> list[Any] | None:
        """The replies (an error reply in its command's place), read now if no exchange has read
        them yet; ``None`` if they were lost with the connection."""
        if self._replies is None and not self.lost:
            connection = own_connection(self.pool)
            try:
                _read_ahead(self.pool, connection)
            except redis.ConnectionError:
                connection.disconnect()
        return self._replies


def send_ahead(client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> Ahead:
    """Write ``commands`` on the calling thread's connection now, without waiting for their
    replies: they run in Redis while the caller goes on, and their replies are read with the
    thread's next :func:`exchange` (which retries only its own commands: send ahead only what is
    safe to send again, or to leave undone, if the connection fails). Raises on a failed write."""
    pool = client.connection_pool
    connection = own_connection(pool)
    try:
        connection.send_packed_command([packed(commands)])
    except BaseException:
        _lose_ahead(pool)
        connection.disconnect()
        raise
    ahead = Ahead(pool, len(commands))
    _ahead_of(pool).append(ahead)
    return ahead


def _ahead_of(pool: redis.ConnectionPool) -> list[Ahead]:
    return _link(pool).ahead


def _read_ahead(pool: redis.ConnectionPool, connection: Any) -> None:
    """Read the replies of what this thread sent ahead on ``connection`` (they come first)."""
    pending = _ahead_of(pool)
    try:
        while pending:
            ahead = pending[0]
            ahead._replies = _replies(connection, ahead.count)
            pending.pop(0)
    except BaseException:
        _lose_ahead(pool)
        raise


def _lose_ahead(pool: redis.ConnectionPool) -> None:
    pending = _ahead_of(pool)
    for ahead in pending:
        ahead.lost = True
    pending.clear()


def _replies(connection: Any, count: int) -> list[Any]:
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(connection.read_response())
        except redis.ResponseError as exc:
            replies.append(exc)
    return replies


def own_connection(pool: redis.ConnectionPool) -> Any:
    """The calling thread's connection to ``pool``'s server, opened on first use (and again in a
    forked child). It is dropped with the thread, or with the pool."""
    link = _link(pool)
    if link.connection is None or link.connection.pid != os.getpid():
        link.connection = pool.connection_class(**pool.connection_kwargs)
        _lose_ahead(pool)
    return link.connection


class _Link:
    """One thread's connection to one pool's server, and what it sent ahead on it."""

    __slots__ = ("connection", "ahead")

    def __init__(self) -> None:
        self.connection: Any = None
        self.ahead: list[Ahead] = []


def _link(pool: redis.ConnectionPool) -> _Link:
    links: weakref.WeakKeyDictionary[redis.ConnectionPool, _Link] | None = getattr(_own, "links", None)
    if links is None:
        links = _own.links = weakref.WeakKeyDictionary()
    link = links.get(pool)
    if link is None:
        link = links[pool] = _Link()
    return link


def packed(commands: Sequence[tuple[Any, ...]]) -> bytes:
    """``commands`` in the Redis protocol (RESP), each argument encoded as redis-py's encoder
    does: bytes as they are, text as UTF-8, numbers in decimal; anything else is refused.

    hiredis packs them in C (redis-py packs its own commands with it too; a third of the time
    of packing in Python, see docs/performance.md). It takes exactly ``str``, ``bytes``, ``int``
    and ``float``: a command with a subclass (an enum member) is packed in Python instead."""
    parts: list[bytes] = []
    for command in commands:
        try:
            parts.append(pack_command(command))
        except TypeError:
            parts.append(_packed_in_python(command))
    return b"".join(parts)


def _packed_in_python(command: tuple[Any, ...]) -> bytes:
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        if isinstance(arg, bytes | memoryview):
            data = bytes(arg)
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(float(arg)).encode()
        else:
            raise redis.DataError(
                f"Invalid input of type: '{type(arg).__name__}'. Convert to bytes, str, int or float.")
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def as_text(value: Any) -> str:
    """A Redis reply (``bytes``) as text; any other value as ``str()`` gives it."""
    return value.decode() if isinstance(value, bytes) else str(value)
