"""A small Python API for producers: publish a command, wait for its terminal event.

::

    producer = Producer("redis://localhost:6379/0", producer="billing", key=b"...")
    command_id = producer.publish("unsuspend_outgoing", {"user": "example"}, backend="whm1")
    event = producer.wait(command_id, timeout=30)

It speaks the wire contract and nothing else (one ``XADD`` with a field ``body``), so a producer
needs no worker code. With a ``key`` every command is signed (:func:`workers.ingest.signing.sign`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import redis

from schemas.events import Event
from workers import constants
from workers.errors import MailopsError
from workers.ingest.signing import sign
from workers.store.wire import as_text


class WaitTimeout(MailopsError):
    """No terminal event for the command arrived in time."""

    kind = "timeout"


def new_command_id(prefix: str = "p") -> str:
    """A fresh idempotency key, for commands the caller did not name."""
    return f"{prefix}-{uuid.uuid4().hex}"


def build_body(
    command: str,
    args: Mapping[str, Any],
    *,
    producer: str,
    id: str,
    key: bytes | None = None,
    issued_at: datetime | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The command as a JSON object, signed when ``key`` is given; ``None`` fields are left out."""
    body: dict[str, Any] = {
        "id": id,
        "command": command,
        "args": dict(args),
        "producer": producer,
        "issued_at": (issued_at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
    }
    body.update({name: value for name, value in fields.items() if value is not None})
    if key is not None:
        body["signature"] = sign(body, key)
    return body


class Producer:
    """Publishes commands on the commands stream and waits for their outcome."""

    def __init__(
        self,
        redis_url_or_client: str | redis.Redis,
        *,
        producer: str,
        key: bytes | None = None,
        commands_stream: str = constants.DEFAULT_COMMANDS_STREAM,
        events_stream: str = constants.DEFAULT_EVENTS_STREAM,
        keys: constants.Keys | None = None,
    ) -> None:
        if isinstance(redis_url_or_client, str):
            self.client = redis.Redis.from_url(redis_url_or_client)
            self._owns_client = True
        else:
            self.client = redis_url_or_client
            self._owns_client = False
        self.producer = producer
        self.key = key
        self.commands_stream = commands_stream
        self.events_stream = events_stream
        self.keys = keys or constants.Keys()
        #: Events-stream position just before each command this producer sent (where wait starts).
        self._cursors: dict[str, str] = {}

    def publish(
        self,
        command: str,
        args: Mapping[str, Any],
        *,
        backend: str | None = None,
        id: str | None = None,
        priority: str | None = None,
        reason: str | None = None,
        reply_to: str | None = None,
        batch: str | None = None,
        issued_at: datetime | None = None,
    ) -> str:
        """Add one command to the commands stream; return its id (generated when not given)."""
        command_id = id or new_command_id()
        body = build_body(
            command, args, producer=self.producer, id=command_id, key=self.key, issued_at=issued_at,
            backend=backend, priority=priority, reason=reason, reply_to=reply_to, batch=batch,
        )
        self.publish_body(body)
        return command_id

    def publish_body(self, body: Mapping[str, Any]) -> str:
        """Add an already-built command object as it is (signed or not); return its id."""
        command_id = str(body.get("id") or "")
        self._cursors[command_id] = self._events_tail()
        self.client.xadd(self.commands_stream, {constants.BODY_FIELD: orjson.dumps(dict(body))})
        return command_id

    def wait(self, command_id: str, timeout: float = 30.0) -> Event:
        """The terminal event of ``command_id``; raises :class:`WaitTimeout` when none came in time.

        Terminal means any status in :data:`~schemas.events.TERMINAL_STATUSES`: ``succeeded``,
        but also ``held`` (an unsuspend that lifted its own hold while another keeps the target
        suspended), ``rejected`` (``error.field``/``error.rule`` say why), ``failed``... Check
        ``event.status == "succeeded"`` before assuming the panel changed.

        Events are read from where the stream was when this producer published the command (or
        from now), so a rejection, duplicate or conflict answer is seen too; a command that ended
        (or was rejected) before the wait started is answered from its record.
        """
        cursor = self._cursors.get(command_id) or self._events_tail()
        deadline = time.monotonic() + timeout
        while True:
            if command_id not in self._cursors:
                pipe = self.client.pipeline(transaction=False)
                pipe.hget(self.keys.command(command_id), "outcome")
                pipe.get(self.keys.rejection(command_id))
                stored: Any = next(filter(None, pipe.execute()), None)
                if stored:
                    return Event.from_json(stored)
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                raise WaitTimeout(f"no terminal event for {command_id} within {timeout:g}s")
            reply: Any = self.client.xread({self.events_stream: cursor}, count=500, block=min(left_ms, 500))
            for _stream, items in reply or []:
                for entry_id, fields in items:
                    cursor = as_text(entry_id)
                    event = Event.from_json(fields[constants.BODY_FIELD.encode()])
                    if event.terminal and event.id == command_id:
                        self._cursors.pop(command_id, None)
                        return event

    def expect(self, *command_ids: str) -> None:
        """Remember the events stream's position now, before commands sent by other means (a
        pipeline, a dead-letter replay), so :meth:`wait` sees even their earliest answer."""
        tail = self._events_tail()
        self._cursors.update(dict.fromkeys(command_ids, tail))

    def _events_tail(self) -> str:
        last: Any = self.client.xrevrange(self.events_stream, count=1)
        if not last:
            return "0-0"
        entry_id = last[0][0]
        return as_text(entry_id)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
