"""Round trips on the thread's own connection, against the session's real Redis."""

from __future__ import annotations

import enum
import threading
import time
from pathlib import Path

import pytest
import redis
from redis.connection import PythonRespSerializer

import workers
from workers.settings import Settings
from workers.store.embedded_redis import EmbeddedRedis
from workers.store.redis_client import connect
from workers.store.wire import as_text, exchange, packed, send_ahead


class Status(enum.StrEnum):
    ACTIVE = "active"


@pytest.mark.parametrize("args", [
    ("SET", "key", "value"),
    ("EVALSHA", "a" * 40, 2, "k1", "k2", 1795330921088, -3, 0.25, b"\x00\xffraw", "ünïcødé ✓", ""),
    ("XADD", "stream", "*", "body", "x" * 10_000),
    ("HSET", Status.ACTIVE, "field", Status.ACTIVE, b"raw", memoryview(b"view")),
])
def test_commands_are_packed_byte_for_byte_as_redis_py_packs_them(args: tuple[object, ...]) -> None:
    # (hiredis packs the first three; the str subclass and the memoryview take the Python packer)
    reference = b"".join(bytes(part) for part in PythonRespSerializer(6000, redis.connection.Encoder(
        "utf-8", "strict", False).encode).pack(*args))
    assert packed([args]) == reference


@pytest.mark.parametrize("value", [True, None, object()])
def test_an_argument_redis_py_would_refuse_is_refused(value: object) -> None:
    with pytest.raises(redis.DataError):
        packed([("SET", "key", value)])


def test_every_reply_comes_back_in_order_with_an_error_in_its_own_place(redis_client: redis.Redis) -> None:
    replies = exchange(redis_client, [("SET", "a", "1"), ("INCR", "a"), ("HGET", "a", "f"), ("GET", "a")])
    assert replies[:2] == [b"OK", 2]
    assert isinstance(replies[2], redis.ResponseError) and "WRONGTYPE" in str(replies[2])
    assert replies[3] == b"2"


def test_a_connection_killed_between_calls_is_reopened_and_the_call_succeeds(
        redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    # Given a worker's client (retries on connection loss) whose thread used its connection once
    client = connect(Settings(redis_url=redis_server.url))
    first = exchange(client, [("CLIENT", "ID")])[0]
    # When Redis drops that connection
    assert redis_client.client_kill_filter(_id=first) == 1
    # Then the next call reconnects (a new client id) and gets its reply
    second = exchange(client, [("CLIENT", "ID")])[0]
    assert second != first
    client.close()


def test_each_thread_uses_its_own_connection(redis_client: redis.Redis) -> None:
    seen: list[int] = []

    def twice() -> None:
        seen.extend(exchange(redis_client, [("CLIENT", "ID")])[0] for _ in range(2))

    threads = [threading.Thread(target=twice) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Then each thread kept one connection across its calls, and no two threads shared one
    assert len(seen) == 6 and len(set(seen)) == 3


def test_a_command_sent_ahead_runs_at_once_and_its_reply_comes_with_the_next_round_trip(
        redis_client: redis.Redis) -> None:
    # When a command is sent ahead
    ahead = send_ahead(redis_client, [("SET", "ahead", "1"), ("HGET", "ahead", "f")])
    # Then Redis runs it without the caller reading anything (another client sees its effect)
    deadline = time.monotonic() + 5
    while redis_client.get("ahead") != b"1":
        assert time.monotonic() < deadline
        time.sleep(0.001)
    # And the thread's next round trip reads its replies first, then returns only its own
    assert exchange(redis_client, [("INCR", "ahead")]) == [2]
    replies = ahead.replies()
    assert replies is not None and replies[0] == b"OK" and isinstance(replies[1], redis.ResponseError)


def test_replies_no_round_trip_has_read_are_read_on_request(redis_client: redis.Redis) -> None:
    first = send_ahead(redis_client, [("INCR", "n")])
    second = send_ahead(redis_client, [("INCR", "n")])
    assert second.replies() == [2] and first.replies() == [1]
    assert exchange(redis_client, [("GET", "n")]) == [b"2"]


def test_a_connection_lost_after_a_send_ahead_loses_those_replies_and_no_reply_goes_astray(
        redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    # Given a worker's client whose thread sent ahead a command that has not answered yet
    client = connect(Settings(redis_url=redis_server.url))
    own = exchange(client, [("CLIENT", "ID")])[0]
    ahead = send_ahead(client, [("BLPOP", "never", 5)])
    # When Redis drops the connection before the reply comes
    time.sleep(0.05)
    assert redis_client.client_kill_filter(_id=own) == 1
    # Then the next round trip reconnects and gets its own replies, not the lost one's
    assert exchange(client, [("INCR", "counter"), ("CLIENT", "ID")])[0] == 1
    # And the command sent ahead says its replies were lost
    assert ahead.replies() is None and ahead.lost
    client.close()


def test_redis_replies_become_text_through_one_helper_only() -> None:
    # Given every module of the workers package but workers/store/wire.py
    package = Path(workers.__file__).parent
    others = [p for p in package.rglob("*.py") if p != package / "store" / "wire.py"]
    # Then none decodes a reply by hand: they all call workers.store.wire.as_text
    assert [str(p) for p in others if "decode() if isinstance(" in p.read_text(encoding="utf-8")] == []
    assert as_text(b"0-1") == "0-1" and as_text("0-1") == "0-1" and as_text(7) == "7"
