"""Keep-alive HTTP/1.1 connections to one panel, at most ``size`` in use at a time.

Built on the standard library's :mod:`http.client`: the panel call is most of a worker's CPU per
command, and ``http.client`` spends about a quarter of what an ``httpx.Client`` call does on the
same request (``docs/performance.md``). This module only moves bytes; what its errors mean for a
command is decided in :mod:`workers.backends.transport`.

Errors keep their standard types, split by how far the call got: :class:`ConnectFailed` wraps
whatever stopped a new connection (nothing was sent), anything after that (``OSError``,
``TimeoutError``, :class:`http.client.HTTPException`) propagates as it is.
"""

from __future__ import annotations

import collections
import http.client
import select
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit


class ConnectFailed(Exception):
    """A new connection could not be opened (refused, unresolvable, TLS, timeout): nothing was sent."""


class PoolExhausted(Exception):
    """Every connection stayed in use for the whole wait: nothing was sent."""


@dataclass(frozen=True)
class Answer:
    """A panel's whole answer: status, headers (names in lower case) and body."""

    status_code: int
    headers: dict[str, str]
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class ConnectionPool:
    """Reuses idle connections (newest first) and opens new ones up to ``size``."""

    def __init__(self, url: str, *, size: int, connect_timeout: float, read_timeout: float,
                 ssl_context: ssl.SSLContext | None = None, wait_timeout: float | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.wait_timeout = read_timeout if wait_timeout is None else wait_timeout
        self.ssl_context = ssl_context if ssl_context is not None else (
            ssl.create_default_context() if parts.scheme == "https" else None)
        self._slots = threading.BoundedSemaphore(size)
        self._idle: collections.deque[http.client.HTTPConnection] = collections.deque()
        self._lock = threading.Lock()

    def request(self, method: str, target: str, *, headers: dict[str, str], body: bytes | None = None) -> Answer:
        """Send one request (``target`` is the path and query under the base URL) and read the answer."""
        if not self._slots.acquire(timeout=self.wait_timeout):
            raise PoolExhausted(f"no free connection within {self.wait_timeout:g} s")
        try:
            connection = self._checkout()
            try:
                connection.request(method, self.base_path + target, body=body, headers=headers)
                response = connection.getresponse()
                content = response.read()
            except BaseException:
                connection.close()
                raise
            answer = Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, content)
            if response.will_close:
                connection.close()
            else:
                with self._lock:
                    self._idle.append(connection)
            return answer
        finally:
            self._slots.release()

    def _checkout(self) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._connect()
            if _still_open(connection):
                return connection
            connection.close()

    def _connect(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection
        if self.scheme == "https":
            connection = http.client.HTTPSConnection(self.host, self.port, timeout=self.connect_timeout,
                                                     context=self.ssl_context)
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
        try:
            connection.connect()
        except (OSError, ssl.SSLError) as exc:
            connection.close()
            raise ConnectFailed(f"{type(exc).__name__}: {exc}") from exc
        assert connection.sock is not None
        connection.sock.settimeout(self.read_timeout)
        return connection

    def close(self) -> None:
        with self._lock:
            idle, self._idle = list(self._idle), collections.deque()
        for connection in idle:
            connection.close()


def _still_open(connection: http.client.HTTPConnection) -> bool:
    """An idle keep-alive connection is reusable only if the server has not closed it (or sent
    something unasked): a readable idle socket means one of the two."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False
