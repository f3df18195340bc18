"""Redis killed and restarted mid-run (append-only file on): workers reconnect, nothing accepted is lost."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from tests.conftest import whm_with_accounts
from tests.guarantees.processes import (
    WorkerProcess,
    add_many,
    suspend,
    wait_all_terminal,
    worker_env,
)
from workers.sandbox import Faults, SandboxServer
from workers.store.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.slow


def test_redis_killed_and_restarted_mid_run_loses_no_accepted_command(tmp_path: Path) -> None:
    # Given a private Redis with appendonly (fsync always), a WHM sandbox and two worker processes
    n = 600
    app = whm_with_accounts(n)
    with EmbeddedRedis(appendonly=True) as server, SandboxServer(app, faults=Faults(latency_s=0.05)) as whm:
        client = redis.Redis.from_url(server.url)
        env = worker_env(tmp_path, server.url, whm, heartbeat_timeout_ms=1500, ingest_claim_idle_ms=1500)
        procs = [WorkerProcess(env, tmp_path / f"w{i}.log").start() for i in range(2)]
        try:
            ids = {f"r-{i}" for i in range(n)}
            add_many(client, [suspend(f"r-{i}", f"u{i}") for i in range(n)])
            # When Redis is SIGKILLed while commands run (both workers past their start: a worker
            # that cannot reach Redis as it starts exits 3, by design), and comes back 1 s later
            deadline = time.monotonic() + 60
            while len(app.ledger) < 50 or not all("threads on" in p.log.read_text() for p in procs):
                assert time.monotonic() < deadline, "workers never started applying"
                time.sleep(0.05)
            server.kill()
            applied_at_kill = len(app.ledger)
            assert applied_at_kill < n, "the run ended before Redis was killed; the test proved nothing"
            time.sleep(1.0)
            server.start()
            client = redis.Redis.from_url(server.url)
            events = wait_all_terminal(client, ids, timeout=150)
            # Then the worker processes are still the same ones (they reconnected, none died)
            assert all(p.alive() for p in procs), [(p.pid, p.proc.poll() if p.proc else None) for p in procs]
        finally:
            for proc in procs:
                proc.stop()
    # And every command has exactly one terminal event, `succeeded`, each change applied once
    terminal = [e for e in events if e.terminal]
    assert Counter(e.id for e in terminal) == Counter({i: 1 for i in ids})
    assert {e.status for e in terminal} == {"succeeded"}
    assert Counter(c.target for c in app.ledger.changes()) == Counter({f"u{i}": 1 for i in range(n)})
