"""Holds: a suspension is owned by a reason, and only that reason's release removes it.

``suspend_<aspect>`` adds the hold of its reason (``command.reason``, else the producer name) on
``(backend, target, aspect)`` (account names repeat across servers, so a hold on ``shop`` of one
backend says nothing about ``shop`` of another); ``unsuspend_<aspect>`` removes that reason's hold only. The panel is
unsuspended only when no hold remains: an unsuspend that leaves other holds makes no panel call
and its event says who still holds the target. Holds live in one hash per backend+target+aspect
(:meth:`Keys.holds`, reason -> JSON record) and change only in the ordering commit
(:meth:`workers.attempt.ordering.TargetGuard.commit_call`), atomically with the order stamp.

Operators release a hold with :func:`force_release`: it records the decision in the audit stream
and issues an ordinary ``unsuspend_<aspect>`` command for that reason through the commands stream,
so the release is ordered like any other command and shows in its events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
import redis

from schemas.commands import COMMANDS, Command
from workers.constants import BODY_FIELD, Keys, key_name
from workers.errors import CommandError
from workers.store.wire import as_text

#: Producer name of commands issued by an operator's forced release.
OPERATOR_PRODUCER = "operator"


@dataclass(frozen=True)
class HoldPlan:
    """What a suspend/unsuspend command does to the holds of its target+aspect."""

    op: Literal["add", "remove"]
    reason: str
    aspect: str

    def after(self, holding: tuple[str, ...]) -> tuple[str, ...]:
        """The reasons holding once this command is applied."""
        reasons = set(holding)
        if self.op == "add":
            reasons.add(self.reason)
        else:
            reasons.discard(self.reason)
        return tuple(sorted(reasons))

    def calls_panel(self, after: tuple[str, ...]) -> bool:
        """A suspend always (re)applies; an unsuspend reaches the panel only when no hold remains."""
        return self.op == "add" or not after

    def record(self, command: Command) -> dict[str, Any]:
        """The hold record stored for a suspend (who, when, and how to release it)."""
        return {
            "reason": self.reason,
            "producer": command.producer,
            "command": command.id,
            "issued_at": command.issued_at.isoformat(),
            "backend": command.backend,
            "args": command.args,
            "since": datetime.now(UTC).isoformat(),
        }

    def describe(self, before: tuple[str, ...], after: tuple[str, ...], *, called: bool) -> dict[str, Any]:
        """The ``details.holds`` of the command's event."""
        change = "added" if self.op == "add" else "removed"
        info: dict[str, Any] = {
            "aspect": self.aspect,
            change: self.reason,
            "before": list(before),
            "after": list(after),
            "panel_called": called,
        }
        if self.op == "remove" and self.reason not in before:
            info["note"] = f"no {self.reason} hold existed"
        if not called:
            info["why"] = f"still suspended: held by {', '.join(after)}"
        return info


def plan_for(command: Command) -> HoldPlan | None:
    """The hold change of a suspend/unsuspend command (``CommandSpec.hold``); ``None`` for every other command."""
    spec = command.spec
    return HoldPlan(spec.hold, command.reason or command.producer, spec.aspect) if spec.hold else None


def hold_aspects() -> list[str]:
    """Aspects that have a suspend/unsuspend pair (the ones holds exist for)."""
    return sorted({spec.aspect for spec in COMMANDS.values() if spec.hold == "add"})


def hold_command(aspect: str, op: Literal["add", "remove"]) -> str:
    """The command that adds (suspends) or removes (releases) a hold on ``aspect``."""
    return next(name for name, spec in COMMANDS.items() if spec.aspect == aspect and spec.hold == op)


def holds_of(client: redis.Redis, keys: Keys, backend: str, target: str, aspect: str) -> dict[str, dict[str, Any]]:
    """Reason -> hold record of one target+aspect on one backend."""
    raw: dict[Any, Any] = client.hgetall(keys.holds(backend, target, aspect))
    return {as_text(reason): orjson.loads(record) for reason, record in raw.items()}


def identity_of(family: str, key: str) -> tuple[str, str, str] | None:
    """(backend, target, aspect) of a key ``<family>:<backend>:<aspect>:<target>`` (``None`` if it is not one)."""
    parts = key[len(family) + 1:].split(":") if key.startswith(f"{family}:") else []
    if len(parts) != 3:
        return None
    backend, aspect, target = parts
    return key_name(backend), key_name(target), aspect


def all_holds(client: redis.Redis, keys: Keys) -> dict[tuple[str, str, str], dict[str, dict[str, Any]]]:
    """(backend, target, aspect) -> holds, for every target that has a hold."""
    found: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}
    for key in client.scan_iter(match=f"{keys.holds_family}:*", count=500):
        identity = identity_of(keys.holds_family, as_text(key))
        if identity is not None and (holds := holds_of(client, keys, *identity)):
            found[identity] = holds
    return found


def backends_holding(client: redis.Redis, keys: Keys, target: str, aspect: str | None = None) -> list[str]:
    """The backends on which ``target`` has a hold (on ``aspect``, or any)."""
    return sorted({backend for (backend, held, held_aspect) in all_holds(client, keys)
                   if held == target and aspect in (None, held_aspect)})


def force_release(client: redis.Redis, keys: Keys, commands_stream: str, *, backend: str, target: str, aspect: str,
                  reason: str, operator: str = OPERATOR_PRODUCER,
                  prepare: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Issue the unsuspend that removes ``reason``'s hold on ``backend``; returns the command body sent.

    ``prepare`` finishes the body before it is sent (the CLI signs it with the operator's key).

    Raises :class:`CommandError` when that hold does not exist.
    """
    holds = holds_of(client, keys, backend, target, aspect)
    hold = holds.get(reason)
    if hold is None:
        held = ", ".join(sorted(holds)) or "nothing"
        raise CommandError(f"{target} on {backend} has no {reason} hold on {aspect} (held by: {held})")
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "id": f"release-{aspect}-{reason}-{int(time.time() * 1000)}",
        "command": hold_command(aspect, "remove"),
        "backend": backend,
        "args": hold["args"],
        "producer": operator,
        "reason": reason,
        "issued_at": now.isoformat().replace("+00:00", "Z"),
    }
    if prepare is not None:
        body = prepare(body)
    audit = {"event": "forced_release", "backend": backend, "target": target, "aspect": aspect, "reason": reason,
             "by": operator, "hold": {k: hold.get(k) for k in ("producer", "command", "issued_at")},
             "command": body["id"], "at": body["issued_at"]}
    pipe = client.pipeline(transaction=True)
    pipe.xadd(keys.audit, {BODY_FIELD: orjson.dumps(audit)})
    pipe.xadd(commands_stream, {BODY_FIELD: orjson.dumps(body)})
    pipe.execute()
    return body
