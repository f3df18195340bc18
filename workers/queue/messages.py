"""The Dramatiq message that runs a command: which actor, which generation, and the command itself.

A queued command lives in its message (as admitted: secrets sealed, no signature), so a worker
needs no read of the command record to run it, and the record keeps only short fields, which
Redis stores compactly.
"""

from __future__ import annotations

import base64
import random
import time
from typing import Any

import orjson
from dramatiq import Message
from dramatiq.broker import MessageProxy
from dramatiq.errors import DecodeError

from schemas.commands import Command


def actor_name_for(queue: str) -> str:
    """The Dramatiq actor that runs commands from one queue (one per queue, for priority)."""
    return f"execute_{queue}"


#: Dramatiq message option carrying the command record generation the message belongs to.
GENERATION_OPTION = "mailops_gen"
#: Dramatiq message option carrying the command itself, as admitted (secrets sealed, no signature).
COMMAND_OPTION = "mailops_cmd"
#: Dramatiq message option carrying the commands-stream entry id that admitted the command (the
#: ordering tie-breaker, see :mod:`workers.attempt.ordering`); absent for replays and tools.
ENTRY_OPTION = "mailops_entry"


def encoded(message: Message[Any]) -> bytes:
    """A message as it rests in Redis: Dramatiq's message JSON (written with orjson) without two
    fields every mailops message would repeat, empty ``kwargs`` and a ``redis_message_id`` option
    equal to the message id (:func:`message_for` makes them one). :func:`decoded` puts both back.

    A queued command rests in its message, so these ~45 bytes take each queued command from
    Redis' 448-byte allocation class to the 384-byte one (``mailops bench`` measures it). Only
    mailops' own paths write and read its queues, through these two functions; Dramatiq's global
    encoder is left alone, so a plain Dramatiq broker in the same process is unaffected.
    """
    fields = message.asdict()
    options = fields["options"]
    if options.get("redis_message_id") == fields["message_id"]:
        fields["options"] = {k: v for k, v in options.items() if k != "redis_message_id"}
    if not fields["kwargs"]:
        del fields["kwargs"]
    return orjson.dumps(fields)


def decoded(data: bytes) -> Message[Any]:
    """The message :func:`encoded` wrote; a message in Dramatiq's own full form reads too.

    Raises :class:`dramatiq.errors.DecodeError` for data that is not such a message, as
    ``Message.decode`` does."""
    try:
        fields = orjson.loads(data)
        fields.setdefault("kwargs", {})
        fields["options"].setdefault("redis_message_id", fields["message_id"])
        fields["args"] = tuple(fields["args"])
        return Message(**fields)
    except Exception as exc:
        raise DecodeError("Failed to decode message.", data, exc) from exc  # type: ignore[no-untyped-call]


def stored_form(command: Command, *, without_id: bool = False) -> dict[str, Any]:
    """The command as it travels and rests after admission: secrets already sealed by the ingest
    gates, and without its signature (checked at the door; it signed the unsealed form). In a
    message the id is left out too: it is the message's argument."""
    exclude = {"signature", "id"} if without_id else {"signature"}
    return command.model_dump(mode="json", exclude_none=True, exclude=exclude)


def redis_message_id(backend: str | None = None) -> str:
    """A Dramatiq message id: 64 random bits in 11 URL-safe characters instead of a 36-byte
    UUID, since every queued command stores it three times (list, hash field, message), and
    ``.<backend>`` after them when the command has one: the fetch parks a command whose backend is
    full by its id alone (``fetch.lua``), without reading the message."""
    # Unique, not secret: the module's generator (reseeded in a forked child) instead of a system
    # call per command, which under many threads also meant waiting again for the GIL.
    random_part = base64.urlsafe_b64encode(random.getrandbits(64).to_bytes(8, "big")).rstrip(b"=").decode()
    return f"{random_part}.{backend}" if backend else random_part


def backend_of(message: Message[Any]) -> str | None:
    """The backend a command message runs on (``None`` for other messages)."""
    stored = message.options.get(COMMAND_OPTION)
    backend = stored.get("backend") if isinstance(stored, dict) else None
    return backend if isinstance(backend, str) and backend else None


def message_for(command: Command, *, entry: str | None = None) -> Message[Any]:
    """The Dramatiq message that runs a command (its Dramatiq and Redis ids are one random id).

    The message carries the command (:data:`COMMAND_OPTION`), so the worker needs no read of the
    record to run it and the record stays small (Redis keeps a hash of short fields compact).
    """
    message_id = redis_message_id(command.backend)
    # No GENERATION_OPTION: absent means generation 1 (retries and replays set it).
    options: dict[str, Any] = {"redis_message_id": message_id, COMMAND_OPTION: stored_form(command, without_id=True)}
    if entry is not None:
        options[ENTRY_OPTION] = entry
    return Message(
        queue_name=command.queue,
        actor_name=actor_name_for(command.queue),
        args=(command.id,),
        kwargs={},
        # The generation lets a stale copy of a retried message recognise itself.
        options=options,
        message_id=message_id,
        message_timestamp=int(time.time() * 1000),
    )


def command_of(message: Message[Any] | MessageProxy) -> Command:
    """The command a Dramatiq message runs (see :func:`message_for`)."""
    return Command.model_validate({"id": message.args[0], **message.options[COMMAND_OPTION]})


def entry_of(message: Message[Any] | MessageProxy) -> str | None:
    """The commands-stream entry that admitted the message's command, if it came through the stream."""
    entry = message.options.get(ENTRY_OPTION)
    return str(entry) if entry else None
