"""Lifecycle: idempotency verdicts at the door, ambiguous outcomes, attempt history."""

from __future__ import annotations

import threading
import time

import dramatiq
import redis

from schemas.events import SCRIPT_TEXTS
from tests.attempt.test_ordering import commit
from tests.clock import ISSUED
from tests.conftest import add_command, read_events, wait_for_terminal
from workers.queue.middleware import Lifecycle
from workers.sandbox import Faults, SandboxServer
from workers.store.command_store import CommandStore
from workers.store.wire import own_connection


def suspend(id: str, user: str = "example", command: str = "suspend_outgoing") -> dict[str, object]:
    return {"id": id, "command": command, "backend": "whm1", "args": {"user": user},
            "producer": "billing", "issued_at": ISSUED}


def terminal_of(events, id):
    return [e for e in events if e.id == id and e.terminal]


def test_the_same_id_and_payload_after_it_finished_is_a_duplicate_repeating_the_outcome_without_a_panel_call(
    redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for
) -> None:
    # Given a command that succeeded
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    add_command(redis_client, suspend("dup-1"))
    wait_for_terminal(redis_client, {"dup-1"})
    calls = whm.stats()["requests"]
    # When the producer sends it again (a billing webhook retried)
    add_command(redis_client, suspend("dup-1"))
    events = wait_for_terminal(redis_client, count=2)
    # Then the second answer is `duplicate` with the original outcome, and the panel saw no call
    final = terminal_of(events, "dup-1")
    assert [e.status for e in final] == ["succeeded", "duplicate"]
    assert final[1].details["original"]["status"] == "succeeded"
    assert whm.stats()["requests"] == calls
    assert len(whm.app.ledger.changes()) == 1


def test_the_same_id_while_it_still_runs_is_in_flight_and_runs_once(
    redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for
) -> None:
    # Given a command whose panel call takes a while
    whm.set_faults(Faults(latency_s=1.5))
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    add_command(redis_client, suspend("fly-1"))
    deadline = time.monotonic() + 20
    while CommandStore(redis_client, settings_for({"whm1": ("whm", whm)})).record("fly-1").get("status") != "running":
        assert time.monotonic() < deadline, "command never started"
        time.sleep(0.02)
    # When the same id arrives while it runs
    add_command(redis_client, suspend("fly-1"))
    events = wait_for_terminal(redis_client, count=2, timeout=30)
    # Then the copy is answered `in_flight` and the original alone ran, once
    assert [e.status for e in terminal_of(events, "fly-1")] == ["in_flight", "succeeded"]
    assert whm.stats()["changes"] == 1


def test_the_same_id_with_a_different_payload_is_a_conflict_and_never_runs(
    redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for
) -> None:
    # Given a command that succeeded for account `example`
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    add_command(redis_client, suspend("cf-1"))
    wait_for_terminal(redis_client, {"cf-1"})
    # When the same id is reused for account `other`
    add_command(redis_client, suspend("cf-1", user="other"))
    events = wait_for_terminal(redis_client, count=2)
    # Then it is a conflict and `other` was never touched
    final = terminal_of(events, "cf-1")
    assert [e.status for e in final] == ["succeeded", "conflict"]
    assert final[1].error is not None and final[1].error.kind == "conflict"
    # And its message is the text defined once in schemas/events.py, the id filled in by the script
    assert final[1].error.message == SCRIPT_TEXTS["CONFLICT_TEXT"] % "cf-1"
    assert [c.target for c in whm.app.ledger.changes()] == ["example"]


def test_a_call_that_timed_out_after_it_was_applied_is_retried_and_the_change_exists_once(
    redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for
) -> None:
    # Given a panel that applies the first call and then never answers it
    whm.set_faults(Faults(timeout_after_apply_rate=1.0, hang_s=3.0))
    settings = settings_for({"whm1": ("whm", whm)}, whm1={"read_timeout": 0.5})
    runtime = runtime_for(settings)
    add_command(redis_client, suspend("amb-1"))
    deadline = time.monotonic() + 20
    while not any(e.status == "retrying" for e in read_events(redis_client)):
        assert time.monotonic() < deadline, "no retry was scheduled"
        time.sleep(0.02)
    whm.set_faults(Faults())
    # When the retry runs
    events = wait_for_terminal(redis_client, {"amb-1"}, timeout=30)
    # Then the command succeeded on the retry and the change exists once (WHM's suspend answers
    # a plain OK when the account is already suspended, so `already` cannot be told here)
    final = terminal_of(events, "amb-1")[0]
    assert (final.status, final.attempt) == ("succeeded", 2)
    retry = [e for e in events if e.status == "retrying"][0]
    assert retry.error is not None and retry.error.kind == "timeout"
    assert len(whm.app.ledger.changes()) == 1
    # And both attempts are in the history, without the command's args
    history = runtime.store.history("amb-1")
    assert [(h["attempt"], h["result"]) for h in history] == [(1, "retrying"), (2, "succeeded")]
    assert history[0]["error"]["kind"] == "timeout" and "example" not in str(history)


