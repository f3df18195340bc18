"""Ingest: the consumer group that turns commands-stream entries into Dramatiq messages.

Each entry is validated against the schemas, passed through the ingest gates (routing,
producer authentication, sealing of secrets...), then admitted atomically (see
:mod:`workers.store.command_store`). An invalid entry gets one ``rejected`` event naming the field
and rule and is acknowledged; the consumer never stops on bad input. Entries read by a
consumer that died are reclaimed with XAUTOCLAIM after ``ingest_claim_idle_ms``.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import redis

from schemas.commands import Command, parse_command
from schemas.events import ErrorInfo, Event
from workers import constants
from workers.errors import CommandError, CommandRejected, UnknownBackend
from workers.ingest.reply_streams import ReplyStreams
from workers.metrics import REJECTIONS
from workers.queue.messages import message_for
from workers.settings import Settings
from workers.store.command_store import AdmitBatch, CommandStore
from workers.store.wire import as_text, execute

logger = logging.getLogger(__name__)

#: Entries read per XREADGROUP call.
READ_COUNT = 200
#: Milliseconds XREADGROUP blocks waiting for new entries.
READ_BLOCK_MS = 500


@dataclass(frozen=True)
class Entry:
    """One commands-stream entry as read."""

    id: str
    fields: dict[bytes, bytes]
    #: Names of the fields the entry holds more than once (``fields`` keeps the last of each).
    repeated: frozenset[bytes] = frozenset()

    @classmethod
    def from_flat(cls, id: bytes | str, flat: list[bytes] | None) -> Entry:
        """An entry from its field/value list as Redis sends it (where a field may repeat)."""
        names = list((flat or [])[::2])
        return cls(as_text(id), dict(zip(names, (flat or [])[1::2], strict=True)),
                   frozenset(n for n in names if names.count(n) > 1) if len(set(names)) < len(names) else frozenset())

    @property
    def body(self) -> bytes | None:
        if constants.BODY_FIELD.encode() in self.repeated:
            raise CommandRejected("body", "ambiguous", "the entry has more than one 'body' field; none is run")
        return self.fields.get(constants.BODY_FIELD.encode())

    @functools.cached_property
    def decoded(self) -> dict[str, Any]:
        """The body as a JSON object, decoded once for every gate that reads it ({} when the body
        is absent, not JSON or not an object: ``parse_command`` rejects those)."""
        try:
            value = orjson.loads(self.fields.get(constants.BODY_FIELD.encode()) or b"{}")
        except orjson.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}


class IngestGate(Protocol):
    """A check or transformation every valid command passes before it is admitted.

    Raise :class:`~workers.errors.CommandRejected` (or another ``CommandError``) to refuse it.
    """

    def __call__(self, command: Command, entry: Entry) -> Command: ...


#: Hex digits of the payload fingerprint kept in each record (records written before this was
#: shortened hold 64; admit.lua compares their first 32).
FINGERPRINT_HEX = 32


def fingerprint(command: Command) -> str:
    """What "the same payload" means for the idempotency check.

    ``issued_at``, ``priority``, ``reply_to``, ``signature`` and ``batch`` may differ between a
    producer's retries of one intent, so they are left out.
    """
    canonical = {
        "command": command.command,
        "backend": command.backend,
        "args": command.args,
        "producer": command.producer,
        "reason": command.reason,
    }
    # 128 bits of SHA-256 tell two payloads for one id apart; the record keeps 32 hex digits.
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()[:FINGERPRINT_HEX]


def exc_field(exc: CommandError) -> str | None:
    """The command field a rejection names (``None`` for other errors)."""
    return exc.field if isinstance(exc, CommandRejected) else None


def rejection_event(exc: CommandError, entry: str | None, raw: dict[str, Any] | None,
                    command: Command | None = None) -> Event:
    """The ``rejected`` event for an entry (its stream id; ``None`` at the HTTP door), echoing
    whatever of it could be read: ``command`` when it passed the schema, else ``raw``."""
    raw = raw or {}

    def text(name: str, source: dict[str, Any] = raw) -> str | None:
        value = source.get(name)
        return value[:200] if isinstance(value, str) else None

    args: dict[str, Any] = raw["args"] if isinstance(raw.get("args"), dict) else {}
    if command is not None:
        target: str | None = command.target
    else:  # what the target would be, if the schema had accepted the args (see CommandArgs.target)
        target = next((value.lower() for name in ("email", "user", "domain") if (value := text(name, args))), None)

    if isinstance(exc, CommandRejected):
        error = ErrorInfo(kind="rejected", message=exc.message, field=exc.field, rule=exc.rule)
    elif isinstance(exc, UnknownBackend):
        error = ErrorInfo(kind=exc.kind, message=str(exc), field="backend", rule="unknown")
    else:
        error = ErrorInfo(kind=exc.kind, message=str(exc), field=getattr(exc, "field", None),
                          rule=getattr(exc, "rule", None))
    if command is not None:  # what the schema read (a generated id, a resolved backend)
        raw = {name: getattr(command, name) for name in ("id", "command", "backend", "producer", "batch")}
    return Event(
        id=text("id"),
        command=text("command"),
        backend=command.backend if command is not None else text("backend"),
        producer=text("producer"),
        status="rejected",
        terminal=True,
        entry=entry,
        batch=text("batch"),
        target=target,
        error=error,
    )


def answer_rejection(store: CommandStore, exc: CommandError, *, entry: str | None, raw: dict[str, Any] | None,
                     command: Command | None = None, reply_to: str | None = None) -> Event:
    """Refuse a command: publish its ``rejected`` event, keep its rejection record, acknowledge its
    entry (if it has one) and count it in ``mailops_commands_rejected_total``. Ingest and the HTTP
    door both refuse through here."""
    event = rejection_event(exc, entry, raw, command)
    store.respond_and_ack(event, entry=entry, reply_to=reply_to)
    producer = event.producer if event.producer and store.settings.sender_named(event.producer) else "unknown"
    error = event.error
    REJECTIONS.labels(producer, (error and error.field) or "", (error and error.rule) or (error and error.kind) or "").inc()
    return event


class Ingestor:
    """Reads the commands stream in a consumer group and admits what it reads."""

    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        store: CommandStore,
        *,
        gates: Sequence[IngestGate] = (),
        consumer: str | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.store = store
        self.gates = list(gates)
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.group = constants.INGEST_GROUP
        self.stream = settings.commands_stream
        self.reply_streams = ReplyStreams(client, settings)
        self._stop = threading.Event()
        self._last_claim = 0.0
        #: Entries handled since start (for liveness checks).
        self.handled = 0
        #: Admits sent ahead whose verdicts are not handled yet (see :meth:`admit`).
        self._unsettled: list[tuple[list[tuple[Entry, Command]], AdmitBatch]] = []

    def ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def read_batch(self, *, block_ms: int = READ_BLOCK_MS) -> list[Entry]:
        """Reclaim entries of dead consumers (at most once per idle period), else read new ones."""
        now = time.monotonic()
        if now - self._last_claim >= self.settings.ingest_claim_idle_ms / 2000:
            self._last_claim = now
            claimed = self._claim()
            if claimed:
                return claimed
        # On the thread's own connection, the reply as Redis sends it (see workers.store.wire): when
        # commands arrive one at a time this read is half of ingest's CPU per command.
        reply: Any = execute(self.client, "XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", READ_COUNT,
                             "BLOCK", block_ms, "STREAMS", self.stream, ">")
        entries: list[Entry] = []
        for _stream, items in (reply.items() if isinstance(reply, dict) else reply or []):
            for eid, flat in items:
                entries.append(Entry.from_flat(eid, flat))
        return entries

    def _claim(self) -> list[Entry]:
        entries: list[Entry] = []
        start = "0-0"
        while True:
            # (as Redis sends it: redis-py's parsed reply keeps only the last of a repeated field)
            reply: Any = execute(self.client, "XAUTOCLAIM", self.stream, self.group, self.consumer,
                                 self.settings.ingest_claim_idle_ms, start, "COUNT", READ_COUNT)
            start, items = as_text(reply[0]), reply[1]
            entries.extend(Entry.from_flat(eid, fields) for eid, fields in items if fields is not None)
            # Entries trimmed from the stream while pending come back as ids only: acknowledge them.
            missing = [eid for eid, fields in items if fields is None] + [as_text(e) for e in (reply[2] if len(reply) > 2 else [])]
            if missing:
                self.client.xack(self.stream, self.group, *missing)
            if start == "0-0" or len(entries) >= READ_COUNT:
                return entries

    def process(self, entries: Sequence[Entry]) -> None:
        """Validate and admit a batch of entries, and handle Redis' verdicts on them."""
        self.admit(entries)
        self.settle()

    def admit(self, entries: Sequence[Entry]) -> None:
        """Validate a batch of entries, answer the invalid ones, and send the valid ones' admit
        calls in one write without waiting (:meth:`CommandStore.admit_ahead`): the loop's next
        read of the stream brings their verdicts back, so a command arriving alone costs ingest
        one round trip, not two (:meth:`settle` handles them)."""
        calls = []
        admitted: list[tuple[Entry, Command]] = []
        # (Only bodies that mention reply_to are decoded here: most commands have none.)
        self.reply_streams.prefetch(entry.decoded.get("reply_to") for entry in entries
                                    if b'"reply_to"' in entry.fields.get(constants.BODY_FIELD.encode(), b""))
        for entry in entries:
            command: Command | None = None
            try:
                body = entry.body
                if body is None:
                    raise CommandRejected("body", "missing", "the entry has no 'body' field")
                command = parse_command(body)
                for gate in self.gates:
                    command = gate(command, entry)
                self.reply_streams.check(command.reply_to)
                message = message_for(command, entry=entry.id)
                calls.append(
                    self.store.admit_keys_args(command, fingerprint=fingerprint(command), entry=entry.id, message=message)
                )
                admitted.append((entry, command))
            except CommandError as exc:
                raw = entry.decoded
                reply_to = None if exc_field(exc) == "reply_to" else self.reply_streams.usable(raw.get("reply_to"))
                answer_rejection(self.store, exc, entry=entry.id, raw=raw, command=command, reply_to=reply_to)
        if calls:
            self._unsettled.append((admitted, self.store.admit_ahead(calls)))
        self.handled += len(entries)

    def settle(self) -> None:
        """Handle the verdicts of the admits sent ahead: an entry Redis refused is answered rather
        than left pending to fail again on every reclaim. Verdicts lost with the connection need
        nothing: the entries whose admit did not run are still pending, and are reclaimed."""
        unsettled, self._unsettled = self._unsettled, []
        for admitted, batch in unsettled:
            for (entry, command), verdict in zip(admitted, batch.verdicts() or [], strict=False):
                if isinstance(verdict, redis.ResponseError):
                    logger.error("ingest: could not admit entry %s: %s", entry.id, verdict)
                    error = CommandRejected("body", "unadmittable", f"Redis refused to admit the command ({verdict})")
                    answer_rejection(self.store, error, entry=entry.id, raw=entry.decoded, command=command)

    def run(self) -> None:
        """Loop until :meth:`stop`; Redis outages are waited out, never fatal."""
        backoff = 0.1
        while not self._stop.is_set():
            try:
                self.ensure_group()
                while not self._stop.is_set():
                    entries = self.read_batch()
                    # (The read brought the verdicts of the last batch's admits back with it.)
                    self.settle()
                    if entries:
                        self.admit(entries)
                    backoff = 0.1
                self.settle()
            except redis.ConnectionError as exc:
                logger.warning("ingest: Redis unreachable (%s); retrying in %.1fs", type(exc).__name__, backoff)
            except redis.ResponseError as exc:
                logger.warning("ingest: Redis error %s; retrying in %.1fs", exc, backoff)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def stop(self) -> None:
        self._stop.set()
