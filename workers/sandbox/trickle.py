"""A panel that trickles: it answers every call with headers, then one byte a second.

The misbehaving panel of issue 22: a read timeout applies per ``recv``, so only a deadline for the
whole answer ends such a call. It records each call's start and end (when the client hung up) and
the most calls it had in progress at once. Used by the deadline test and by the bench's trickle
phase.
"""

from __future__ import annotations

import http.server
import select
import socket
import threading
import time
from typing import Any

#: Bytes the answer announces (it never finishes: one a second).
ANSWER_BYTES = 1000


class TricklingPanel:
    """A trickling HTTP server on loopback (``with`` starts and stops it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.calls: list[tuple[float, float]] = []
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> TricklingPanel:
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def trickle(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        started = time.monotonic()
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                b"Content-Length: %d\r\n\r\n" % ANSWER_BYTES)
            for _ in range(ANSWER_BYTES):
                handler.wfile.write(b" ")
                handler.wfile.flush()
                # a second between bytes, unless the client hangs up meanwhile (seen at once)
                readable, _, _ = select.select([handler.connection], [], [], 1.0)
                if readable and not handler.connection.recv(1, socket.MSG_PEEK):
                    break
        except OSError:
            pass
        finally:
            with self.lock:
                self.now -= 1
                self.calls.append((started, time.monotonic()))
            handler.close_connection = True


def _handler_for(panel: TricklingPanel) -> Any:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            panel.trickle(self)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            panel.trickle(self)

    return Handler
