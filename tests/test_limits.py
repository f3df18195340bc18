"""Per-backend limits in Redis: the concurrency cap across processes, and the circuit breaker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import redis

from tests.conftest import (
    add_command,
    capped_limits,
    read_events,
    wait_for_terminal,
    wait_until,
    whm_with_accounts,
)
from tests.guarantees.processes import suspend
from workers.errors import Defer
from workers.limits import BackendLimits
from workers.sandbox import Faults, SandboxServer
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


def test_a_slot_given_back_goes_straight_to_the_waiters_most_urgent_first(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a backend capped at one call, held, and a bulk command waiting for it before an urgent one
    limits = capped_limits(settings_for, whm, 1)
    holder = limits.take(limits.request("whm1", queue="default"))
    order: list[str] = []

    def wait_for_slot(queue: str) -> None:
        lease = limits.take(limits.request("whm1", queue=queue))
        order.append(queue)
        time.sleep(0.05)
        limits.give_back("whm1", lease, "answered")

    waiters = redis_client.zcard
    key = limits.keys.backend_waiters("whm1")
    bulk = threading.Thread(target=wait_for_slot, args=("bulk",))
    bulk.start()
    wait_until(lambda: waiters(key) == 1)
    urgent = threading.Thread(target=wait_for_slot, args=("urgent",))
    urgent.start()
    wait_until(lambda: waiters(key) == 2)
    # When the holder gives its slot back
    limits.give_back("whm1", holder, "answered")
    bulk.join(5)
    urgent.join(5)
    # Then the urgent command got it first, the bulk one next, and nobody is left in line
    assert order == ["urgent", "bulk"]
    assert waiters(key) == 0 and limits.in_flight("whm1") == 0


def test_a_waiter_that_gives_up_leaves_the_line_and_a_dead_waiter_is_skipped(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a full backend (cap 1) and three waiters in line: one that dies, one that gives up, one that waits
    limits = capped_limits(settings_for, whm, 1)
    holder = limits.take(limits.request("whm1", queue="default"))
    dead, quitter, patient = (limits.request("whm1", queue="urgent") for _ in range(3))
    assert [r.call.run()[0] for r in (dead, quitter, patient)] == [b"full"] * 3
    time.sleep(1.3)  # the dead waiter stops asking; its place lapses (WAITER_TTL_MS)
    # the others ask again (each ask is a new call: it carries the time it is made)
    assert [limits.request("whm1", r.lease, queue="urgent").call.run()[0] for r in (quitter, patient)] == [b"full"] * 2
    # When one gives up, then the holder gives its slot back
    limits.give_back("whm1", quitter.lease, "other")
    limits.give_back("whm1", holder, "answered")
    # Then the slot went to the one still waiting, on its own grant list
    grant = limits.keys.backend_grant
    assert redis_client.llen(grant("whm1", patient.lease)) == 1
    assert redis_client.exists(grant("whm1", dead.lease), grant("whm1", quitter.lease)) == 0
    assert redis_client.zrange(limits.keys.backend_inflight("whm1"), 0, -1) == [patient.lease.encode()]
    # And asking again with the granted lease finds the slot already its own
    assert limits.take(patient) == patient.lease
    assert redis_client.llen(grant("whm1", patient.lease)) == 0


def test_a_waiter_out_of_time_defers_and_leaves_the_line(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer,
        monkeypatch) -> None:
    # Given a full backend and a waiter allowed to wait 0.3 s
    monkeypatch.setattr("workers.limits.BUSY_WAIT_MS", 300)
    limits = capped_limits(settings_for, whm, 1)
    holder = limits.take(limits.request("whm1", queue="default"))
    waiter = limits.request("whm1", queue="bulk")
    # When nothing is given back in time
    with pytest.raises(Defer) as deferred:
        limits.take(waiter)
    assert deferred.value.reason == "backend_busy"
    # Then it is out of the line, and the slot given back later stays free for whoever asks
    assert redis_client.zcard(limits.keys.backend_waiters("whm1")) == 0
    limits.give_back("whm1", holder, "answered")
    assert limits.in_flight("whm1") == 0


def test_no_slot_is_granted_while_the_breaker_opens_the_waiters_are_woken_instead(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a backend (cap 1, breaker opens after 1 failure) whose call is failing, and a waiter
    limits = capped_limits(settings_for, whm, 1, breaker_failures=1)
    holder = limits.take(limits.request("whm1", queue="default"))
    waiter = limits.request("whm1", queue="urgent")
    assert waiter.call.run()[0] == b"full"
    # When the call's failure opens the breaker as the slot is given back
    assert limits.give_back("whm1", holder, "down") == "opened"
    # Then the slot is not handed on; the waiters are woken to ask again, and learn the breaker is open
    assert redis_client.llen(limits.keys.backend_grant("whm1", waiter.lease)) == 0
    assert redis_client.llen(limits.keys.backend_freed("whm1")) == 1
    with pytest.raises(Defer) as deferred:
        limits.take(waiter)
    assert deferred.value.reason == "backend_down"


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
