"""A trickling panel, run by a worker: every call ends by its backend's deadline, and the
backend's concurrency cap holds fleet-wide (its leases outlive its calls)."""

from __future__ import annotations

import http.server
import select
import socket
import threading
import time
from types import SimpleNamespace

import redis

from tests.clock import ISSUED
from tests.conftest import add_command, loopback_http, read_events


class TricklingPanel(http.server.BaseHTTPRequestHandler):
    """Answers every call with headers, then a byte a second; records each call's start and
    end (when the client hung up) and the most calls in progress at once."""

    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    now = 0
    most = 0
    calls: list[tuple[float, float]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.trickle()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.trickle()

    def trickle(self) -> None:
        cls, started = TricklingPanel, time.monotonic()
        with cls.lock:
            cls.now += 1
            cls.most = max(cls.most, cls.now)
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(1000):
                self.wfile.write(b" ")
                self.wfile.flush()
                # a second between bytes, unless the client hangs up meanwhile (seen at once)
                readable, _, _ = select.select([self.connection], [], [], 1.0)
                if readable and not self.connection.recv(1, socket.MSG_PEEK):
                    break
        except OSError:
            pass
        finally:
            with cls.lock:
                cls.now -= 1
                cls.calls.append((started, time.monotonic()))
            self.close_connection = True


def test_a_trickling_panel_holds_no_call_beyond_its_deadline_and_no_more_threads_than_its_cap(
    redis_client: redis.Redis, settings_for, runtime_for,
) -> None:
    # Given a backend capped at 2 calls whose panel trickles a byte a second (2 s read timeout,
    # 5 s deadline), and a worker with 8 threads
    TricklingPanel.calls, TricklingPanel.most, TricklingPanel.now = [], 0, 0
    with loopback_http(TricklingPanel) as url:
        panel = SimpleNamespace(url=url, app=SimpleNamespace(token="slow-token"))
        settings = settings_for({"slow": ("whm", panel)},
                                slow={"read_timeout": 2.0, "call_deadline": 5.0, "max_concurrency": 2})
        runtime = runtime_for(settings)
        # When 8 commands for it arrive, and the worker works them for 14 s
        for i in range(8):
            add_command(redis_client, {"id": f"t-{i}", "command": "suspend_outgoing", "backend": "slow",
                                       "args": {"user": f"u{i}"}, "producer": "billing", "issued_at": ISSUED})
        leases = settings.keys.backend_inflight("slow")
        most_leases, until = 0, time.monotonic() + 14
        while time.monotonic() < until:
            most_leases = max(most_leases, int(redis_client.zcard(leases)))
            time.sleep(0.02)
        runtime.stop(drain_timeout_ms=0)
    # Then the panel never had more than 2 calls at once, nor the backend more than 2 leases
    assert TricklingPanel.most <= 2 and most_leases <= 2
    # And every call ended by the 5 s deadline, as the panel saw it
    assert TricklingPanel.calls
    assert max(end - start for start, end in TricklingPanel.calls) <= 5.0 + 0.5
    # And the worker reported them as timeouts to retry, not as answers
    kinds = {e.error.kind for e in read_events(redis_client) if e.status == "retrying" and e.error is not None}
    assert kinds == {"timeout"}
