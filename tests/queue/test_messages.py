"""The Dramatiq message that runs a command (workers/queue/messages.py), and the form it rests in."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import orjson
import pytest
import redis
from dramatiq import Message
from dramatiq.errors import DecodeError

from schemas.commands import validate_command
from workers.queue.broker import build_broker
from workers.queue.messages import COMMAND_OPTION, command_of, decoded, encoded, message_for
from workers.sandbox import SandboxServer
from workers.settings import Settings
from workers.store.command_store import CommandStore


def a_message(command_id: str = "msg-1") -> Message[object]:
    return message_for(validate_command({"id": command_id, "command": "suspend_outgoing", "backend": "whm1",
                                         "args": {"user": "example"}, "producer": "abuse"}), entry="1-0")


def test_a_message_is_written_without_the_fields_it_would_repeat_and_reads_back_whole() -> None:
    message = a_message()
    data = encoded(message)
    fields = orjson.loads(data)
    assert "kwargs" not in fields
    assert "redis_message_id" not in fields["options"]
    assert decoded(data) == message
    assert decoded(data).options["redis_message_id"] == message.message_id


def test_a_retried_message_keeps_a_redis_id_of_its_own() -> None:
    retried = a_message().copy(options={"redis_message_id": "other-id", "eta": 5})
    back = decoded(encoded(retried))
    assert back.options["redis_message_id"] == "other-id"
    assert back == retried


def test_a_message_in_dramatiqs_full_form_still_reads_and_dramatiqs_own_form_is_untouched() -> None:
    message = a_message()
    full = message.encode()  # Dramatiq's global encoder: mailops does not replace it
    assert b'"redis_message_id"' in full and b'"kwargs"' in full
    assert Message.decode(full) == message
    assert decoded(full) == message
    assert command_of(decoded(full)) == command_of(message)


def test_data_that_is_not_a_message_is_a_decode_error() -> None:
    for data in (b"not json", b"{}", b'{"message_id": "x"}', b"\xff"):
        with pytest.raises(DecodeError):
            decoded(data)


def test_an_admitted_command_rests_in_the_short_form(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given a command with a 36-character UUID id, admitted as ingest admits it
    settings = settings_for({"whm1": ("whm", whm)})
    command = validate_command({"id": str(uuid.uuid4()), "command": "suspend_outgoing", "backend": "whm1",
                                "args": {"user": "example"}, "producer": "abuse"})
    message = message_for(command, entry="1-0")
    store = CommandStore(redis_client, settings)
    batch = store.admit_ahead([store.admit_keys_args(command, fingerprint="f" * 32, entry="1-0", message=message)])
    assert batch.verdicts() == ["accepted"]
    # Then the queued message is the short form, and it reads back as the message that was queued
    stored = redis_client.hget(settings.keys.dramatiq.messages(command.queue), message.message_id)
    assert isinstance(stored, bytes)
    assert b"redis_message_id" not in stored and b"kwargs" not in stored
    assert decoded(stored) == message
    assert decoded(stored).options[COMMAND_OPTION] == message.options[COMMAND_OPTION]


def test_a_message_the_broker_enqueues_rests_in_the_short_form_with_a_short_redis_id(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given the broker a worker runs on (Dramatiq enqueues through it when a delayed message is due)
    settings = settings_for({"whm1": ("whm", whm)})
    broker = build_broker(redis_client, settings, [])
    message = a_message()
    broker.declare_queue(message.queue_name)
    # When it enqueues a message, now and with a delay
    sent = broker.enqueue(message)
    later = broker.enqueue(message, delay=5000)
    # Then each rests under a new Redis id (11 random characters, then its backend for the fetch),
    # in the short form, and reads back as sent
    backend = message.options[COMMAND_OPTION]["backend"]
    for queue, copy in ((message.queue_name, sent), (f"{message.queue_name}.DQ", later)):
        redis_id = copy.options["redis_message_id"]
        assert len(redis_id) == 11 + 1 + len(backend) and redis_id.endswith(f".{backend}")
        assert redis_id != message.message_id
        stored = redis_client.hget(settings.keys.dramatiq.messages(queue), redis_id)
        assert isinstance(stored, bytes) and b"kwargs" not in stored
        assert decoded(stored) == copy
    assert later.options["eta"] > 0
