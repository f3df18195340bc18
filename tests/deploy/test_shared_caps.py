"""Scaling out: worker processes standing in for separate hosts share each backend's caps.

Two ``mailops worker`` subprocesses, each with its own Redis connections and more threads than
the backend's cap, run commands against one slow sandbox panel; the panel's own count of calls
in flight (``SandboxServer.stats()['max_in_flight']``) must never pass ``max_concurrency``.
"""

from __future__ import annotations

import time
from pathlib import Path

import orjson
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
from workers.cli.health import heartbeats_key
from workers.sandbox import Faults, SandboxServer
from workers.settings import Settings
from workers.store.embedded_redis import EmbeddedRedis

CAP = 3
THREADS = 6
COMMANDS = 36


@pytest.mark.slow
def test_two_worker_processes_on_separate_connections_never_exceed_a_backends_concurrency_cap_together(
    redis_server: EmbeddedRedis, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a panel that answers after 0.2 s, capped at 3 calls in flight ...
    app = whm_with_accounts(COMMANDS)
    with SandboxServer(app, faults=Faults(latency_s=0.2)) as whm:
        env = worker_env(tmp_path, redis_server.url, whm, backend={"read_timeout": 5.0, "max_concurrency": CAP})
        # ... and two worker processes of 6 threads each (12 could call at once without the cap)
        workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log", threads=THREADS).start() for n in range(2)]
        try:
            settings = Settings.from_env(env)
            _wait_for_heartbeats(redis_client, settings, count=2, workers=workers)
            # When 36 commands arrive at once
            ids = {f"cap-{i}" for i in range(COMMANDS)}
            add_many(redis_client, [suspend(f"cap-{i}", f"u{i}") for i in range(COMMANDS)])
            events = wait_all_terminal(redis_client, ids, timeout=60, poll_s=0.2)
        finally:
            for worker in workers:
                worker.terminate(timeout=30)
        # Then every command succeeded, both processes ran calls, and the cap was reached but never passed
        assert {e.status for e in events if e.terminal} == {"succeeded"}
        ran_by = {_pid_of(entry) for i in range(COMMANDS)
                  for entry in redis_client.lrange(settings.keys.command_history(f"cap-{i}"), 0, -1)}
        assert ran_by == {w.pid for w in workers}, "both worker processes should have run commands"
        assert whm.stats()["max_in_flight"] == CAP


def _pid_of(history_entry: bytes | str) -> int:
    worker_id = str(orjson.loads(history_entry)["worker"])  # "<host>-<pid>-<random>"
    return int(worker_id.rsplit("-", 2)[1])


def _wait_for_heartbeats(client: redis.Redis, settings: Settings, *, count: int, workers: list[WorkerProcess]) -> None:
    deadline = time.monotonic() + 30
    while client.zcard(heartbeats_key(settings)) < count:
        assert all(w.alive() for w in workers), "a worker process exited at start-up (see its log in tmp_path)"
        assert time.monotonic() < deadline, "worker processes did not start heartbeating within 30 s"
        time.sleep(0.1)
