"""Keep-alive HTTP/1.1 connections to one panel, at most ``size`` in use at a time.

Built on the standard library's :mod:`http.client`: the panel call is most of a worker's CPU per
command, and ``http.client`` spends about a quarter of what an ``httpx.Client`` call does on the
same request (``docs/performance.md``). This module only moves bytes; what its errors mean for a
command is decided in :mod:`workers.backends.transport`.

Errors keep their standard types, split by how far the call got: :class:`ConnectFailed` wraps
whatever stopped a new connection (nothing was sent), anything after that (``OSError``,
``TimeoutError``, :class:`http.client.HTTPException`) propagates as it is.

Two bounds hold for every call, whatever the panel does:

* a **deadline** for the whole call (waiting for a connection, connecting, sending, and reading
  the status, headers and body): every socket wait is given the time left, never more than
  ``read_timeout``, so a panel trickling a byte a second ends the call at the deadline
  (``TimeoutError``) instead of resetting a per-read timeout forever;
* a **maximum answer size**: the body is read in chunks and reading stops at ``max_answer_bytes``
  (:class:`AnswerTooLarge`); the connection is then dropped, never reused.
"""

from __future__ import annotations

import collections
import functools
import http.client
import io
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

#: Default cap on one answer's body (1 MiB): panel answers to mail commands are a few KiB.
DEFAULT_MAX_ANSWER_BYTES = 1024 * 1024
#: Bytes read from the socket at a time while reading a body.
CHUNK_BYTES = 64 * 1024


class ConnectFailed(Exception):
    """A new connection could not be opened (refused, unresolvable, TLS, timeout): nothing was sent."""


class PoolExhausted(Exception):
    """Every connection stayed in use for the whole wait: nothing was sent."""


class AnswerTooLarge(Exception):
    """The answer's body went past the pool's ``max_answer_bytes``; reading stopped there."""


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
                 ssl_context: ssl.SSLContext | None = None, wait_timeout: float | None = None,
                 deadline: float | None = None, max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES) -> None:
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
        #: Longest one call may take, from asking for a connection to the answer's last byte.
        self.deadline = connect_timeout + read_timeout if deadline is None else deadline
        self.max_answer_bytes = max_answer_bytes
        self.ssl_context = ssl_context if ssl_context is not None else (
            ssl.create_default_context() if parts.scheme == "https" else None)
        self._slots = threading.BoundedSemaphore(size)
        self._idle: collections.deque[http.client.HTTPConnection] = collections.deque()
        self._lock = threading.Lock()

    def request(self, method: str, target: str, *, headers: dict[str, str], body: bytes | None = None) -> Answer:
        """Send one request (``target`` is the path and query under the base URL) and read the
        answer, all within :attr:`deadline` (``TimeoutError`` when it passes)."""
        ends = time.monotonic() + self.deadline
        if not self._slots.acquire(timeout=max(0.0, min(self.wait_timeout, self.deadline))):
            raise PoolExhausted(f"no free connection within {min(self.wait_timeout, self.deadline):g} s")
        try:
            connection = self._checkout(ends)
            try:
                timer = _Timer(connection, ends, self.read_timeout)
                timer.arm()
                connection.response_class = functools.partial(_TimedResponse, timer=timer)  # type: ignore[assignment]
                connection.request(method, self.base_path + target, body=body, headers=headers)
                response = connection.getresponse()
                content = _read_capped(response, self.max_answer_bytes)
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

    def _checkout(self, ends: float) -> http.client.HTTPConnection:
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._connect(ends)
            if _still_open(connection):
                return connection
            connection.close()

    def _connect(self, ends: float) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection
        timeout = min(self.connect_timeout, ends - time.monotonic())
        if timeout <= 0:
            raise ConnectFailed("no time left to connect before the call's deadline")
        if self.scheme == "https":
            connection = http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                                     context=self.ssl_context)
        else:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
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


class _Timer:
    """The time one call has left: before every socket wait the socket's timeout is set to it
    (at most ``read_timeout``); once it is spent the wait fails with ``TimeoutError``."""

    def __init__(self, connection: http.client.HTTPConnection, ends: float, read_timeout: float) -> None:
        self.connection = connection
        self.ends = ends
        self.read_timeout = read_timeout

    def arm(self, sock: socket.socket | None = None) -> None:
        left = self.ends - time.monotonic()
        if left <= 0:
            raise TimeoutError("the call's deadline passed")
        sock = sock or self.connection.sock
        if sock is not None:
            sock.settimeout(min(self.read_timeout, left))


class _DeadlineReader(io.RawIOBase):
    """The socket's raw stream, each of whose reads is bounded by the call's :class:`_Timer`."""

    def __init__(self, raw: Any, sock: socket.socket, timer: _Timer) -> None:
        super().__init__()
        self.raw = raw
        self.sock = sock
        self.timer = timer

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.timer.arm(self.sock)
        count: int = self.raw.readinto(buffer)
        return count

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
        super().close()


class _TimedResponse(http.client.HTTPResponse):
    """``http.client``'s response, reading the status line, headers and body through a
    :class:`_DeadlineReader` (``http.client`` reads them through ``sock.makefile``, whose
    timeout applies to each read alone)."""

    def __init__(self, sock: socket.socket, *args: Any, timer: _Timer, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        # (the makefile's stream keeps the socket open after the connection lets go of it)
        self.fp = io.BufferedReader(_DeadlineReader(self.fp.detach(), sock, timer), CHUNK_BYTES)


def _read_capped(response: http.client.HTTPResponse, cap: int) -> bytes:
    """The body, read in chunks; :class:`AnswerTooLarge` as soon as it passes ``cap`` bytes."""
    declared = response.length
    if declared is not None and declared > cap:
        raise AnswerTooLarge(f"the answer declares {declared} bytes; at most {cap} are read")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = response.read(min(CHUNK_BYTES, cap + 1 - size))
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > cap:
            raise AnswerTooLarge(f"the answer is longer than {cap} bytes; reading stopped there")
        chunks.append(chunk)