def test_a_message_queued_by_an_older_worker_without_its_command_runs_from_the_command_in_its_record(
    redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for
) -> None:
    # Given a record that still holds its command and a Dramatiq message that names only the id,
    # as workers before commands travelled in their messages left them queued
    from dramatiq import Message

    from schemas.commands import validate_command
    from workers.queue.messages import actor_name_for

    settings = settings_for({"whm1": ("whm", whm)})
    command = validate_command(suspend("old-1"))
    redis_client.hset(settings.keys.command("old-1"), mapping={
        "fp": "0" * 64, "status": "queued", "attempts": 0, "gen": 1, "command": command.to_json()})
    runtime = runtime_for(settings)
    legacy: Message[object] = Message(queue_name="default", actor_name=actor_name_for("default"), args=("old-1",),
                                      kwargs={}, options={"mailops_gen": 1})
    # When a current worker takes the message
    runtime.broker.enqueue(legacy)
    events = wait_for_terminal(redis_client, {"old-1"})
    # Then it ran the stored command once
    assert [e.status for e in terminal_of(events, "old-1")] == ["succeeded"]
    assert [(c.target, c.new) for c in whm.app.ledger.changes()] == [("example", "suspended")]


def test_a_success_whose_turn_was_overtaken_before_its_commit_reports_what_the_commit_did(
    redis_client: redis.Redis, whm: SandboxServer, settings_for
) -> None:
    # Given an abuse suspend of ``example`` that took its turn (50 ms lease) and made its panel call ...
    from datetime import timedelta

    from schemas.commands import validate_command
    from tests.clock import SESSION_START, iso
    from workers.attempt.ordering import TargetGuard
    from workers.backends.base import PanelResult
    from workers.queue.middleware.lifecycle import Lifecycle

    def order(id: str, name: str, minutes: int) -> dict[str, object]:
        at = iso(SESSION_START + timedelta(minutes=minutes))
        return {**suspend(id, command=name), "producer": "abuse-detector", "reason": "abuse", "issued_at": at}

    settings = settings_for({"whm1": ("whm", whm)})
    guard = TargetGuard(redis_client, settings.keys, lease_ttl_ms=50)
    slow = validate_command(order("slow-1", "suspend_outgoing", 0))
    pending = guard.complete_later(guard.take(slow, "1-0"), lambda c: PanelResult())
    # ... and, its lease run out, a newer unsuspend of the same reason took the turn and committed
    time.sleep(0.2)
    newer = guard.take(validate_command(order("new-1", "unsuspend_outgoing", 1)), "2-0")
    commit(guard, newer)
    redis_client.hset(settings.keys.command("slow-1"), mapping={"status": "running", "attempts": 1})
    # When the worker ends the first command, its commit sent with the terminal event
    Lifecycle(CommandStore(redis_client, settings), "w-1")._finish(
        slow, "succeeded", 1, details=pending.expected.details, pending=pending)
    # Then there is one terminal event, and it reports the stale commit, not the holds it expected
    events = [e for e in read_events(redis_client) if e.id == "slow-1"]
    assert [e.status for e in events] == ["succeeded"]
    assert pending.expected.details["holds"]["after"] == ["abuse"]
    assert events[0].details["holds"]["after"] == []
    assert "lease expired" in events[0].details["holds"]["note"]


def test_a_worker_thread_opens_its_own_redis_connection_as_it_boots(redis_client: redis.Redis, settings_for, whm) -> None:
    # Given the lifecycle middleware of a worker
    settings = settings_for({"whm1": ("whm", whm)})
    lifecycle = Lifecycle(CommandStore(redis.Redis.from_url(str(settings.redis_url)), settings), "w-1")
    seen: list[bool] = []

    def boot() -> None:
        lifecycle.after_worker_thread_boot(dramatiq.get_broker(), None)
        seen.append(own_connection(lifecycle.store.client.connection_pool)._sock is not None)

    # When a worker thread boots
    thread = threading.Thread(target=boot)
    thread.start()
    thread.join()
    # Then its own connection is open before it runs anything
    assert seen == [True]
