"""The command record's atomic steps (workers/store/command_store.py) that the end-to-end tests reach
only through rare interleavings."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from schemas.commands import validate_command
from schemas.events import Event
from tests.conftest import read_events
from workers.attempt.ordering import CommitGuard
from workers.queue.messages import message_for
from workers.sandbox import SandboxServer
from workers.settings import Settings
from workers.store.command_store import CommandStore


def test_a_terminal_event_sent_with_a_commit_is_published_only_if_the_commit_left_the_state_it_describes(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer,
) -> None:
    # given: a queued record, and a target whose register and holds show a newer command committed
    settings = settings_for({"whm1": ("whm", whm)})
    store = CommandStore(redis_client, settings)
    keys = settings.keys
    redis_client.hset(keys.command("c-1"), mapping={"status": "running", "attempts": 1, "gen": 1})
    order, holds = keys.order("whm1", "example", "outgoing"), keys.holds("whm1", "example", "outgoing")
    redis_client.hset(order, "last:abuse", "2|0|0|0|newer")
    redis_client.hset(holds, "billing", "{}")
    event = Event(id="c-1", command="suspend_outgoing", backend="whm1", status="succeeded", terminal=True,
                  details={"holds": {"after": ["abuse"]}})
    expected = CommitGuard(order, "last:abuse", "1|0|0|0|c-1", holds, ("abuse",))
    # when: the event is sent guarded by the state this command's commit would have left
    _, refused = store.finish_after([], event, reply_to=None, guard=expected)
    # then: nothing is published or recorded
    assert refused == -1
    assert read_events(redis_client) == []
    assert redis_client.hget(keys.command("c-1"), "outcome") is None
    # and when the state is the one described, the event goes out once
    redis_client.hset(order, "last:abuse", "1|0|0|0|c-1")
    redis_client.delete(holds)
    redis_client.hset(holds, "abuse", "{}")
    _, ended = store.finish_after([], event, reply_to=None, guard=expected)
    assert ended == 1
    assert [e.status for e in read_events(redis_client)] == ["succeeded"]


def test_admits_sent_ahead_to_a_redis_that_lost_its_scripts_still_run(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer,
) -> None:
    # Given a Redis that restarted (no scripts loaded)
    settings = settings_for({"whm1": ("whm", whm)})
    store = CommandStore(redis_client, settings)
    redis_client.script_flush()
    # When ingest sends two admits ahead and reads their verdicts
    commands = [validate_command({"id": f"ns-{i}", "command": "suspend_outgoing", "backend": "whm1",
                                  "args": {"user": "example"}, "producer": "abuse"}) for i in range(2)]
    batch = store.admit_ahead([store.admit_keys_args(c, fingerprint="f" * 32, entry=f"{i + 1}-0",
                                                     message=message_for(c, entry=f"{i + 1}-0"))
                               for i, c in enumerate(commands)])
    # Then both ran (each came back NOSCRIPT and was run again, loading the script) and were accepted
    assert batch.verdicts() == ["accepted", "accepted"]
    assert [e.status for e in read_events(redis_client)] == ["accepted", "accepted"]


def test_admission_indexes_a_new_id_by_target_backend_producer_and_batch_and_trims_entries_older_than_the_ttl(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer,
) -> None:
    # Given an index entry older than the record TTL (its record is gone)
    settings = settings_for({"whm1": ("whm", whm)})
    store, keys = CommandStore(redis_client, settings), settings.keys
    stale = int(time.time() * 1000) - settings.idempotency_ttl_s * 1000 - 60_000
    redis_client.zadd(keys.command_index_by("target", "example"), {"gone": stale})
    # When a command of a batch is admitted (its fingerprint starts 00: one of the commands that trim),
    # and then the same id again (a duplicate)
    command = validate_command({"id": "ix-1", "command": "suspend_outgoing", "backend": "whm1", "batch": "b-1",
                                "args": {"user": "example"}, "producer": "abuse"})
    for entry in ("1-0", "2-0"):
        batch = store.admit_ahead([store.admit_keys_args(command, fingerprint="0" * 32, entry=entry,
                                                         message=message_for(command, entry=entry))])
        assert batch.verdicts() is not None
    # Then the id is in each index once and the stale entry is trimmed
    for key in (keys.command_index, keys.command_index_by("target", "example"), keys.command_index_by("backend", "whm1"),
                keys.command_index_by("producer", "abuse"), keys.command_index_by("batch", "b-1")):
        assert [m.decode() for m in redis_client.zrange(key, 0, -1)] == ["ix-1"], key
    # And the per-target and per-batch sets (one per account: many) expire with their last record
    for key in (keys.command_index_by("target", "example"), keys.command_index_by("batch", "b-1")):
        assert 0 < redis_client.ttl(key) <= settings.idempotency_ttl_s
    assert [m.decode() for m in redis_client.zrange(keys.batch_index, 0, -1)] == ["b-1"]


def test_a_command_runs_alone_only_after_two_shared_deaths_and_only_a_death_inside_its_alone_run_counts(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer,
) -> None:
    from workers.constants import SUSPECT_AFTER_SHARED_LOSSES
    from workers.store.lua import run_together

    settings = settings_for({"whm1": ("whm", whm)})
    store = CommandStore(redis_client, settings)
    redis_client.hset(settings.keys.command("c-1"), mapping={"status": "queued", "attempts": 0, "gen": 1})

    def begin() -> tuple[int, bool, bool]:
        attempt = CommandStore.attempt_from(run_together(redis_client, [store.begin_call("c-1", "w-1-x", 1)])[0])
        assert attempt.should_run
        return attempt.number, attempt.lost, attempt.alone

    # Given a command whose first attempt is running (a later begin finds it still running: its worker died)
    assert begin() == (1, False, False)
    # When its worker dies while it shares the process: not counted, and it still runs beside others
    assert SUSPECT_AFTER_SHARED_LOSSES == 2
    assert begin() == (1, True, False)
    # And a second shared death makes it a suspect: still not counted, but it runs alone next
    assert begin() == (1, True, True)
    # When its worker dies after its alone run's calls ended (the result not yet written): not counted
    store.mark_alone("c-1", 1)
    store.unmark_alone("c-1")
    assert begin() == (1, True, True)
    # When its worker dies during its alone run: counted
    store.mark_alone("c-1", 1)
    assert begin() == (2, True, True)
    history = store.history("c-1")
    assert [(h["attempt"], h["counted"]) for h in history] == [(1, False), (1, False), (1, False), (1, True)]
    assert history[0]["error"]["message"].endswith("not counted")
    assert history[1]["error"]["message"].endswith("next run alone")


def test_a_command_lost_with_its_worker_still_reads_before_resending_after_it_waited(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer,
) -> None:
    from workers.store.lua import run_together

    settings = settings_for({"whm1": ("whm", whm)})
    store = CommandStore(redis_client, settings)
    redis_client.hset(settings.keys.command("c-2"), mapping={"status": "queued", "attempts": 0, "gen": 1})

    def begin(generation: int) -> tuple[int, bool]:
        attempt = CommandStore.attempt_from(run_together(redis_client, [store.begin_call("c-2", "w-1-x", generation)])[0])
        assert attempt.should_run
        return attempt.number, attempt.lost

    # Given a command whose first attempt died with a worker it shared (not counted: it runs as 1 again)
    assert begin(1) == (1, False)
    assert begin(1) == (1, True)
    # When that run waits instead (a full backend, an open breaker): schedule_retry(uncount=True)
    # leaves the record waiting at the next generation and gives the attempt back
    redis_client.hset(settings.keys.command("c-2"), mapping={"status": "waiting", "gen": 2})
    redis_client.hincrby(settings.keys.command("c-2"), "attempts", -1)
    # Then the run after the wait still knows an attempt may have reached the panel unrecorded
    assert begin(2) == (1, True)
