"""Events: what the worker publishes about each command.

Every command ends with exactly one event whose status is in :data:`TERMINAL_STATUSES`;
``accepted`` and ``retrying`` may come before it. ``held`` ends an ``unsuspend_*`` that removed
its reason's hold while other holds keep the target suspended: not an error, and not unsuspended.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator

EventStatus = Literal[
    "accepted",
    "retrying",
    "waiting",
    "succeeded",
    "held",
    "failed",
    "dead_lettered",
    "duplicate",
    "in_flight",
    "conflict",
    "rejected",
    "superseded",
    "drift_found",
]

#: The status of an unsuspend that lifted its own hold while others remain (the panel was not called).
HELD: EventStatus = "held"

#: Statuses that end a command (or, for duplicate/in_flight/conflict/rejected, one submission).
TERMINAL_STATUSES: frozenset[str] = frozenset(
    {"succeeded", "held", "failed", "dead_lettered", "duplicate", "in_flight", "conflict", "rejected", "superseded"}
)

#: The texts of errors the Lua scripts write into events and history entries, defined here once:
#: ``workers.store.lua`` fills each into the scripts that name it (``%s``: ``string.format`` there,
#: ``%`` here). Printable ASCII only, so each is the same string literal in both languages.
SCRIPT_TEXTS: dict[str, str] = {
    "CONFLICT_TEXT": "id %s was already used for a different command; not run",
    "LOST_ALONE_TEXT": "the worker died while this attempt ran alone in it",
    "LOST_SHARED_TEXT": "the worker died while this attempt shared it with other commands: not counted",
    "NEXT_ALONE_TEXT": ", next run alone",
}
#: Longest error message kept (characters); a panel's failure text may be anything.
ERROR_MESSAGE_MAX_CHARS = 1000
#: Largest ``details`` kept, as JSON bytes; larger ones are replaced by ``{"truncated": <bytes>}``.
DETAILS_MAX_BYTES = 4096


class ErrorInfo(BaseModel):
    """Why a command failed or was rejected."""

    model_config = ConfigDict(frozen=True)

    kind: str = Field(description="machine-readable class: rejected, auth, panel_refused, timeout, ...")
    message: str = Field(description="what happened, for a person.")
    field: str | None = Field(default=None, description="the command field at fault (rejections).")
    rule: str | None = Field(default=None, description="the rule that field broke (rejections).")

    @field_validator("message", mode="before")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        if isinstance(value, str) and len(value) > ERROR_MESSAGE_MAX_CHARS:
            return value[:ERROR_MESSAGE_MAX_CHARS - 1] + "\u2026"
        return value


class Event(BaseModel):
    """One event on the events stream."""

    model_config = ConfigDict(frozen=True)

    id: str | None = Field(default=None, description="the command id (null only when a rejected entry had none readable).")
    command: str | None = None
    backend: str | None = Field(default=None, description="the backend the command runs on (resolved by routing when it named none).")
    target: str | None = Field(default=None, description="the account, domain or mailbox the command acts on.")
    status: EventStatus
    terminal: bool = False
    producer: str | None = None
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    attempt: int | None = None
    already: bool | None = Field(default=None, description="succeeded without a change: it was already so.")
    verified: bool | None = Field(
        default=None, description="a succeeded change was read back from the panel (details.read); false: it could "
                                  "not be (details.not_verified says why).")
    error: ErrorInfo | None = None
    next_attempt_at: datetime | None = None
    entry: str | None = Field(default=None, description="id of the commands-stream entry this answers.")
    batch: str | None = None
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="what mailops understood (holds before and after, a wait's reason, what ran out, a "
                    "duplicate's original outcome...); at most 4 KiB of JSON, never the panel's own answer data.",
    )

    @field_validator("details")
    @classmethod
    def _bounded_details(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(orjson.dumps(value, default=str))
        return {"truncated": size} if size > DETAILS_MAX_BYTES else value

    def to_json(self) -> bytes:
        data = self.model_dump(mode="json", exclude_none=True)
        data.setdefault("id", None)
        return orjson.dumps(data)

    @classmethod
    def from_json(cls, body: bytes | str) -> Event:
        return cls.model_validate(orjson.loads(body))
