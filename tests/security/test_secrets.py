"""Passwords are sealed end to end: after a run, no plaintext rests in Redis, logs, events or Sentry."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
import sentry_sdk
from pydantic import SecretStr
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from tests.conftest import retry_for, wait_for_terminal
from tests.security.conftest import KEYS, signed
from workers import scrubbing
from workers.attempt.retry_policy import RetryPolicy
from workers.sandbox import SandboxServer
from workers.sandbox.server import Faults
from workers.sandbox.state import fingerprint
from workers.sandbox.whm import WhmSandbox
from workers.settings import ProducerConfig

PLAINTEXTS = [f"Plain-Secret-{i}-x7Q!&=?%#" for i in range(6)]


class CapturingTransport(Transport):
    """A Sentry transport that keeps every envelope in memory instead of sending it."""

    envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        CapturingTransport.envelopes.append(envelope)


@pytest.fixture
def sentry() -> Iterator[list[Envelope]]:
    CapturingTransport.envelopes = []
    sentry_sdk.init(dsn="http://public@127.0.0.1:9/1", transport=CapturingTransport, before_send=scrubbing.before_send,
                    default_integrations=True)
    yield CapturingTransport.envelopes
    sentry_sdk.get_client().close()
    sentry_sdk.init()


def dump_redis(client: redis.Redis) -> bytes:
    """Every key and value in Redis, whatever its type, as one blob."""
    parts: list[bytes] = []
    for key in client.scan_iter(count=1000):
        parts.append(key)
        kind = client.type(key).decode()
        value: Any
        if kind == "string":
            value = client.get(key)
        elif kind == "hash":
            value = client.hgetall(key)
        elif kind == "list":
            value = client.lrange(key, 0, -1)
        elif kind == "set":
            value = client.smembers(key)
        elif kind == "zset":
            value = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            value = client.xrange(key)
        else:
            value = kind
        parts.append(repr(value).encode())
    return b"\n".join(parts)


def test_no_plaintext_password_rests_in_redis_logs_events_or_sentry_after_adds_changes_and_dead_letters(
    redis_client: redis.Redis, whm: SandboxServer, secure_settings, runtime_for, caplog: pytest.LogCaptureFixture,
    sentry: list[Envelope], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a healthy sandbox and one that answers every call with HTTP 500
    broken_app = WhmSandbox(token="sandbox-whm-token")
    broken_app.add_account("broken")
    retry_for(monkeypatch, "addmail", RetryPolicy(max_attempts=2, min_backoff_ms=20, max_backoff_ms=50))
    retry_for(monkeypatch, "passwd", RetryPolicy(max_attempts=2, min_backoff_ms=20, max_backoff_ms=50))
    caplog.set_level(logging.DEBUG)
    caplog.handler.addFilter(scrubbing.SecretFilter())
    with SandboxServer(broken_app, faults=Faults(error_rate=1.0)) as broken:
        migration = ProducerConfig(name="migration", key=SecretStr(KEYS["migration"].decode()),
                                   commands=("addmail", "passwd"), backends=("*",))
        runtime_for(secure_settings({"whm1": ("whm", whm), "whm2": ("whm", broken)},
                                    producers={"migration": migration}))
        # When mailboxes are added and passwords changed: some succeed, one fails, two dead-letter
        def command(id: str, name: str, email: str, password: str, backend: str = "whm1") -> dict[str, Any]:
            args: dict[str, Any] = {"email": email, "password": password}
            return signed({"id": id, "command": name, "backend": backend, "producer": "migration", "args": args})

        bodies = [
            command("s-add-1", "addmail", "box1@example.example", PLAINTEXTS[0]),
            command("s-add-2", "addmail", "box2@example.example", PLAINTEXTS[1]),
            command("s-pw-1", "passwd", "box1@example.example", PLAINTEXTS[2]),
            command("s-pw-ghost", "passwd", "ghost@example.example", PLAINTEXTS[3]),
            command("s-add-dead", "addmail", "box@broken.example", PLAINTEXTS[4], backend="whm2"),
            command("s-pw-dead", "passwd", "box@broken.example", PLAINTEXTS[5], backend="whm2"),
        ]
        for body in bodies[:2]:
            redis_client.xadd("mailops:commands", {"body": orjson.dumps(body)})
        wait_for_terminal(redis_client, {"s-add-1", "s-add-2"}, timeout=20)
        for body in bodies[2:]:
            redis_client.xadd("mailops:commands", {"body": orjson.dumps(body)})
        events = wait_for_terminal(redis_client, {b["id"] for b in bodies}, timeout=40)
        # (a leak a careless handler might write, on purpose: it must reach neither log nor Sentry in clear)
        logging.getLogger("mailops.careless").error("call failed: {'password': '%s'} password=%s", PLAINTEXTS[0], PLAINTEXTS[1])
    statuses = {e.id: e.status for e in events if e.terminal}
    assert statuses == {"s-add-1": "succeeded", "s-add-2": "succeeded", "s-pw-1": "succeeded",
                        "s-pw-ghost": "failed", "s-add-dead": "dead_lettered", "s-pw-dead": "dead_lettered"}
    # Then the panel received the real passwords (opened in memory for the call)
    mailbox = whm.app.state.mailboxes["box1@example.example"]
    assert mailbox.password == fingerprint(PLAINTEXTS[2])
    # And no plaintext is anywhere in Redis (queues, records, dead letters, events, streams, audit)
    blob = dump_redis(redis_client)
    assert b"sealed:v1:" in blob
    sentry_sdk.flush()
    sentry_blob = b"".join(item.get_bytes() for env in sentry for item in env.items)
    assert sentry_blob, "the deliberate error log should have produced a Sentry event"
    for plaintext in PLAINTEXTS:
        assert plaintext.encode() not in blob
        assert plaintext not in caplog.text
        assert plaintext not in "".join(e.to_json().decode() for e in events)
        assert plaintext.encode() not in sentry_blob
