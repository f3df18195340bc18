"""Ingest: entries taken by a consumer that died are reclaimed, so nothing is lost before Dramatiq."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import orjson
import pytest
import redis

from tests.clock import ISSUED
from tests.conftest import add_command, read_events, wait_for_terminal, wait_until
from tests.test_end_to_end import suspend
from workers.constants import INGEST_GROUP
from workers.ingest.reader import Ingestor
from workers.metrics import REJECTIONS
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.settings import Settings
from workers.store.command_store import CommandStore
from workers.store.redis_client import connect

READ_AND_HANG = textwrap.dedent(
    """
    import sys, time
    from workers.store.command_store import CommandStore
    from workers.ingest.reader import Ingestor
    from workers.store.redis_client import connect
    from workers.settings import Settings
    settings = Settings(redis_url=sys.argv[1])
    client = connect(settings)
    ingestor = Ingestor(client, settings, CommandStore(client, settings), consumer="doomed")
    ingestor.ensure_group()
    entries = ingestor.read_batch(block_ms=2000)
    print(len(entries), flush=True)
    time.sleep(60)  # killed here: read, never admitted
    """
)


def test_entries_read_by_a_killed_ingest_consumer_are_reclaimed_and_run(
    redis_client: redis.Redis, redis_server, whm: SandboxServer, settings_for, runtime_for
) -> None:
    # Given commands in the stream
    ids = {f"k-{i}" for i in range(5)}
    for i in sorted(ids):
        add_command(redis_client, suspend(i, user="example" if i != "k-3" else "other"))
    # And an ingest consumer process that read them all and was killed before enqueueing
    proc = subprocess.Popen([sys.executable, "-c", READ_AND_HANG, redis_server.url], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "5"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    pending = redis_client.xpending("mailops:commands", "mailops-ingest")
    assert pending["pending"] == 5
    # When a worker starts with a short reclaim idle time
    runtime_for(settings_for({"whm1": ("whm", whm)}, ingest_claim_idle_ms=300))
    # Then every command is reclaimed and ends exactly once (commands for the same account issued
    # at the same time are ordered; the ones found older than the applied one end superseded)
    events = wait_for_terminal(redis_client, ids, timeout=20)
    terminal = [e for e in events if e.terminal]
    assert sorted(e.id for e in terminal if e.id) == sorted(ids)
    assert {e.status for e in terminal} <= {"succeeded", "superseded"}
    assert {e.id for e in terminal if e.status == "succeeded"} >= {"k-3"}
    assert {(c.target, c.new) for c in whm.app.ledger.changes()} == {("example", "suspended"), ("other", "suspended")}
    assert redis_client.xpending("mailops:commands", "mailops-ingest")["pending"] == 0


def test_an_admit_redis_refuses_is_answered_and_the_batch_around_it_is_admitted(
    redis_client: redis.Redis, whm: SandboxServer, settings_for
) -> None:
    # Given an ingest loop running, and a command whose record key Redis holds as another type
    settings = settings_for({"whm1": ("whm", whm)})
    redis_client.set(settings.keys.command("clash-1"), "not a hash")
    client = connect(settings)
    ingestor = Ingestor(client, settings, CommandStore(client, settings), consumer="loop")
    loop = threading.Thread(target=ingestor.run, daemon=True)
    loop.start()
    try:
        # When that command arrives between two valid ones, in one batch
        for i in ("ok-1", "clash-1", "ok-2"):
            add_command(redis_client, suspend(i))
        # Then (its admit's verdict coming back with the loop's next read) it gets a `rejected`
        # event naming the rule, the two around it are accepted, and nothing is left pending
        wait_for_terminal(redis_client, {"clash-1"}, timeout=10)
        # (on a busy machine the loop may read the three in more than one batch: wait for all)
        wait_until(lambda: {e.id for e in read_events(redis_client) if e.status == "accepted"} >= {"ok-1", "ok-2"},
                   timeout=10)
        wait_until(lambda: redis_client.xpending(settings.commands_stream, INGEST_GROUP)["pending"] == 0)
        events = read_events(redis_client)
    finally:
        ingestor.stop()
        loop.join(timeout=5)
    rejected = [e for e in events if e.id == "clash-1"]
    assert [(e.status, e.error and e.error.field, e.error and e.error.rule) for e in rejected] == [
        ("rejected", "body", "unadmittable")]
    assert {e.id for e in events if e.status == "accepted"} == {"ok-1", "ok-2"}
    assert not loop.is_alive()


def test_a_rejected_entry_replying_to_an_internal_key_neither_writes_there_nor_delays_the_command_behind_it(
    redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
    runtime_for: Callable[..., Runtime],
) -> None:
    # Given a running worker, and an internal key that exists (a command record, a hash)
    settings = settings_for({"whm1": ("whm", whm)})
    runtime_for(settings)
    add_command(redis_client, suspend("warm-1"))
    wait_for_terminal(redis_client, {"warm-1"})
    redis_client.hset("mailops:cmd:x", "status", "queued")
    before = redis_client.hgetall("mailops:cmd:x")
    # When an invalid entry naming it as reply_to arrives just ahead of a valid command (one
    # transaction: ingest reads them in one batch)
    pipe = redis_client.pipeline(transaction=True)
    bad = {"id": "bad-1", "command": "no_such_command", "args": {}, "producer": "ops", "issued_at": ISSUED,
           "reply_to": "mailops:cmd:x"}
    for body in (bad, suspend("ok-1")):
        pipe.xadd(settings.commands_stream, {"body": orjson.dumps(body)})
    pipe.execute()
    # Then the valid one ends within a second (a behaviour bound: no reclaim wait behind a Redis error)
    deadline = time.monotonic() + 1.0
    while not any(e.id == "ok-1" and e.terminal for e in read_events(redis_client)):
        assert time.monotonic() < deadline, "the valid command waited behind the rejected entry"
        time.sleep(0.01)
    # And the invalid one is rejected on the events stream only; the internal key is untouched
    events = read_events(redis_client)
    assert [e.status for e in events if e.id == "bad-1"] == ["rejected"]
    assert redis_client.hgetall("mailops:cmd:x") == before
    assert redis_client.xpending(settings.commands_stream, INGEST_GROUP)["pending"] == 0


@pytest.mark.parametrize(("reply_to", "rule"), [
    ("mailops:cmd:x", "reserved"),
    ("mailops:events", "reserved"),
    ("mailops:commands", "reserved"),
    ("mailops:anything-new", "reserved"),
    ("billing:state", "not_a_stream"),
])
def test_a_valid_command_whose_reply_to_is_not_a_stream_of_its_own_is_rejected_naming_the_rule(
    redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
    runtime_for: Callable[..., Runtime], reply_to: str, rule: str,
) -> None:
    # Given a running worker and a producer's own hash "billing:state"
    settings = settings_for({"whm1": ("whm", whm)})
    runtime_for(settings)
    redis_client.hset("billing:state", "k", "v")
    keys_before = set(redis_client.keys("*"))
    # When a valid command names reply_to
    body = {**suspend("c-1"), "reply_to": reply_to}
    add_command(redis_client, body)
    events = wait_for_terminal(redis_client, {"c-1"})
    # Then it is rejected with field reply_to and the rule, and nothing was written to that key
    (done,) = [e for e in events if e.id == "c-1"]
    assert done.status == "rejected" and done.error is not None
    assert (done.error.field, done.error.rule) == ("reply_to", rule)
    assert not redis_client.exists(reply_to) or reply_to in {"mailops:events", "mailops:commands", "billing:state"}
    assert redis_client.type("billing:state") == b"hash"
    # (the only keys written: the events stream and the id's rejection record)
    assert set(redis_client.keys("*")) - keys_before <= {b"mailops:events", b"mailops:rejected:c-1"}


def test_a_reply_to_stream_of_the_producers_own_receives_the_events(
    redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
    runtime_for: Callable[..., Runtime],
) -> None:
    settings = settings_for({"whm1": ("whm", whm)})
    runtime_for(settings)
    add_command(redis_client, {**suspend("c-1"), "reply_to": "billing:replies"})
    add_command(redis_client, {"id": "bad-1", "command": "no_such_command", "reply_to": "billing:replies"})
    wait_for_terminal(redis_client, {"c-1", "bad-1"})
    copied = read_events(redis_client, "billing:replies")
    assert {(e.id, e.status) for e in copied if e.terminal} == {("c-1", "succeeded"), ("bad-1", "rejected")}


def test_an_entry_with_two_body_fields_is_rejected_as_ambiguous_and_neither_runs(
    redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for
) -> None:
    # Given an entry carrying two commands in two `body` fields (as `XADD s * body A body B` makes)
    import orjson

    runtime_for(settings_for({"whm1": ("whm", whm)}))
    entry = redis_client.execute_command("XADD", "mailops:commands", "*", "body", orjson.dumps(suspend("two-1")),
                                         "body", orjson.dumps(suspend("two-2", user="other"))).decode()
    add_command(redis_client, suspend("after-1"))
    # When ingest reads it, then it is answered `rejected` on field `body`, rule `ambiguous`, and neither ran
    events = wait_for_terminal(redis_client, {"after-1"})
    rejected = [e for e in events if e.entry == entry]
    assert [(e.status, e.error and e.error.field, e.error and e.error.rule) for e in rejected] == [
        ("rejected", "body", "ambiguous")]
    assert not [e for e in events if e.id in ("two-1", "two-2") and e.status != "rejected"]
    assert [c.target for c in whm.app.ledger.changes()] == ["example"]  # after-1 alone


def test_a_command_for_an_unknown_backend_is_rejected_naming_field_backend_and_rule_unknown(
    redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for
) -> None:
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    add_command(redis_client, {**suspend("nob-1"), "backend": "nowhere"})
    events = wait_for_terminal(redis_client, {"nob-1"})
    [rejected] = [e for e in events if e.id == "nob-1"]
    assert rejected.status == "rejected" and rejected.error is not None
    assert (rejected.error.field, rejected.error.rule) == ("backend", "unknown")


def test_a_rejection_carries_batch_and_target_is_kept_as_a_record_and_counted(
    redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for
) -> None:
    # Given a worker; When a batch line with a bad backend and a line that fails the schema arrive
    settings = settings_for({"whm1": ("whm", whm)})
    runtime_for(settings)
    unknown = REJECTIONS.labels("unknown", "backend", "unknown")._value.get()
    add_command(redis_client, suspend("b-1-1", user="example") | {"backend": "whm9", "batch": "b-1"})
    add_command(redis_client, suspend("b-1-2", user="Bad User") | {"batch": "b-1"})
    events = wait_for_terminal(redis_client, {"b-1-1", "b-1-2"}, timeout=10)
    # Then each rejected event names its batch and target (as read, for the one the schema refused)
    finals = {e.id: e for e in events if e.terminal}
    assert {i: (e.status, e.batch, e.target) for i, e in finals.items()} == {
        "b-1-1": ("rejected", "b-1", "example"), "b-1-2": ("rejected", "b-1", "bad user")}
    assert finals["b-1-1"].error is not None and (finals["b-1-1"].error.field, finals["b-1-1"].error.rule) == (
        "backend", "unknown")
    # And each id keeps its rejection record, and the counter counts the refusal by producer, field and rule
    assert CommandStore(redis_client, settings).rejection("b-1-1") == finals["b-1-1"]
    assert REJECTIONS.labels("unknown", "backend", "unknown")._value.get() == unknown + 1
