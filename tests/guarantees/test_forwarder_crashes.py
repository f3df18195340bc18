"""kill -9 during a migration of forwarders: a panel that appends duplicates never gets one."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from tests.clock import iso
from tests.guarantees.processes import (
    run_killing_in_turns,
    write_worker_config,
)
from tests.guarantees.test_worker_crashes import pid_of
from workers.sandbox import Faults, SandboxServer
from workers.sandbox.cpanel import CpanelSandbox
from workers.settings import Settings
from workers.store.command_store import CommandStore
from workers.store.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.slow


def add_forward(i: int) -> dict[str, object]:
    return {"id": f"fwd-{i}", "command": "addforward", "backend": "cp1", "producer": "migration",
            "args": {"email": f"f{i}@shop.example", "destination": "keep@elsewhere.example"},
            "issued_at": iso(datetime.now(UTC))}


def test_kill_9_ten_times_over_3000_addforwards_on_an_appending_panel_makes_no_duplicate_forwarder(
    redis_client: redis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    # Given a cPanel account whose panel appends a second line when a forwarder is added again
    # (so a re-sent add_forwarder would show), and two worker processes
    n, kills_wanted = 3000, 10
    app = CpanelSandbox()
    app.add_account("shop", "shop.example")
    app.state.append_duplicates = True
    with SandboxServer(app, faults=Faults(latency_s=0.02)) as cp1:
        config = write_worker_config(tmp_path / "workers.toml", {"cp1": {
            "kind": "cpanel", "url": cp1.url, "username": "shop", "token_env": "TOKEN_CP1", "read_timeout": 3.0,
            "max_concurrency": 32}}, require_signatures=False, heartbeat_timeout_ms=1500, ingest_claim_idle_ms=1500)
        env = {"MAILOPS_REDIS_URL": redis_server.url, "MAILOPS_CONFIG": str(config), "TOKEN_CP1": app.token}
        # When a migration adds 3,000 forwarders and a worker is killed with SIGKILL every 1.5 s, ten times
        ids = {f"fwd-{i}" for i in range(n)}
        events, kills = run_killing_in_turns(redis_client, env, tmp_path, [add_forward(i) for i in range(n)],
                                             kills=kills_wanted)
    # Then every command ended once, succeeded
    terminal = [e for e in events if e.terminal]
    assert Counter(e.id for e in terminal) == Counter({i: 1 for i in ids})
    assert Counter(e.status for e in terminal) == {"succeeded": n}
    # And the panel holds each forwarder exactly once: no duplicate line, whatever the kills cut
    store = CommandStore(redis_client, Settings(redis_url=redis_server.url))
    lines = Counter(key.partition("#")[0] for key in app.state.forwarders)
    # (on failure: each duplicated forwarder's attempt history, and the kills' pids and times)
    twice = {line: store.history(f"fwd-{line.partition('@')[0][1:]}") for line, count in lines.items() if count > 1}
    assert lines == Counter({f"f{i}@shop.example=>keep@elsewhere.example": 1 for i in range(n)}), (twice, kills)
    assert len(app.ledger.changes()) == n
    # And the kills did cut running commands, which ran again
    cut = [command_id for command_id in ids
           if any(h["result"] == "worker_lost" and pid_of(h["worker"]) in kills for h in store.history(command_id))]
    assert cut, "no kill landed on a running command; the test proved nothing"
    print(f"\nkill -9 x{len(kills)}: {len(cut)} addforward commands cut and run again, 0 duplicate forwarders")
