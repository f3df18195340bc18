"""The keep-alive pool under the panel transport, against a real loopback HTTP/1.1 server."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.conftest import loopback_http
from workers.backends.connections import AnswerTooLarge, ConnectFailed, ConnectionPool, PoolExhausted


@dataclass
class Seen:
    """What the server saw: the client port of every request, and the most requests at once."""

    ports: list[int] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen = Seen()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        seen = Handler.seen
        with seen.lock:
            seen.ports.append(self.client_address[1])
            seen.in_flight += 1
            seen.max_in_flight = max(seen.max_in_flight, seen.in_flight)
        try:
            if self.path == "/slow":
                time.sleep(0.3)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            if self.path == "/close":
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            # "/quiet-close": the answer says nothing, then the server drops the connection
            # (what a panel's idle keep-alive timeout does between two calls).
            self.close_connection = self.path in ("/close", "/quiet-close")
        finally:
            with seen.lock:
                seen.in_flight -= 1


@pytest.fixture
def server() -> Iterator[str]:
    Handler.seen = Seen()
    with loopback_http(Handler) as url:
        yield url


def pool_for(url: str, size: int = 4, **kwargs: float) -> ConnectionPool:
    return ConnectionPool(url, size=size, connect_timeout=2.0, read_timeout=5.0, **kwargs)


def test_sequential_calls_reuse_one_keep_alive_connection(server: str) -> None:
    pool = pool_for(server)
    answers = [pool.request("POST", "/echo", headers={}, body=f"call {i}".encode()) for i in range(5)]
    pool.close()
    assert [a.content for a in answers] == [f"call {i}".encode() for i in range(5)]
    assert len(set(Handler.seen.ports)) == 1


def test_a_connection_the_panel_closed_while_idle_is_replaced_before_the_next_call(server: str) -> None:
    # Given a connection the server dropped after answering, without saying so
    pool = pool_for(server)
    pool.request("POST", "/quiet-close", headers={}, body=b"first")
    time.sleep(0.05)
    # When the next call is made, then it goes out on a new connection and gets its answer
    answer = pool.request("POST", "/echo", headers={}, body=b"second")
    pool.close()
    assert answer.content == b"second"
    assert len(set(Handler.seen.ports)) == 2


def test_an_answer_that_says_close_is_not_reused(server: str) -> None:
    pool = pool_for(server)
    for _ in range(3):
        assert pool.request("POST", "/close", headers={}, body=b"x").status_code == 200
    pool.close()
    assert len(set(Handler.seen.ports)) == 3


def test_no_more_than_size_requests_are_in_flight_at_once(server: str) -> None:
    # Given a pool of 3 and 8 threads calling a slow endpoint
    pool = pool_for(server, size=3)
    threads = [threading.Thread(target=pool.request, args=("POST", "/slow"), kwargs={"headers": {}, "body": b""})
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    pool.close()
    # Then every call was served, never more than 3 at a time, on at most 3 connections
    assert len(Handler.seen.ports) == 8
    assert Handler.seen.max_in_flight == 3
    assert len(set(Handler.seen.ports)) <= 3


def test_waiting_longer_than_the_wait_timeout_for_a_connection_fails_without_sending(server: str) -> None:
    pool = pool_for(server, size=1, wait_timeout=0.05)
    busy = threading.Thread(target=pool.request, args=("POST", "/slow"), kwargs={"headers": {}, "body": b""})
    busy.start()
    deadline = time.monotonic() + 10
    while Handler.seen.in_flight < 1:  # the only connection is in use
        assert time.monotonic() < deadline
        time.sleep(0.005)
    with pytest.raises(PoolExhausted):
        pool.request("POST", "/echo", headers={}, body=b"late")
    busy.join()
    pool.close()
    assert len(Handler.seen.ports) == 1


def test_a_refused_connection_is_a_connect_failure() -> None:
    pool = pool_for("http://127.0.0.1:9")
    with pytest.raises(ConnectFailed, match="ConnectionRefusedError"):
        pool.request("POST", "/echo", headers={}, body=b"")


class Trickle(http.server.BaseHTTPRequestHandler):
    """A panel that trickles one byte a second: of its body (``/body``) or of its status line
    and headers (``/head``)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        if self.path == "/body":
            self.wfile.write(head)
            head = b""
        try:
            for byte in [head[i:i + 1] for i in range(len(head))] + [b"x"] * 1000:
                self.wfile.write(byte)
                self.wfile.flush()
                time.sleep(1.0)
        except OSError:  # the client gave up
            pass


class Huge(http.server.BaseHTTPRequestHandler):
    """A panel answering 200 MB, made lazily as it is sent; ``/chunked`` without a length."""

    protocol_version = "HTTP/1.1"
    sent: list[int] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        total, block = 200 * 1000 * 1000, b'{"data": "' + b"x" * 65_000
        chunked = self.path == "/chunked"
        self.send_response(200)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(total))
        self.end_headers()
        sent = 0
        try:
            while sent < total:
                piece = block[: total - sent]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                sent += len(piece)
        except OSError:
            pass
        finally:
            Huge.sent.append(sent)


@pytest.mark.parametrize("trickled", ["body", "head"])
def test_a_panel_trickling_a_byte_a_second_is_cut_off_at_the_call_deadline(trickled: str) -> None:
    # Given a pool with a 2 s read timeout and a 5 s deadline, and a panel that sends a byte a second
    with loopback_http(Trickle) as url:
        pool = ConnectionPool(url, size=2, connect_timeout=2.0, read_timeout=2.0, deadline=5.0)
        # When a call is made
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            pool.request("POST", f"/{trickled}", headers={}, body=b"call")
        took = time.monotonic() - started
        pool.close()
    # Then it ended at its deadline (every read was within the read timeout; the whole was not)
    assert 4.5 <= took <= 5.5


@pytest.mark.parametrize("path", ["/sized", "/chunked"])
def test_reading_a_200_mb_answer_stops_at_the_size_cap(path: str) -> None:
    # Given a panel that answers 200 MB, with and without announcing its length
    Huge.sent = []
    with loopback_http(Huge) as url:
        pool = ConnectionPool(url, size=1, connect_timeout=2.0, read_timeout=5.0, max_answer_bytes=1024 * 1024)
        # When a call is made, then it fails as too large, and the panel could not send it all
        with pytest.raises(AnswerTooLarge):
            pool.request("POST", path, headers={}, body=b"call")
        pool.close()
        wait_for(lambda: bool(Huge.sent))
    assert Huge.sent[0] < 200 * 1000 * 1000


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.01)
