"""The keep-alive pool under the panel transport, against a real loopback HTTP/1.1 server."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.conftest import loopback_http
from workers.backends.connections import ConnectFailed, ConnectionPool, PoolExhausted


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
