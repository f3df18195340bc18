"""The producer library: publish (signed with a key), wait for the terminal event, time out by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis

from tests.conftest import read_events, wait_for_terminal
from workers.ingest.signing import verify
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.settings import Settings
from workers.store.embedded_redis import EmbeddedRedis
from workers.tools.producer import Producer, WaitTimeout


def only_entry(client: redis.Redis) -> dict[str, object]:
    entries: Any = client.xrange("mailops:commands")
    ((_entry, fields),) = entries
    body: dict[str, object] = orjson.loads(fields[b"body"])
    return body


def test_publish_with_a_key_signs_the_command_so_that_verify_accepts_it(redis_server: EmbeddedRedis,
                                                                         redis_client: redis.Redis) -> None:
    # Given a producer with a signing key
    with Producer(redis_server.url, producer="billing", key=b"billing-key") as producer:
        # When it publishes a command
        command_id = producer.publish("unsuspend_outgoing", {"user": "example"}, backend="whm1", reason="billing")
    # Then the stream entry carries a signature that verifies under that key only, over every field sent
    body = only_entry(redis_client)
    assert (body["id"], body["producer"], body["backend"], body["reason"]) == (command_id, "billing", "whm1", "billing")
    assert isinstance(body["signature"], str)
    assert verify(body, b"billing-key", body["signature"])
    assert not verify(body, b"another-key", body["signature"])
    assert not verify(body | {"args": {"user": "other"}}, b"billing-key", body["signature"])


def test_publish_without_a_key_sends_no_signature(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    with Producer(redis_server.url, producer="billing") as producer:
        producer.publish("unsuspend_outgoing", {"user": "example"}, id="plain-1")
    body = only_entry(redis_client)
    assert body["id"] == "plain-1" and "signature" not in body


def test_publish_then_wait_returns_the_terminal_event_from_a_running_worker(
        redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
        runtime_for: Callable[..., Runtime]) -> None:
    # Given a running worker
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    producer = Producer(redis_client, producer="abuse-detector")
    # When a producer publishes and waits
    command_id = producer.publish("suspend_outgoing", {"user": "example"}, backend="whm1", id="lib-1")
    event = producer.wait(command_id, timeout=30)
    # Then it gets the terminal event (not `accepted`), and the panel changed once
    assert (event.id, event.status, event.terminal, event.producer) == ("lib-1", "succeeded", True, "abuse-detector")
    assert [c.target for c in whm.app.ledger.changes()] == ["example"]
    # and a later wait for the same command is answered from its record
    again = Producer(redis_client, producer="abuse-detector").wait("lib-1", timeout=5)
    assert (again.id, again.status) == ("lib-1", "succeeded")


def test_wait_sees_a_rejection_as_the_terminal_event(redis_client: redis.Redis, whm: SandboxServer,
                                                     settings_for: Callable[..., Settings],
                                                     runtime_for: Callable[..., Runtime]) -> None:
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    producer = Producer(redis_client, producer="abuse-detector")
    event = producer.wait(producer.publish("suspend_outgoing", {"user": "Not Valid"}, backend="whm1", id="lib-bad"),
                          timeout=30)
    assert (event.status, event.error and event.error.field) == ("rejected", "args.user")


def test_wait_without_a_worker_raises_wait_timeout_naming_the_command(redis_client: redis.Redis) -> None:
    # Given no worker runs
    producer = Producer(redis_client, producer="abuse-detector")
    command_id = producer.publish("suspend_outgoing", {"user": "example"}, id="lib-late")
    # When the producer waits briefly, Then it gets the named error (a MailopsError of kind timeout)
    with pytest.raises(WaitTimeout, match="no terminal event for lib-late within 0.3s") as raised:
        producer.wait(command_id, timeout=0.3)
    assert raised.value.kind == "timeout"
    assert read_events(redis_client) == []


def test_a_wait_begun_after_the_rejection_is_answered_from_the_rejection_record(
        redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
        runtime_for: Callable[..., Runtime]) -> None:
    # Given a command rejected before anyone waited for it
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    Producer(redis_client, producer="abuse-detector").publish("suspend_outgoing", {"user": "Not Valid"}, id="lib-gone")
    wait_for_terminal(redis_client, {"lib-gone"})
    # When another producer object waits for it, Then it gets the rejection, not a timeout
    event = Producer(redis_client, producer="abuse-detector").wait("lib-gone", timeout=5)
    assert (event.status, event.error and event.error.field) == ("rejected", "args.user")


def test_wait_returns_held_for_an_unsuspend_another_hold_keeps_suspended(
        redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
        runtime_for: Callable[..., Runtime]) -> None:
    # Given abuse's suspension
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    abuse = Producer(redis_client, producer="abuse-detector")
    assert abuse.wait(abuse.publish("suspend_outgoing", {"user": "example"}, backend="whm1")).status == "succeeded"
    # When billing unsuspends and waits
    billing = Producer(redis_client, producer="billing")
    event = billing.wait(billing.publish("unsuspend_outgoing", {"user": "example"}, backend="whm1"), timeout=30)
    # Then the answer is `held` (terminal, no error), never `succeeded`, and says who holds it
    assert (event.status, event.terminal, event.error) == ("held", True, None)
    assert event.details["holds"]["after"] == ["abuse-detector"] and event.details["holds"]["panel_called"] is False
