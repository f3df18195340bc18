"""Doorbells (workers/queue/broker.py): every path that puts a message on a queue rings it, so idle
consumers can wait long on their doorbells instead of polling Redis."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from dramatiq.message import Message

from schemas.commands import validate_command
from schemas.events import Event
from tests.conftest import wait_until
from workers.attempt.limits import BackendLimits
from workers.queue.broker import IDLE_WAIT_MS, MailopsBroker, build_broker
from workers.queue.messages import message_for
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.settings import Settings
from workers.store.command_store import CommandStore

COMMAND = {"id": "bell-1", "command": "suspend_outgoing", "backend": "whm1", "args": {"user": "example"},
           "producer": "abuse"}


def broker_and_message(client: redis.Redis, settings: Settings) -> tuple[MailopsBroker, dramatiq.Message[Any]]:
    """The broker a worker runs on, with the queue of a message for ``COMMAND`` declared."""
    broker = build_broker(client, settings, [])
    message: dramatiq.Message[Any] = message_for(validate_command(COMMAND))
    broker.declare_queue(message.queue_name)
    return broker, message


def tokens(client: redis.Redis, settings: Settings, queue: str) -> int:
    return int(client.llen(settings.keys.dramatiq.doorbell(queue)))


def test_a_retry_rings_the_delay_queue_it_is_scheduled_on(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    settings = settings_for({"whm1": ("whm", whm)})
    store = CommandStore(redis_client, settings)
    redis_client.hset(settings.keys.command("bell-1"), mapping={"status": "running", "attempts": 1})
    event = Event(id="bell-1", command="suspend_outgoing", backend="whm1", status="retrying")
    message = message_for(validate_command(COMMAND))
    store.schedule_retry(event, generation=2, reply_to=None, message=message, delay_ms=1000, attempt={"result": "retry"})
    assert tokens(redis_client, settings, f"{message.queue_name}.DQ") == 1


def test_dramatiq_enqueues_and_requeues_ring_the_queue_they_use(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given the broker a worker runs on
    settings = settings_for({"whm1": ("whm", whm)})
    broker, message = broker_and_message(redis_client, settings)
    queue = message.queue_name
    # When a message is enqueued now, another with a delay, and stranded messages are requeued
    broker.enqueue(message)
    broker.enqueue(message, delay=5000)
    broker.strand(queue, ["x"])
    broker.requeue_stranded()
    # Then each rang the queue it put the message on
    assert tokens(redis_client, settings, queue) == 2
    assert tokens(redis_client, settings, f"{queue}.DQ") == 1


def test_an_idle_worker_waits_on_its_doorbells_instead_of_polling_redis(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
        whm: SandboxServer) -> None:
    # Given a worker with nothing to do (six consumers: three queues and their delay queues)
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    time.sleep(2 * IDLE_WAIT_MS / 1000)
    redis_client.config_resetstat()
    # When it idles for three seconds
    time.sleep(3)
    # Then Redis ran a few dozen commands a second for it (doorbell waits, a fetch behind each, the
    # liveness heartbeat, the ingest read, and the commands their scripts run: ~35/s measured), not
    # the ~270/s of a poll every 100 ms per consumer
    stats: Any = redis_client.info("commandstats")
    calls = sum(int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_config", "cmdstat_info"))
    assert calls < 3 * 100, stats


def test_messages_reaped_from_a_dead_worker_ring_their_queue(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a worker that died holding one message of the urgent queue
    settings = settings_for({"whm1": ("whm", whm)})
    broker = build_broker(redis_client, settings, [])
    broker.declare_queue("urgent")
    dq = settings.keys.dramatiq  # (reap.lua builds the same names itself)
    redis_client.zadd(dq.heartbeats, {"dead-worker": 0})
    redis_client.sadd(dq.acks("dead-worker", "urgent"), "m1")
    redis_client.hset(dq.messages("urgent"), "m1", "{}")
    # When a live worker reaps, then the message is back on its queue and the queue was rung
    assert broker.heartbeat_and_reap() == 1
    assert redis_client.lrange(dq.queue("urgent"), 0, -1) == [b"m1"]
    assert tokens(redis_client, settings, "urgent") == 1


def test_a_consumer_waiting_on_its_doorbell_returns_the_message_that_rang_it_from_the_same_call(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given an idle consumer of an empty queue, waiting on its doorbell in another thread
    settings = settings_for({"whm1": ("whm", whm)})
    broker, message = broker_and_message(redis_client, settings)
    consumer = broker.consume(message.queue_name, prefetch=4, timeout=100)
    got: list[Any] = []
    others = {c["id"] for c in redis_client.client_list()}
    waiter = threading.Thread(target=lambda: got.append(next(consumer)))
    waiter.start()
    # (its thread's own connection, blocked in BLPOP)
    wait_until(lambda: any(c["id"] not in others and c["cmd"] == "blpop" and "b" in c["flags"]
                           for c in redis_client.client_list()))
    # When a message is queued (which rings the doorbell)
    broker.enqueue(message)
    waiter.join(timeout=5)
    # Then the call that was waiting hands it out: the fetch rode behind the wait, in the same
    # write, so no second round trip was needed
    assert [m.message_id if m else None for m in got] == [message.message_id]


def test_a_fetch_sent_behind_a_long_wait_never_moves_the_heartbeat_back(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a worker whose heartbeat was refreshed a minute "later" than the consumer's clock
    settings = settings_for({"whm1": ("whm", whm)})
    broker, message = broker_and_message(redis_client, settings)
    message = broker.enqueue(message)
    later = int(time.time() * 1000) + 60_000
    redis_client.zadd(settings.keys.dramatiq.heartbeats, {broker.broker_id: later})
    # When its consumer fetches (with the time it started waiting)
    fetched = next(broker.consume(message.queue_name, prefetch=4, timeout=100))
    # Then it got the message, in the process's ack set, and the heartbeat stayed where it was
    assert fetched is not None and fetched.message_id == message.message_id
    assert redis_client.smembers(settings.keys.dramatiq.acks(broker.broker_id, message.queue_name)) == {
        message.options["redis_message_id"].encode()}
    assert redis_client.zscore(settings.keys.dramatiq.heartbeats, broker.broker_id) == later


def test_a_closing_consumer_puts_back_what_it_fetched_and_did_not_hand_out(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a consumer that fetched three messages in one go and handed out one
    settings = settings_for({"whm1": ("whm", whm)})
    broker, message = broker_and_message(redis_client, settings)
    queued = [broker.enqueue(message.copy(message_id=f"m-{i}")) for i in range(3)]
    consumer = broker.consume(message.queue_name, prefetch=4, timeout=100)
    handed = next(consumer)
    assert handed is not None and handed.message_id == "m-0"
    # When it closes (the worker is stopping)
    consumer.close()
    # Then the other two are back on their queue, no longer held by this process
    dq = settings.keys.dramatiq
    redis_ids = [m.options["redis_message_id"].encode() for m in queued]
    assert redis_client.lrange(dq.queue(message.queue_name), 0, -1) == redis_ids[1:]
    assert redis_client.smembers(dq.acks(broker.broker_id, message.queue_name)) == {redis_ids[0]}


def test_a_consumer_with_nothing_to_put_back_closes_without_a_redis_call(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a consumer holding nothing (as every consumer of a stopping worker's delay queues does)
    settings = settings_for({"whm1": ("whm", whm)})
    broker, message = broker_and_message(redis_client, settings)
    consumer = broker.consume(message.queue_name, prefetch=4, timeout=100)
    redis_client.config_resetstat()
    # When the stopping worker requeues its (empty) delay queue and closes it
    consumer.requeue(iter([]))
    consumer.close()
    # Then Redis saw nothing from it (during an outage each call was a round of reconnect attempts)
    stats: Any = redis_client.info("commandstats")
    assert set(stats) <= {"cmdstat_config|resetstat", "cmdstat_info"}, stats


def test_a_fetch_behind_a_wait_runs_on_a_redis_that_lost_its_scripts(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a queued message, a consumer that found its queue empty once (so its next look waits),
    # and a Redis that restarted (no scripts loaded)
    settings = settings_for({"whm1": ("whm", whm)})
    broker, message = broker_and_message(redis_client, settings)
    consumer = broker.consume(message.queue_name, prefetch=4, timeout=100)
    assert next(consumer) is None
    message = broker.enqueue(message)
    redis_client.script_flush()
    # When it waits and fetches in one write, then the fetch came back NOSCRIPT, ran again, and
    # handed out the message
    fetched = next(consumer)
    assert fetched is not None and fetched.message_id == message.message_id


def test_after_a_lost_connection_a_consumer_puts_back_what_its_ack_set_holds_and_no_thread_has(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a consumer that handed out one message, and a second message its fetch moved to the
    # process's ack set before Redis dropped the connection (the fetch's reply was lost)
    settings = settings_for({"whm1": ("whm", whm)})
    broker, message = broker_and_message(redis_client, settings)
    dq = settings.keys.dramatiq
    handed_message = broker.enqueue(message.copy(message_id="m-held"))
    consumer = broker.consume(message.queue_name, prefetch=1, timeout=100)
    handed = next(consumer)
    assert handed is not None and handed.message_id == "m-held"
    lost = broker.enqueue(message.copy(message_id="m-lost"))
    lost_id = lost.options["redis_message_id"]
    assert redis_client.lpop(dq.queue(message.queue_name)) == lost_id.encode()
    redis_client.sadd(dq.acks(broker.broker_id, message.queue_name), lost_id)
    broker.unsure.add(message.queue_name)
    # When the replacement consumer Dramatiq makes looks at the queue (a worker thread still runs
    # the handed-out message)
    again = next(broker.consume(message.queue_name, prefetch=1, timeout=100))
    # Then the lost one was put back and handed out again; the one a thread runs stayed where it was
    assert again is not None and again.message_id == "m-lost"
    assert redis_client.llen(dq.queue(message.queue_name)) == 0
    assert redis_client.sismember(dq.acks(broker.broker_id, message.queue_name),
                                  handed_message.options["redis_message_id"])


def test_the_fetch_parks_a_full_backends_deep_queue_and_hands_out_another_backends_command_behind_it(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given two backends of a fleet, whm1 capped at one call and that call in flight, and 300 bulk
    # commands for whm1 queued ahead of one for whm2
    settings = settings_for({"whm1": ("whm", whm), "whm2": ("whm", whm)}, whm1={"max_concurrency": 1})
    broker = build_broker(redis_client, settings, [])
    limits = BackendLimits(redis_client, settings)
    limits.publish_caps()
    limits.take(limits.request("whm1"))
    queued = [broker.enqueue(bulk_message(f"slow-{i}", "whm1")) for i in range(300)]
    fast = broker.enqueue(bulk_message("fast-1", "whm2"))
    consumer = broker.consume("bulk", prefetch=4, timeout=100)
    # When the consumer looks for work
    handed: list[Any] = []
    while not handed:
        handed = [m for m in [next(consumer)] if m is not None]
    # Then the whm2 command is what it hands out, and whm1's 300 wait in whm1's parked line
    # (none begun by a worker thread, none lost), released one per give-back
    assert [m.message_id for m in handed] == [fast.message_id]
    parked = {m.decode().split("/", 1)[1] for m in redis_client.zrange(settings.keys.backend_parked("whm1"), 0, -1)}
    assert parked == {m.options["redis_message_id"] for m in queued}
    assert redis_client.llen(settings.keys.dramatiq.queue("bulk")) == 0
    # And a whm2 command fetched while whm1 is full is never parked for whm1's sake
    assert redis_client.zcard(settings.keys.backend_parked("whm2")) == 0


def bulk_message(command_id: str, backend: str) -> Message[Any]:
    return message_for(validate_command({"id": command_id, "command": "suspend_outgoing", "backend": backend,
                                         "args": {"user": "u" + command_id.split("-")[1]}, "producer": "migration",
                                         "priority": "bulk"}))


def test_the_reap_that_finds_a_worker_dead_frees_the_backend_slots_it_held_and_no_others(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a backend capped at two calls, one slot held by a worker that is then killed (its
    # heartbeat stops) and one by a live worker, and a command parked for the backend
    settings = settings_for({"whm1": ("whm", whm)}, whm1={"max_concurrency": 2})
    dead, live = (build_broker(redis_client, settings, [], broker_id=name) for name in ("host-101-dead", "host-102-live"))
    dead_limits = BackendLimits(redis_client, settings, holder="host-101-dead")
    dead_limits.publish_caps()
    dead.heartbeat_and_reap()
    dead_lease = dead_limits.take(dead_limits.request("whm1"))
    live_limits = BackendLimits(redis_client, settings, holder="host-102-live")
    live_lease = live_limits.take(live_limits.request("whm1"))
    redis_client.zadd(settings.keys.dramatiq.heartbeats, {"host-101-dead": 1})  # its last beat: long ago
    # When the live worker's heartbeat reaps
    live.heartbeat_and_reap()
    # Then the dead worker's slot is free at once (not when its lease would expire), the live one's
    # is kept, and the heartbeat's safety net can release the parked command into the freed slot
    assert redis_client.zrange(settings.keys.backend_inflight("whm1"), 0, -1) == [live_lease.encode()]
    assert dead_lease.startswith("host-101-dead/")
    redis_client.zadd(settings.keys.backend_parked("whm1"), {"default/m1.whm1": 1})
    assert live_limits.release_parked() == 1
