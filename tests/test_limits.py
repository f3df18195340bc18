"""Per-backend limits in Redis: the concurrency cap across processes, and the circuit breaker."""

from __future__ import annotations

import time

import redis

from tests.conftest import add_command, read_events, wait_for_terminal, whm_with_accounts
from tests.guarantees.processes import suspend
from workers.limits import BackendLimits
from workers.sandbox import Faults, SandboxServer


def test_the_concurrency_cap_holds_across_two_worker_runtimes(redis_client: redis.Redis, settings_for, runtime_for) -> None:
    # Given a slow backend capped at 3 calls in flight and two runtimes of 8 threads each
    with SandboxServer(whm_with_accounts(40), faults=Faults(latency_s=0.1)) as whm:
        settings = settings_for({"whm1": ("whm", whm)}, whm1={"max_concurrency": 3}, require_signatures=False)
        runtime_for(settings)
        runtime_for(settings)
        # When 40 commands arrive
        for i in range(40):
            add_command(redis_client, suspend(f"cap-{i}", f"u{i}"))
        events = wait_for_terminal(redis_client, {f"cap-{i}" for i in range(40)}, timeout=120)
        # Then all succeeded, and the panel never saw more than 3 calls at once
        assert {e.status for e in events if e.terminal} == {"succeeded"}
        assert whm.stats()["max_in_flight"] <= 3


def test_the_calls_per_second_cap_holds_across_two_worker_runtimes(redis_client: redis.Redis, settings_for, runtime_for) -> None:
    # Given a backend capped at 5 calls per second and two runtimes
    with SandboxServer(whm_with_accounts(15)) as whm:
        settings = settings_for({"whm1": ("whm", whm)}, whm1={"max_rate": 5.0}, require_signatures=False)
        runtime_for(settings)
        runtime_for(settings)
        # When 15 commands arrive at once
        for i in range(15):
            add_command(redis_client, suspend(f"rate-{i}", f"u{i}"))
        events = wait_for_terminal(redis_client, {f"rate-{i}" for i in range(15)}, timeout=120)
    # Then all succeeded, and no 1-second window saw more than twice the cap of changes
    # (uncapped, all 15 land within a fraction of a second)
    assert {e.status for e in events if e.terminal} == {"succeeded"}
    times = sorted(c.at for c in whm.app.ledger.changes())
    assert len(times) == 15
    assert max(sum(1 for t in times if start <= t < start + 1.0) for start in times) <= 10
    assert times[-1] - times[0] >= 1.0


def test_a_backend_refusing_connections_opens_its_breaker_and_nothing_is_dead_lettered_after_recovery(
    redis_client: redis.Redis, settings_for, runtime_for
) -> None:
    # Given a worker whose commands would be dead-lettered after 3 attempts
    n = 30
    whm = SandboxServer(whm_with_accounts(n)).start()
    settings = settings_for({"whm1": ("whm", whm)}, whm1={"connect_timeout": 0.5}, breaker_failures=3,
                            breaker_cooldown_ms=300, require_signatures=False)
    runtime = runtime_for(settings)
    limits = BackendLimits(redis_client, settings)
    # When the panel refuses connections for ~6 s while commands arrive
    whm.stop()
    ids = {f"out-{i}" for i in range(n)}
    for i in range(n):
        add_command(redis_client, suspend(f"out-{i}", f"u{i}", command="suspend_outgoing") | {"priority": "default"})
    seen_open, deadline = False, time.monotonic() + 30
    while not seen_open:
        seen_open = limits.breaker("whm1")["state"] == "open"
        assert time.monotonic() < deadline, "breaker never opened"
        time.sleep(0.05)
    time.sleep(6)
    whm.start()
    try:
        events = wait_for_terminal(redis_client, ids, timeout=120)
    finally:
        whm.stop()
    # Then every command succeeded, none dead-lettered, each change applied once
    terminal = [e for e in events if e.terminal]
    assert sorted(e.status for e in terminal) == ["succeeded"] * n
    assert sorted(c.target for c in whm.app.ledger.changes()) == sorted(f"u{i}" for i in range(n))
    # And the commands waited (`waiting` events, no attempt spent while the breaker was open)
    waiting = [e for e in events if e.status == "waiting"]
    assert waiting and {e.details["reason"] for e in waiting} == {"backend_down"}
    assert max(e.attempt or 0 for e in terminal) <= 2
    # And the breaker was seen open, and is closed again
    breaker = limits.breaker("whm1")
    assert breaker["state"] == "closed" and int(breaker["opens"]) >= 1 and "closed_at" in breaker
    assert runtime.store.client.zcard("mailops:dlq") == 0
    assert read_events(redis_client)  # the stream is intact
