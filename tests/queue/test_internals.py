"""The Dramatiq and redis-py internals mailops overrides are still the ones it was written against."""

from __future__ import annotations

from pathlib import Path

import dramatiq.brokers.redis

from workers.queue.internals import Internal, callable_fingerprint, current, drift, file_fingerprint

DISPATCH = Path(dramatiq.brokers.redis.__file__).parent / "redis" / "dispatch.lua"


def test_the_installed_dramatiq_and_redis_py_match_every_pinned_internal() -> None:
    assert drift() == []


def test_a_modified_copy_of_dramatiq_dispatch_lua_is_reported_with_what_to_recheck(tmp_path: Path) -> None:
    changed = tmp_path / "dispatch.lua"
    changed.write_bytes(DISPATCH.read_bytes().replace(b"local queue_name = ARGV[3]", b"local queue_name = ARGV[4]", 1))
    assert changed.read_bytes() != DISPATCH.read_bytes()

    def read(piece: Internal) -> str:
        return file_fingerprint(changed.read_bytes()) if piece.where.endswith("dispatch.lua") else current(piece)

    [line] = drift(read)
    assert "dispatch.lua changed" in line and "re-check queue/broker.MailopsBroker._dispatch" in line


def test_an_overridden_consumer_method_whose_signature_changed_is_reported() -> None:
    class ChangedConsumer:
        def ack(self, message: object, *, requeue: bool) -> None: ...

    def read(piece: Internal) -> str:
        if piece.where.endswith("_RedisConsumer.ack"):
            return callable_fingerprint(piece, ChangedConsumer.ack)
        return current(piece)

    [line] = drift(read)
    assert "_RedisConsumer.ack changed" in line and "broker.WakingConsumer.ack" in line


def test_a_consumer_that_stopped_setting_an_attribute_the_broker_reads_is_reported() -> None:
    class ChangedConsumer:
        def __init__(self, broker: object, queue_name: str, prefetch: int, timeout: int) -> None:
            self.broker, self.queue_name, self.prefetch, self.timeout = broker, queue_name, prefetch, timeout
            self.queued_message_ids: set[str] = set()
            self.misses = 0

    def read(piece: Internal) -> str:
        if piece.where.endswith("__init__#sets"):
            return callable_fingerprint(piece, ChangedConsumer.__init__)
        return current(piece)

    [line] = drift(read)
    assert "__init__#sets changed" in line and "found 'queued_message_ids misses prefetch timeout queue_name broker'" in line

