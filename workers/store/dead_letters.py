"""Dead letters: browse, show (with every attempt), replay and purge.

A dead-lettered command keeps its record (status ``dead_lettered``, its terminal event) and its
attempt history, and its id sits in the dead-letter index (:meth:`Keys.dead_letters`, scored by
time). Replay goes through the command's own record: it is queued again with the next
generation and its attempt budget reset, and a second replay of the same id (or a replay of a
command that is no longer dead-lettered) does nothing. Purge only drops ids from the index; the
records stay until their idempotency TTL, so a producer's late retry is still a ``duplicate``.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis
from pydantic import ValidationError

from schemas.commands import Command
from schemas.events import Event
from workers.queue.messages import GENERATION_OPTION, encoded, message_for
from workers.scrubbing import is_secret_key
from workers.store.command_store import CommandStore, now_ms
from workers.store.lua import lua_script, registered
from workers.store.wire import as_text

#: Dead letters whose records are read per round trip when listing.
LETTERS_PER_READ = 500


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered command, as listed."""

    id: str
    command: str
    backend: str | None
    at_ms: int
    attempts: int
    error_kind: str
    error_message: str


class DeadLetters:
    """The dead-letter index and the operations on it."""

    def __init__(self, client: redis.Redis, store: CommandStore) -> None:
        self.client = client
        self.store = store
        self.keys = store.keys
        self._replay = registered(client, lua_script("replay"))

    def ids(self) -> list[str]:
        raw: Any = self.client.zrange(self.keys.dead_letters, 0, -1)
        return [v.decode() for v in raw]

    def list(self, *, backend: str | None = None, command: str | None = None) -> Iterator[DeadLetter]:
        """Dead letters oldest first, optionally only one backend's or one command kind's."""
        raw: Any = self.client.zrange(self.keys.dead_letters, 0, -1, withscores=True)
        for start in range(0, len(raw), LETTERS_PER_READ):
            for letter in self.letters(raw[start:start + LETTERS_PER_READ]):
                if backend is not None and letter.backend != backend:
                    continue
                if command is not None and letter.command != command:
                    continue
                yield letter

    def letters(self, members: Sequence[tuple[bytes | str, float]]) -> builtins.list[DeadLetter]:
        """The dead letters of index entries (id, score), read in one round trip; ids whose record
        is gone are left out."""
        pipe = self.client.pipeline(transaction=False)
        for member, _score in members:
            pipe.hmget(self.keys.command(as_text(member)), "command", "outcome", "attempts")
        found = []
        for (member, score), raw in zip(members, pipe.execute(), strict=True):
            letter = _letter(as_text(member), int(score), raw)
            if letter is not None:
                found.append(letter)
        return found

    def show(self, command_id: str) -> dict[str, Any] | None:
        """Everything about one command: record, outcome and every attempt (args redacted)."""
        record = self.store.record(command_id)
        if not record:
            return None
        stored = orjson.loads(record.pop("command", "{}") or "{}")
        stored["args"] = redact(stored.get("args") or {})
        outcome = record.pop("outcome", None)
        record.pop("fp", None)
        return {
            "record": record,
            "command": stored,
            "outcome": orjson.loads(outcome) if outcome else None,
            "attempts": self.store.history(command_id),
        }

    def replay(self, command_id: str) -> str:
        """Queue a dead-lettered command again; returns ``replayed`` or why not (its status)."""
        record = self.store.record(command_id)
        if not record:
            self.client.zrem(self.keys.dead_letters, command_id)
            return "missing"
        if record.get("status") != "dead_lettered":
            return record.get("status", "unknown")
        try:
            command = Command.model_validate_json(record.get("command") or "")
        except ValidationError:
            # (dead-lettered because its queued copy no longer validated: nothing to queue again)
            return "unreplayable"
        generation = int(record.get("gen", "1")) + 1
        message = message_for(command)
        message = message.copy(options={GENERATION_OPTION: generation})
        dq = self.keys.dramatiq
        event = Event(id=command.id, command=command.command, backend=command.backend, target=command.target, producer=command.producer,
                      status="accepted", batch=command.batch, details={"queue": message.queue_name, "replay": True})
        entry = {"result": "replayed", "start": now_ms(), "end": now_ms(), "worker": "dlq"}
        verdict = self._replay(
            keys=[self.keys.command(command_id), self.keys.dead_letters, self.store.settings.events_stream,
                  dq.queue(message.queue_name), dq.messages(message.queue_name), self.keys.command_history(command_id),
                  dq.doorbell(message.queue_name), command.reply_to or ""],
            args=[now_ms(), message.options["redis_message_id"], encoded(message), event.to_json(),
                  self.store.settings.events_maxlen, orjson.dumps(entry), generation, self.store.settings.idempotency_ttl_s,
                  command_id, self.store.settings.history_max],
        )
        return as_text(verdict)

    def purge(self, *, older_than_s: float | None = None) -> int:
        """Drop ids from the index (all, or those dead-lettered before ``older_than_s`` ago)."""
        if older_than_s is None:
            return int(self.client.zremrangebyscore(self.keys.dead_letters, "-inf", "+inf"))
        cutoff = int((time.time() - older_than_s) * 1000)
        return int(self.client.zremrangebyscore(self.keys.dead_letters, "-inf", cutoff))


def _letter(command_id: str, at_ms: int, fields: Any) -> DeadLetter | None:
    stored, outcome, attempts = fields
    if not stored or not outcome:
        return None
    data = orjson.loads(stored)
    event = orjson.loads(outcome)
    error = event.get("error") or {}
    return DeadLetter(
        id=command_id, command=str(data.get("command")), backend=data.get("backend"), at_ms=at_ms,
        attempts=int(attempts or 0), error_kind=str(error.get("kind", "")), error_message=str(error.get("message", "")),
    )


def redact(args: dict[str, Any]) -> dict[str, Any]:
    """``args`` with every secret's value (:func:`workers.scrubbing.is_secret_key`) replaced by ``***``."""
    return {k: ("***" if is_secret_key(k) else v) for k, v in args.items()}
