"""SIGTERM: a worker stops taking work, finishes or hands back what it runs, and exits 0."""

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
from workers.settings import Settings
from workers.store.command_store import CommandStore
from workers.store.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.slow


def test_sigterm_during_a_run_exits_0_and_loses_or_repeats_no_command(
    redis_client: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    # Given two worker processes on a slow panel (1 s a call): one drains fully, one must hand back
    n = 120
    app = whm_with_accounts(n)
    with SandboxServer(app, faults=Faults(latency_s=1.0)) as whm:
        env = worker_env(tmp_path, redis_server.url, whm, heartbeat_timeout_ms=1500, ingest_claim_idle_ms=1500)
        patient = WorkerProcess(env, tmp_path / "patient.log", extra=("--drain-timeout", "20")).start()
        hasty = WorkerProcess(env, tmp_path / "hasty.log", extra=("--drain-timeout", "0.05")).start()
        spare = WorkerProcess(env, tmp_path / "spare.log")
        try:
            ids = {f"d-{i}" for i in range(n)}
            add_many(redis_client, [suspend(f"d-{i}", f"u{i}") for i in range(n)])
            deadline = time.monotonic() + 60
            while len(app.ledger) < 20 or whm.stats()["in_flight"] < 12:
                # (SIGTERM mid-call, not in the gap between two waves of calls)
                assert time.monotonic() < deadline, "workers never started applying"
                time.sleep(0.02)
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
    # (The hasty one usually logs "handing them back"; not asserted: in about one run in three
    # its threads were between two calls at SIGTERM and simply stopped, which is also correct.)
    print(f"\nhasty worker handed back: {'handing them back' in (tmp_path / 'hasty.log').read_text()}")
    # And every command has exactly one terminal event, `succeeded`, each change applied once
    terminal = [e for e in events if e.terminal]
    assert Counter(e.id for e in terminal) == Counter({i: 1 for i in ids})
    assert {e.status for e in terminal} == {"succeeded"}
    assert Counter(c.target for c in app.ledger.changes()) == Counter({f"u{i}": 1 for i in range(n)})


def test_sigterm_to_a_multi_process_worker_drains_every_child_and_exits_0(
    redis_client: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    # Given `mailops worker -p 2` running commands on a slow panel
    n = 60
    app = whm_with_accounts(n)
    with SandboxServer(app, faults=Faults(latency_s=0.5)) as whm:
        env = worker_env(tmp_path, redis_server.url, whm, heartbeat_timeout_ms=1500, ingest_claim_idle_ms=1500)
        pool = WorkerProcess(env, tmp_path / "pool.log", threads=4, extra=("--drain-timeout", "20"))
        pool.args[pool.args.index("-p") + 1] = "2"
        pool.start()
        spare = WorkerProcess(env, tmp_path / "spare.log")
        try:
            ids = {f"m-{i}" for i in range(n)}
            add_many(redis_client, [suspend(f"m-{i}", f"u{i}") for i in range(n)])
            deadline = time.monotonic() + 60
            while len(app.ledger) < 5:
                assert time.monotonic() < deadline, "workers never started applying"
                time.sleep(0.05)
            # When the parent gets SIGTERM mid-run (a spare worker finishes the rest)
            code = pool.terminate(timeout=90)
            assert len(app.ledger) < n, "the run ended before SIGTERM; the test proved nothing"
            spare.start()
            events = wait_all_terminal(redis_client, ids, timeout=120)
        finally:
            pool.stop()
            spare.stop()
    # Then the pool exited 0 and every command ended exactly once, each change applied once
    assert code == 0
    terminal = [e for e in events if e.terminal]
    assert Counter(e.id for e in terminal) == Counter({i: 1 for i in ids})
    assert {e.status for e in terminal} == {"succeeded"}
    assert Counter(c.target for c in app.ledger.changes()) == Counter({f"u{i}": 1 for i in range(n)})


def test_a_drain_that_runs_out_hands_the_running_command_back_and_another_worker_finishes_it_once(
    redis_client: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    # Given a worker with a 50 ms drain, 0.5 s into a 3 s panel call (read timeout 10 s: a read timeout equal
    # to the call's length timed the spare's call out in about one run in four)
    app = whm_with_accounts(1)
    with SandboxServer(app, faults=Faults(latency_s=3.0)) as whm:
        env = worker_env(tmp_path, redis_server.url, whm, backend={"read_timeout": 10.0},
                         heartbeat_timeout_ms=1500, ingest_claim_idle_ms=1500)
        hasty = WorkerProcess(env, tmp_path / "hasty.log", threads=2, extra=("--drain-timeout", "0.05")).start()
        spare = WorkerProcess(env, tmp_path / "spare.log", threads=2)
        try:
            add_many(redis_client, [suspend("h-1", "u0")])
            deadline = time.monotonic() + 30
            while whm.stats()["in_flight"] < 1:
                assert time.monotonic() < deadline, "the worker never called the panel"
                time.sleep(0.02)
            time.sleep(0.5)
            # When it gets SIGTERM, and a spare worker is running
            code = hasty.terminate(timeout=30)
            spare.start()
            events = wait_all_terminal(redis_client, {"h-1"}, timeout=60)
        finally:
            hasty.stop()
            spare.stop()
    # Then it exited 0 saying it handed the command back
    assert code == 0
    assert "handing them back" in (tmp_path / "hasty.log").read_text()
    # And the spare ran it again without spending an attempt (the hand-back was not its fault):
    # one terminal event, `succeeded`, one change on the panel
    terminal = [e for e in events if e.terminal]
    assert [(e.id, e.status, e.attempt) for e in terminal] == [("h-1", "succeeded", 1)]
    history = CommandStore(redis_client, Settings(redis_url=redis_server.url)).history("h-1")
    assert [(h["result"], h.get("counted")) for h in history] == [("worker_lost", False), ("succeeded", None)]
    assert [c.target for c in app.ledger.changes()] == ["u0"]
