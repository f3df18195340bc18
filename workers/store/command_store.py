"""The record each command keeps in Redis, changed only through atomic Lua scripts.

One hash per command id (:meth:`Keys.command`) holds its fingerprint (the idempotency check),
status, attempt count and, once it ended, its terminal event. The scripts in ``scripts/`` make
each step one round trip and all-or-nothing: admitting a command records it, publishes
``accepted``, enqueues the Dramatiq message and acknowledges the stream entry together.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
import redis
from dramatiq import Message
from dramatiq.common import dq_name

from schemas.commands import Command
from schemas.events import Event
from workers.constants import INGEST_GROUP, SUSPECT_AFTER_SHARED_LOSSES, WAITING_GRACE_MS, WAITING_REASONS
from workers.errors import CommandError
from workers.queue.messages import encoded, redis_message_id, stored_form
from workers.settings import Settings
from workers.store.lua import ScriptCall, loaded, lua_script, registered, run_ahead, run_together
from workers.store.wire import Ahead, as_text

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from workers.attempt.ordering import CommitGuard


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Attempt:
    """What ``begin.lua`` decided (:meth:`CommandStore.begin_call`): run attempt ``number``, or skip."""

    state: str
    number: int
    #: Run alone in the process: earlier attempts died in processes they shared (see begin.lua).
    alone: bool = False
    #: An earlier attempt died with its worker uncounted (it may have reached the panel unrecorded),
    #: just now or before a wait since: a non-idempotent call reads the panel before it is re-sent.
    lost: bool = False

    @property
    def should_run(self) -> bool:
        return self.state == "run"


@dataclass(frozen=True)
class Parking:
    """Where a command whose backend's concurrency cap is full waits: that backend's line, at
    ``score`` (:func:`workers.attempt.limits.park_score`)."""

    backend: str
    score: int


@dataclass
class AdmitBatch:
    """Admit calls sent ahead (:meth:`CommandStore.admit_ahead`)."""

    calls: list[ScriptCall]
    ahead: Ahead

    def verdicts(self) -> list[str | redis.ResponseError] | None:
        """Each call's verdict, or the error of a call Redis refused (read now if no round trip
        has read them yet; a call Redis had no script for, after a restart, is run now). ``None``
        if the replies were lost with the connection: the admits may or may not have run, and the
        entries of those that did not are still pending, so they are reclaimed and admitted then."""
        replies = self.ahead.replies()
        if replies is None:
            return None
        return [value if isinstance(value, redis.ResponseError) else as_text(value)
                for value in loaded(self.calls, replies)]


class CommandStore:
    """Atomic operations on command records and the events stream."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.keys = settings.keys
        self._admit = registered(client, lua_script("admit"))
        self._begin = registered(client, lua_script("begin"))
        self._finish = registered(client, lua_script("finish"))
        self._retry = registered(client, lua_script("retry"))

    def admit_keys_args(
        self, command: Command, *, fingerprint: str, entry: str, message: Message[Any]
    ) -> tuple[list[str], list[Any]]:
        """Keys and arguments of one admit call (so ingest can pipeline a whole batch)."""
        dq = self.keys.dramatiq
        base = Event(
            id=command.id,
            command=command.command,
            backend=command.backend, target=command.target,
            status="accepted",
            producer=command.producer,
            entry=entry,
            batch=command.batch,
            details={"queue": message.queue_name, "generated_id": True} if command.id_generated else {"queue": message.queue_name},
        )
        keys = [
            self.keys.command(command.id),
            self.settings.events_stream,
            self.settings.commands_stream,
            dq.queue(message.queue_name),
            dq.messages(message.queue_name),
            command.reply_to or "",
            dq.doorbell(message.queue_name),
            # The console's search indexes (a new id is added to each, by admission time).
            self.keys.command_index,
            self.keys.command_index_by("target", command.target) if command.target else "",
            self.keys.command_index_by("backend", command.backend) if command.backend else "",
            self.keys.command_index_by("producer", command.producer),
            self.keys.command_index_by("batch", command.batch) if command.batch else "",
            self.keys.batch_index if command.batch else "",
        ]
        args = [
            fingerprint,
            entry,
            now_ms(),
            self.settings.idempotency_ttl_s,
            self.settings.events_maxlen,
            INGEST_GROUP,
            _base_event_json(base),
            message.options["redis_message_id"],
            encoded(message),
            message.queue_name,
            command.batch or "",
        ]
        return keys, args

    def admit_ahead(self, calls: list[tuple[list[str], list[Any]]]) -> AdmitBatch:
        """Send a batch of admit calls now, in one write, without waiting for their verdicts
        (:func:`workers.store.lua.run_ahead`): Redis runs them at once, and the calling thread's next
        round trip brings the verdicts back (:meth:`AdmitBatch.verdicts`). Raises on a failed write
        (the entries stay pending and are reclaimed)."""
        scripts = [ScriptCall(self._admit, keys, args) for keys, args in calls]
        return AdmitBatch(scripts, run_ahead(self.client, scripts))

    def begin_call(self, command_id: str, worker_id: str, generation: int) -> ScriptCall:
        """Count an attempt, unless the command ended or a newer copy of its message exists (a
        ``begin.lua`` call, sent with the attempt's other first steps; read its reply with
        :meth:`attempt_from`)."""
        return ScriptCall(
            self._begin,
            [self.keys.command(command_id), self.keys.command_history(command_id)],
            [now_ms(), worker_id, generation, self.settings.history_max, self.settings.idempotency_ttl_s,
             SUSPECT_AFTER_SHARED_LOSSES],
        )

    def stored_command(self, command_id: str) -> Command:
        """The command kept in its record: by dead letters, and by records written before commands
        travelled in their messages (so messages queued by an older worker still run)."""
        stored = self.client.hget(self.keys.command(command_id), "command")
        if not stored:
            raise CommandError(f"command {command_id} has no stored copy")
        return Command.model_validate_json(stored)

    @staticmethod
    def attempt_from(reply: Any) -> Attempt:
        """The :class:`Attempt` a reply of ``begin.lua`` stands for."""
        state, number, *rest = reply
        lost = len(rest) > 0 and int(rest[0]) == 1
        alone = len(rest) > 1 and int(rest[1]) == 1
        return Attempt(as_text(state), int(number), alone, lost)

    def mark_alone(self, command_id: str, attempt: int) -> None:
        """Record that ``attempt`` now runs alone in its process, so a crash during it counts
        against the command (``begin.lua`` reads it when the next attempt starts)."""
        self.client.hset(self.keys.command(command_id), "iso", attempt)

    def unmark_alone(self, command_id: str) -> None:
        """The alone run's panel calls are over: a crash from here on (while its result is being
        written) is not the command's doing and is not counted. Best effort: if Redis refuses,
        a crash before the result is written counts, as it did before the alone run ended."""
        try:
            self.client.hdel(self.keys.command(command_id), "iso")
        except redis.RedisError as exc:
            logger.warning("command %s: could not clear its alone mark (%s)", command_id, type(exc).__name__)

    def schedule_retry(
        self, event: Event, *, generation: int, reply_to: str | None, message: Message[Any], delay_ms: int,
        attempt: dict[str, Any], uncount: bool = False, publish: bool = True, parked: Parking | None = None,
    ) -> bool:
        """Atomically: mark the command ``event.status`` (retrying/waiting) at ``generation``, put
        ``message`` on its delay queue for ``delay_ms`` — or, with ``parked``, in its backend's
        line of parked commands, released by a give-back on that backend — append ``attempt`` to the
        history and publish ``event`` (unless not ``publish``: then no event and no history entry).
        ``uncount`` gives the attempt back (waiting is not an attempt)."""
        assert event.id is not None
        dq = self.keys.dramatiq
        if parked is None:
            queued = message.copy(queue_name=dq_name(message.queue_name),
                                  options={"redis_message_id": redis_message_id(event.backend), "eta": now_ms() + delay_ms})
        else:
            queued = message.copy(options={"redis_message_id": redis_message_id(event.backend)})
        message_id = str(queued.options["redis_message_id"])
        # The waiting sets of its backend (gauge mailops_commands_waiting): in the reason's, out of the
        # others; a parked command is counted from its backend's parked line instead.
        reasons = list(WAITING_REASONS.values()) if event.backend else []
        reason = WAITING_REASONS.get(str(event.details.get("reason", ""))) if event.status == "waiting" else None
        now = now_ms()
        return bool(
            self._retry(
                keys=[
                    self.keys.command(event.id), self.settings.events_stream, reply_to or "",
                    dq.queue(queued.queue_name), dq.messages(queued.queue_name),
                    self.keys.command_history(event.id), dq.doorbell(queued.queue_name),
                    self.keys.backend_parked(parked.backend) if parked else "",
                    *(self.keys.waiting(str(event.backend), r) for r in reasons),
                ],
                args=[
                    generation, event.to_json() if publish else b"", self.settings.events_maxlen, now,
                    message_id, encoded(queued), event.status, "1" if uncount else "0",
                    orjson.dumps(attempt) if publish else b"", self.settings.history_max, self.settings.idempotency_ttl_s,
                    parked.score if parked else 0, f"{queued.queue_name}/{message_id}",
                    event.id, 9 + reasons.index(reason) if reason in reasons and parked is None else 0,
                    now + delay_ms, now - WAITING_GRACE_MS,
                ],
            )
        )

    def finish(self, event: Event, *, reply_to: str | None, attempt: dict[str, Any] | None = None,
               ack: tuple[str, str, str] | None = None, command: Command | None = None) -> bool:
        """Publish the terminal event and store it as the command's outcome, once.

        ``ack`` = (ack set, message hash, redis message id) acknowledges the Dramatiq message in
        the same step (see :meth:`workers.constants.DramatiqKeys.acks`). A dead-lettered ``command`` is kept in
        its record (its message is gone), for ``mailops dlq show`` and ``replay``.
        """
        return bool(self.finish_call(event, reply_to=reply_to, attempt=attempt, ack=ack, command=command).run())

    def finish_after(self, before: Sequence[ScriptCall], event: Event, *, reply_to: str | None,
                     attempt: dict[str, Any] | None = None, ack: tuple[str, str, str] | None = None,
                     guard: CommitGuard | None = None) -> tuple[list[Any], int]:
        """Send ``before`` and then :meth:`finish` in one round trip; returns the replies to
        ``before`` and finish's: 1 ended, 0 had already ended, -1 ``guard`` did not hold (nothing
        was published or acknowledged: the caller publishes what did happen)."""
        call = self.finish_call(event, reply_to=reply_to, attempt=attempt, ack=ack, guard=guard)
        replies = run_together(self.client, [*before, call])
        return replies[:-1], int(replies[-1])

    def finish_call(self, event: Event, *, reply_to: str | None, attempt: dict[str, Any] | None = None,
                    ack: tuple[str, str, str] | None = None, command: Command | None = None,
                    guard: CommitGuard | None = None) -> ScriptCall:
        """The ``finish.lua`` call of :meth:`finish`; with ``guard``, it publishes only if the
        ordering commit left the state the event describes."""
        assert event.id is not None and event.terminal
        ack_set, messages, redis_message_id = ack or ("", "", "")
        order_key, holds_key, register, stamp, holding = (
            (guard.order_key, guard.holds_key, guard.register, guard.stamp, "\n".join(sorted(guard.holding)))
            if guard is not None else ("", "", "", "", "")
        )
        return ScriptCall(
            self._finish,
            [
                self.keys.command(event.id), self.settings.events_stream, reply_to or "", self.keys.dead_letters,
                self.keys.command_history(event.id), ack_set, messages, order_key, holds_key,
            ],
            [
                event.status, event.to_json(), self.settings.idempotency_ttl_s, self.settings.events_maxlen, now_ms(),
                orjson.dumps(attempt) if attempt else "", self.settings.history_max, redis_message_id,
                orjson.dumps(stored_form(command)) if command is not None and event.status == "dead_lettered" else "",
                event.id, register, stamp, holding,
            ],
        )

    def history(self, command_id: str) -> list[dict[str, Any]]:
        """The command's attempts, oldest first (bounded by ``history_max``)."""
        raw: Any = self.client.lrange(self.keys.command_history(command_id), 0, -1)
        return [orjson.loads(item) for item in raw]

    def publish(self, event: Event, *, reply_to: str | None = None) -> None:
        """Publish a non-terminal (or stateless) event."""
        body = event.to_json()
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(self.settings.events_stream, {"body": body}, maxlen=self.settings.events_maxlen, approximate=True)
        if reply_to:
            pipe.xadd(reply_to, {"body": body}, maxlen=self.settings.events_maxlen, approximate=True)
        pipe.execute()

    def respond_and_ack(self, event: Event, *, entry: str | None, reply_to: str | None = None) -> None:
        """Publish an answer to a stream entry, acknowledge and delete the entry, in one transaction.

        A ``rejected`` answer with an id is also kept as that id's rejection record
        (:meth:`Keys.rejection`) for the idempotency TTL. ``entry`` is ``None`` for a refusal at the
        HTTP door (nothing reached the stream)."""
        body = event.to_json()
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(self.settings.events_stream, {"body": body}, maxlen=self.settings.events_maxlen, approximate=True)
        if reply_to:
            pipe.xadd(reply_to, {"body": body}, maxlen=self.settings.events_maxlen, approximate=True)
        if event.status == "rejected" and event.id:
            pipe.set(self.keys.rejection(event.id), body, ex=self.settings.idempotency_ttl_s)
        if entry is not None:
            pipe.xack(self.settings.commands_stream, INGEST_GROUP, entry)
            pipe.xdel(self.settings.commands_stream, entry)
        # A reply_to whose key changed type since ingest checked it refuses its copy alone (the
        # transaction's other steps ran): that costs the copy, never the answer or another entry.
        replies = pipe.execute(raise_on_error=False)
        copy_refused = reply_to and isinstance(replies[1], redis.ResponseError)
        errors = [r for i, r in enumerate(replies) if isinstance(r, Exception) and not (copy_refused and i == 1)]
        if errors:
            raise errors[0]
        if copy_refused:
            logger.warning("could not copy the answer to entry %s to reply_to %s: %s", entry, reply_to, replies[1])

    def rejection(self, command_id: str) -> Event | None:
        """The ``rejected`` event of an id refused before admission, while it is kept."""
        raw: Any = self.client.get(self.keys.rejection(command_id))
        return Event.from_json(raw) if raw else None

    def record(self, command_id: str) -> dict[str, str]:
        raw: Any = self.client.hgetall(self.keys.command(command_id))
        return {k.decode(): v.decode() for k, v in raw.items()}

    def outcome(self, command_id: str) -> Event | None:
        raw: Any = self.client.hget(self.keys.command(command_id), "outcome")
        return Event.from_json(raw) if raw else None


def _base_event_json(event: Event) -> bytes:
    data = event.model_dump(mode="json", exclude_none=True)
    data.pop("status", None)
    return orjson.dumps(data)
