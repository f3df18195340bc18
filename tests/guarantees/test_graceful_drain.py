"""SIGTERM: a worker stops taking work, finishes or hands back what it runs, and exits 0."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import redis

from tests.guarantees.processes import (
    WorkerProcess,
    add_many,
    suspend,
    wait_all_terminal,
    write_worker_config,
)
from workers.embedded_redis import EmbeddedRedis
from workers.sandbox import Faults, SandboxServer
from workers.sandbox.whm import WhmSandbox

TOKEN = "drain-test-token"


def test_sigterm_during_a_run_exits_0_and_loses_or_repeats_no_command(
    redis_client: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    # Given two worker processes on a slow panel (1.5 s a call): one drains fully, one must hand back
    n = 150
    app = WhmSandbox(token=TOKEN)
    for i in range(n):
        app.add_account(f"u{i}")
    with SandboxServer(app, faults=Faults(latency_s=1.5)) as whm:
        config = write_worker_config(
            tmp_path / "workers.toml",
            {"whm1": {"kind": "whm", "url": whm.url, "token_env": "TOKEN_WHM1", "read_timeout": 3.0, "max_concurrency": 32}},
            heartbeat_timeout_ms=1500, ingest_claim_idle_ms=1500, require_signatures=False,
        )
        env = {"MAILOPS_REDIS_URL": redis_server.url, "MAILOPS_CONFIG": str(config), "TOKEN_WHM1": TOKEN}
        patient = WorkerProcess(env, tmp_path / "patient.log", extra=("--drain-timeout", "20")).start()
        hasty = WorkerProcess(env, tmp_path / "hasty.log", extra=("--drain-timeout", "0.05")).start()
        spare = WorkerProcess(env, tmp_path / "spare.log")
        try:
            ids = {f"d-{i}" for i in range(n)}
            add_many(redis_client, [suspend(f"d-{i}", f"u{i}") for i in range(n)])
            deadline = time.monotonic() + 60
            while len(app.ledger) < 20:
                assert time.monotonic() < deadline, "workers never started applying"
                time.sleep(0.05)
            # When both get SIGTERM mid-run (the 50 ms one first, then the 20 s one), and a spare takes over
            hasty_code = hasty.terminate(timeout=60)
            spare.start()
            patient_code = patient.terminate(timeout=60)
            assert len(app.ledger) < n, "the run ended before SIGTERM; the test proved nothing"
            events = wait_all_terminal(redis_client, ids, timeout=150)
        finally:
            for proc in (patient, hasty, spare):
                proc.stop()
    # Then both exited 0
    assert (patient_code, hasty_code) == (0, 0)
    # And the hasty one handed back commands it was still running when its drain time ran out
    assert "handing them back" in (tmp_path / "hasty.log").read_text()
    # And every command has exactly one terminal event, `succeeded`, each change applied once
    terminal = [e for e in events if e.terminal]
    assert Counter(e.id for e in terminal) == Counter({i: 1 for i in ids})
    assert {e.status for e in terminal} == {"succeeded"}
    assert Counter(c.target for c in app.ledger.changes()) == Counter({f"u{i}": 1 for i in range(n)})
