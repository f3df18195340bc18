"""Who a CLI command acts as, how it signs, and how it waits for what it issued.

Every CLI action that issues commands (``publish``, ``holds release``, ``reconcile --apply``,
``dlq replay``, ``bulk``) acts as someone configured in the backends file:

* an operator, ``[operators.NAME]`` (``--operator NAME``, else ``MAILOPS_OPERATOR``, else the only
  one configured): its commands travel as producer ``operator.NAME``, signed with its key, and the
  action must be in its ``actions``;
* or, for ``publish --producer X`` and ``bulk --producer X``, producer ``X`` with its own key
  (``--producer operator.NAME`` is operator ``NAME`` again: a bulk file sent by an operator).

Each command gets a fresh ``issued_at`` and a signature, and one record per command on the audit
stream (operator, action, command id). With signatures off (``require_signatures = false``) and no
operator configured, the CLI acts unsigned as producer ``operator``, as before operators existed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import orjson
import redis

from schemas.events import Event
from workers.attempt.holds import OPERATOR_PRODUCER
from workers.cli.environment import OPERATOR_ENV
from workers.cli.exit_codes import RET_CONFIG, RET_FAILED, RET_OK, RET_TIMEOUT
from workers.constants import BODY_FIELD
from workers.ingest.auth import AUDIT_MAXLEN
from workers.ingest.signing import sign
from workers.settings import OPERATOR_PREFIX, OperatorAction, Settings
from workers.tools.producer import Producer, WaitTimeout

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Acting:
    """Who sends: the producer name on the wire, its key (``None``: unsigned), and the operator."""

    producer: str
    key: bytes | None
    operator: str | None = None

    def signed(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``body`` as this sender's: its producer name, a fresh ``issued_at``, its signature."""
        fresh = {k: v for k, v in body.items() if k != "signature"}
        fresh["producer"] = self.producer
        fresh["issued_at"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        if self.key is not None:
            fresh["signature"] = sign(fresh, self.key)
        return fresh


def operator_option(fn: F) -> F:
    """``--operator NAME`` (default: ``MAILOPS_OPERATOR``, else the only configured operator)."""
    return click.option("--operator", "operator_name", envvar=OPERATOR_ENV, default=None, metavar="NAME",
                        help=f"Act as this [operators.NAME] (default: ${OPERATOR_ENV}, else the only one configured).")(fn)


def waiting(timeout: float) -> Callable[[F], F]:
    """``--wait/--no-wait`` (default: wait) and ``--timeout`` (default ``timeout`` seconds)."""

    def options(fn: F) -> F:
        fn = click.option("--timeout", default=timeout, show_default=True,
                          help="Seconds to wait for the outcome (then exit 5).")(fn)
        return click.option("--wait/--no-wait", default=True, show_default=True,
                            help="Wait for the terminal event(s), print them, and exit by them.")(fn)

    return options


#: The wait options of commands that issue a few commands.
wait_options = waiting(60.0)


def refuse(message: str, code: int = RET_FAILED) -> SystemExit:
    click.echo(f"mailops: {message}", err=True)
    return SystemExit(code)


def as_operator(settings: Settings, name: str | None, action: OperatorAction) -> Acting:
    """The configured operator who acts; exits 4 when there is none to act as, 1 when the action is not theirs."""
    operators = settings.operators
    if name is None and len(operators) == 1:
        name = next(iter(operators))
    if name is None:
        if not operators and not settings.require_signatures:
            return Acting(OPERATOR_PRODUCER, None)
        if not operators:
            raise refuse("no operator is configured: add [operators.NAME] with key_env or key_file and its actions "
                         "to the backends file", RET_CONFIG)
        raise refuse(f"several operators are configured ({', '.join(sorted(operators))}): "
                     f"give --operator NAME or set {OPERATOR_ENV}", RET_CONFIG)
    operator = operators.get(name)
    if operator is None:
        raise refuse(f"operator {name!r} is not configured (configured: {', '.join(sorted(operators)) or 'none'})",
                     RET_CONFIG)
    if action not in operator.actions:
        raise refuse(f"operator {name} may not {action} (its actions: {', '.join(operator.actions) or 'none'})")
    return Acting(operator.producer, operator.key.get_secret_value().encode(), operator.name)


def as_producer(settings: Settings, name: str, action: OperatorAction) -> Acting:
    """Producer ``name`` with its configured key (unsigned only if it is unknown and signatures are
    off); ``operator.NAME`` is operator ``NAME``, who must be allowed ``action``."""
    if name.startswith(OPERATOR_PREFIX):
        return as_operator(settings, name.removeprefix(OPERATOR_PREFIX), action)
    producer = settings.producers.get(name)
    if producer is not None:
        return Acting(name, producer.key.get_secret_value().encode())
    if settings.require_signatures:
        raise refuse(f"producer {name!r} is not configured, so there is no key to sign with "
                     f"(configured: {', '.join(sorted(settings.producers)) or 'none'})", RET_CONFIG)
    return Acting(name, None)


def audit(pipe: redis.client.Pipeline, settings: Settings, acting: Acting, action: str, command_id: str,
          **extra: str) -> None:
    """One audit record: who did what, and the command it issued (``extra``: e.g. the console's
    ``via`` and a release's ``why``)."""
    record = {"event": "operator_action", "operator": acting.operator or acting.producer, "action": action,
              "command": command_id, "at": datetime.now(UTC).isoformat(timespec="milliseconds"), **extra}
    pipe.xadd(settings.keys.audit, {BODY_FIELD: orjson.dumps(record)}, maxlen=AUDIT_MAXLEN, approximate=True)


def issue(client: redis.Redis, settings: Settings, acting: Acting, action: str,
          bodies: Iterable[Mapping[str, Any]]) -> tuple[Producer, list[dict[str, Any]]]:
    """Sign and send ``bodies`` as ``acting``, each with its audit record, in one transaction;
    returns a producer ready to wait for them, and the bodies as sent."""
    sent = [acting.signed(body) for body in bodies]
    producer = waiter(client, settings, acting)
    producer.expect(*(str(body["id"]) for body in sent))
    pipe = client.pipeline(transaction=True)
    for body in sent:
        audit(pipe, settings, acting, action, str(body["id"]))
        pipe.xadd(settings.commands_stream, {BODY_FIELD: orjson.dumps(body)})
    pipe.execute()
    return producer, sent


def waiter(client: redis.Redis, settings: Settings, acting: Acting) -> Producer:
    return Producer(client, producer=acting.producer, commands_stream=settings.commands_stream,
                    events_stream=settings.events_stream, keys=settings.keys)


def describe(event: Event) -> str:
    """Why an outcome is not what was asked, in one line."""
    error = event.error
    if error is None:
        holds = event.details.get("holds") or {}
        return f"{event.status}" + (f": {holds['why']}" if holds.get("why") else "")
    where = f" [{error.field}: {error.rule}]" if error.field else ""
    return f"{event.status}{where}: {error.message}"


def succeeded(event: Event, ok: frozenset[str] = frozenset({"succeeded"})) -> bool:
    """Did the command do what was asked: an ``ok`` status, or the duplicate of one."""
    if event.status in ok:
        return True
    original = event.details.get("original") if event.status == "duplicate" else None
    return isinstance(original, dict) and original.get("status") in ok


def await_outcomes(producer: Producer, ids: Iterable[str], *, timeout: float,
                   ok: frozenset[str] = frozenset({"succeeded"})) -> int:
    """Wait for each command's terminal event, print it (JSON on stdout; the reason of one that
    did not do what was asked on stderr) and return the exit code: 0 only if all did."""
    deadline = time.monotonic() + timeout
    code = RET_OK
    for command_id in ids:
        try:
            event = producer.wait(command_id, timeout=max(0.0, deadline - time.monotonic()))
        except WaitTimeout as exc:
            click.echo(f"mailops: {exc}", err=True)
            return RET_TIMEOUT
        click.echo(event.to_json().decode())
        if not succeeded(event, ok):
            click.echo(f"mailops: {command_id} {describe(event)}", err=True)
            code = RET_FAILED
    return code


#: Statuses that count as done for an action that lifts one hold (others may remain).
RELEASED = frozenset({"succeeded", "held"})
