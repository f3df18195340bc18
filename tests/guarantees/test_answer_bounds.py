"""A panel answering 200 MB, run by a real worker process: the worker reads no more than the
backend's answer cap, its memory stays small, and nothing it publishes or stores is large."""

from __future__ import annotations

import http.server
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs

import orjson
import pytest
import redis

from tests.conftest import loopback_http, read_events
from tests.guarantees.processes import WorkerProcess, add_many, suspend, worker_env
from workers.store.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.slow

HUGE = 200 * 1000 * 1000


class HugePanel(http.server.BaseHTTPRequestHandler):
    """WHM-shaped answers: for account ``huge`` 200 MB, made as it is sent; for ``bigdata`` a
    valid 500 KB success whose ``data`` mailops must not copy anywhere (and its read-back,
    ``accountsummary``, showing the change)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
        user = form.get("user", [""])[0]
        if user == "huge":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(HUGE))
            self.end_headers()
            block, sent = b'{"metadata":{"result":1},"data":"' + b"x" * 65_000, 0
            try:
                while sent < HUGE:
                    piece = block[: HUGE - sent]
                    self.wfile.write(piece)
                    sent += len(piece)
            except OSError:
                pass
            self.close_connection = True
            return
        if self.path.startswith("/json-api/accountsummary"):  # the read-back: the change shows
            body = orjson.dumps({"metadata": {"result": 1, "reason": "OK"},
                                 "data": {"acct": [{"user": user, "outgoing_mail_suspended": 1}]}})
        else:
            body = orjson.dumps({"metadata": {"result": 1, "reason": "OK"}, "data": {"blob": "d" * 500_000}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (``VmHWM`` in ``/proc/<pid>/status``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_200_mb_answer_keeps_the_worker_under_150_mib_and_no_event_or_record_over_16_kib(
    redis_client: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path,
) -> None:
    # Given a worker process whose panel answers one account with 200 MB and another with a
    # valid success carrying 500 KB of data
    with loopback_http(HugePanel) as url:
        env = worker_env(tmp_path, redis_server.url, SimpleNamespace(url=url), token="t")  # type: ignore[arg-type]
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        try:
            # When a command for each arrives
            add_many(redis_client, [suspend("huge-1", "huge"), suspend("big-1", "bigdata")])
            deadline = time.monotonic() + 60
            while True:
                events = read_events(redis_client)
                too_large = [e for e in events if e.id == "huge-1" and e.error is not None
                             and e.error.kind == "answer_too_large"]
                if too_large and any(e.id == "big-1" and e.terminal for e in events):
                    break
                assert time.monotonic() < deadline, events[-3:]
                assert worker.alive()
                time.sleep(0.2)
            peak = peak_rss_mib(worker.pid)
        finally:
            worker.stop()
    # Then the 200 MB answer failed as a transient `answer_too_large`, the 500 KB one succeeded
    assert too_large[0].status in ("retrying", "waiting")
    assert [e.status for e in events if e.id == "big-1" and e.terminal] == ["succeeded"]
    # And the worker's peak memory stayed under 150 MiB
    assert peak < 150, f"peak RSS {peak:.0f} MiB"
    # And no event, record or other Redis value is over 16 KiB (the panel's data is in none)
    for _id, fields in redis_client.xrange("mailops:events"):
        assert len(fields[b"body"]) <= 16 * 1024
    for key in redis_client.scan_iter("*"):
        assert int(redis_client.memory_usage(key) or 0) <= 16 * 1024 or key.startswith(b"mailops:events"), key
    for key in redis_client.scan_iter("mailops:cmd:*"):
        kind = redis_client.type(key)
        value = redis_client.hgetall(key) if kind == b"hash" else redis_client.lrange(key, 0, -1)
        assert len(repr(value)) <= 16 * 1024 and b"ddddd" not in repr(value).encode()
    assert not any(b"ddddd" in fields[b"body"] for _id, fields in redis_client.xrange("mailops:events"))
    print(f"peak worker RSS: {peak:.1f} MiB")
