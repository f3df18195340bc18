"""What an operator may do from the console: the CLI's actions, signed and audited the same way.

A console user with role ``operator`` acts as ``[operators.<its operator>]``
(:class:`~workers.settings.ConsoleUser`): commands travel as producer ``operator.NAME`` signed
with that operator's key (:class:`workers.cli.acting.Acting`), the operator's ``actions`` bound
what is allowed, and :func:`workers.cli.acting.audit` records the console user's name.
"""

from __future__ import annotations

from typing import Any

import redis

from workers.attempt.holds import OPERATOR_PRODUCER, force_release
from workers.cli.acting import Acting, audit
from workers.errors import CommandError
from workers.settings import OperatorAction, Settings
from workers.store.dead_letters import DeadLetters


class Refused(Exception):
    """The console user may not do this (role, or the operator's actions)."""


def acting_for(settings: Settings, user: str, action: OperatorAction) -> Acting:
    """Who the console user acts as for ``action``; raises :class:`Refused` if not allowed."""
    console_user = settings.console.users.get(user)
    if console_user is None or console_user.role != "operator":
        raise Refused(f"{user} is a viewer: viewers may not act")
    operator = settings.operators.get(console_user.operator_name)
    if operator is None:
        if not settings.operators and not settings.require_signatures:
            return Acting(OPERATOR_PRODUCER, None, user)  # unsigned, as the CLI acts without operators
        raise Refused(f"no [operators.{console_user.operator_name}] is configured for console user {user}")
    if action not in operator.actions:
        raise Refused(f"operator {operator.name} may not {action} (its actions: {', '.join(operator.actions) or 'none'})")
    return Acting(operator.producer, operator.key.get_secret_value().encode(), user)


def replay(client: redis.Redis, settings: Settings, dead: DeadLetters, user: str, ids: list[str]) -> dict[str, str]:
    """Queue dead letters again as the CLI's ``dlq replay`` does; returns id -> verdict."""
    acting = acting_for(settings, user, "dlq.replay")
    verdicts = {}
    for command_id in ids:
        verdict = dead.replay(command_id)
        verdicts[command_id] = verdict
        if verdict == "replayed":
            pipe = client.pipeline(transaction=False)
            audit(pipe, settings, acting, "dlq.replay", command_id, via="console")
            pipe.execute()
    return verdicts


def purge(client: redis.Redis, settings: Settings, user: str, ids: list[str]) -> int:
    """Drop these ids from the dead-letter index (records stay until their TTL), audited per id."""
    acting = acting_for(settings, user, "dlq.replay")  # the CLI's purge has no action of its own
    pipe = client.pipeline(transaction=True)
    for command_id in ids:
        pipe.zrem(settings.keys.dead_letters, command_id)
        audit(pipe, settings, acting, "dlq.purge", command_id, via="console")
    return sum(int(n) for n in pipe.execute()[::2])


def release(client: redis.Redis, settings: Settings, user: str, *, backend: str, target: str, aspect: str,
            reason: str, why: str) -> dict[str, Any]:
    """Issue the unsuspend that removes ``reason``'s hold, as ``mailops holds release`` does;
    raises :class:`Refused` or :class:`~workers.errors.CommandError` (no such hold)."""
    acting = acting_for(settings, user, "holds.release")
    if not why.strip():
        raise CommandError("say why the hold is released")
    body = force_release(client, settings.keys, settings.commands_stream, backend=backend, target=target,
                         aspect=aspect, reason=reason, operator=acting.producer, prepare=acting.signed)
    pipe = client.pipeline(transaction=False)
    audit(pipe, settings, acting, "holds.release", str(body["id"]), via="console", why=why.strip()[:200])
    pipe.execute()
    return body
