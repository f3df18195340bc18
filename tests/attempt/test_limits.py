"""Per-backend limits in Redis: the concurrency cap across processes, and the circuit breaker."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from tests.conftest import (
    WHM_TOKEN,
    add_command,
    capped_limits,
    read_events,
    wait_for_terminal,
    whm_with_accounts,
)
from tests.guarantees.processes import suspend
from workers.attempt.limits import BackendLimits, park_score
from workers.errors import Defer
from workers.sandbox import Faults, SandboxServer
from workers.sandbox.whm import WhmSandbox
from workers.settings import Settings


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


def test_a_full_backend_parks_the_command_instead_of_holding_a_thread(
        settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a backend capped at one call, held
    limits = capped_limits(settings_for, whm, 1)
    limits.take(limits.request("whm1"))
    # When another call asks for a slot
    with pytest.raises(Defer) as deferred:
        limits.take(limits.request("whm1"))
    # Then it is told at once to park for that backend (no wait in place)
    assert (deferred.value.reason, deferred.value.parked_on) == ("cap_full", "whm1")


def park(client: redis.Redis, limits: BackendLimits, queue: str, message_id: str, arrival: int) -> None:
    """Put a command in ``whm1``'s parked line as ``retry.lua`` does (its member and score)."""
    client.zadd(limits.keys.backend_parked("whm1"), {f"{queue}/{message_id}": park_score(queue, arrival)})


def test_a_give_back_releases_the_most_urgent_parked_command_to_the_head_of_its_queue(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a backend capped at one call, held, and a bulk command parked before an urgent one
    limits = capped_limits(settings_for, whm, 1)
    holder = limits.take(limits.request("whm1"))
    park(redis_client, limits, "bulk", "b1", 1_000)
    park(redis_client, limits, "urgent", "u1", 2_000)
    queues = limits.keys.dramatiq
    redis_client.rpush(queues.queue("urgent"), "already-queued")
    # When the holder gives its slot back
    limits.give_back("whm1", holder, "answered")
    # Then the urgent one went to the head of its queue, and the bulk one still waits its turn
    assert redis_client.lrange(queues.queue("urgent"), 0, -1) == [b"u1", b"already-queued"]
    assert redis_client.zrange(limits.keys.backend_parked("whm1"), 0, -1) == [b"bulk/b1"]
    # And the next give-back releases it
    limits.give_back("whm1", limits.take(limits.request("whm1")), "answered")
    assert redis_client.lrange(queues.queue("bulk"), 0, -1) == [b"b1"] and limits.parked("whm1") == 0


def test_parked_commands_stay_parked_while_the_breaker_opens_and_the_heartbeat_releases_them_after(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a backend (cap 1, breaker opens after 1 failure, 50 ms cooldown) whose call is failing, and a parked command
    limits = capped_limits(settings_for, whm, 1, breaker_failures=1, breaker_cooldown_ms=50)
    holder = limits.take(limits.request("whm1"))
    park(redis_client, limits, "default", "d1", 1_000)
    # When the call's failure opens the breaker as the slot is given back
    assert limits.give_back("whm1", holder, "down") == "opened"
    # Then nothing is released, not even by the heartbeat's safety net
    assert limits.release_parked() == 0 and limits.parked("whm1") == 1
    # And once the breaker is no longer open, the safety net releases it
    redis_client.hset(limits.keys.breaker("whm1"), "state", "closed")
    assert limits.release_parked() == 1
    assert redis_client.lrange(limits.keys.dramatiq.queue("default"), 0, -1) == [b"d1"]


def test_the_heartbeat_releases_commands_parked_behind_a_holder_that_died_without_giving_back(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a backend capped at one call whose holder died (its lease ran out) and a parked command
    limits = capped_limits(settings_for, whm, 1)
    holder = limits.take(limits.request("whm1"))
    park(redis_client, limits, "default", "d1", 1_000)
    assert limits.release_parked() == 0
    redis_client.zadd(limits.keys.backend_inflight("whm1"), {holder: 1})  # its expiry: long past
    # When a heartbeat's safety net runs, then the command is released
    assert limits.release_parked() == 1 and limits.parked("whm1") == 0


def test_commands_for_a_healthy_backend_run_while_a_full_backends_queue_is_deep(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., object]) -> None:
    # Given a slow backend (one call at a time, 300 ms each) and a fast one, and one worker with 4 threads
    slow_app, fast_app = whm_with_accounts(12), WhmSandbox(token=WHM_TOKEN)
    for i in range(3):
        fast_app.add_account(f"f{i}")
    with SandboxServer(slow_app, faults=Faults(latency_s=0.3)) as slow, SandboxServer(fast_app) as fast:
        settings = settings_for({"slow": ("whm", slow), "fast": ("whm", fast)}, slow={"max_concurrency": 1})
        runtime_for(settings, threads=4)
        # When 12 commands for the slow backend are queued, then 3 for the fast one
        for i in range(12):
            add_command(redis_client, suspend(f"slow-{i}", f"u{i}", backend="slow") | {"priority": "bulk"})
        for i in range(3):
            add_command(redis_client, suspend(f"fast-{i}", f"f{i}", backend="fast") | {"priority": "bulk"})
        events = wait_for_terminal(redis_client, count=15, timeout=60)
        slow_app_changes = slow_app.ledger.changes()
    # Then the fast commands ended before the slow backend had finished even a quarter of its work
    order = [e.id for e in events if e.terminal]
    assert all(order.index(f"fast-{i}") < order.index("slow-3") for i in range(3)), order
    # And every command succeeded, the slow ones parked rather than waiting in a thread, each applied once
    assert {e.status for e in events if e.terminal} == {"succeeded"}
    assert any(e.status == "waiting" and e.details.get("reason") == "cap_full" for e in events)
    assert sorted(c.target for c in slow_app_changes) == sorted(f"u{i}" for i in range(12))


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
