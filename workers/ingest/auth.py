"""Producer authentication and authorisation: who may ask the worker to do what.

Each producer is configured with its own HMAC key (from the environment or a file, never the
config file), the commands and backends it may use, and whether it may target the panels'
system accounts::

    [producers.abuse-detector]
    key_env = "MAILOPS_KEY_ABUSE"
    commands = ["suspend_outgoing", "unsuspend_outgoing", "suspend_login", "unsuspend_login"]
    backends = ["*"]

:class:`AuthGate` is the ingest gate that enforces it. It refuses, with a ``rejected`` event
naming the field and rule and an audit record on the ``audit`` stream:

====================  ==================================================================
field / rule          when
====================  ==================================================================
producer / unknown    the producer is not configured (signatures required)
signature / missing   no ``signature`` (signatures required)
signature / mismatch  the signature is not the HMAC of the command under the producer's key
id / required         a signed command without its own ``id`` (replays could not be told apart)
issued_at / required  a signed command without ``issued_at`` (its age could not be checked)
issued_at / rfc3339   ``issued_at`` given as a number instead of an RFC 3339 string
issued_at / too_old   ``issued_at`` older than ``replay_window_s`` (default 15 min)
issued_at / future    ``issued_at`` ahead of now by more than ``max_clock_skew_s``
command / not_allowed the producer may not send this command
backend / not_allowed the producer may not use this backend
args.X / system_account  ``root``, ``nobody`` or ``cpanel`` as a target, unless allowed
args.X / control_characters, query_characters  hostile characters in any string argument
reason / not_allowed  a suspend/unsuspend whose hold reason is not in the sender's ``reasons``
====================  ==================================================================

Hold reasons are authorised: a configured producer or operator may place and lift holds of its
own name and of the reasons listed in its ``reasons`` (``"*"`` = any); so ``billing`` cannot lift
the ``abuse`` hold. Operators (``[operators.NAME]``) sign as producer ``operator.NAME`` with their
own key; they may send any command when their ``actions`` include ``publish`` or ``bulk``, only
suspends and unsuspends when they include ``holds.release``, and those plus the commands whose
state reconcile restores (``CommandSpec.restorable``) with ``reconcile.apply``.

A replay inside the window carries an ``id`` the worker has seen and is answered by the
idempotency check (``duplicate``/``in_flight``), never run twice.

``require_signatures = false`` turns the signature, id and age checks off (for a trusted
network or a migration); it is logged as a WARNING at start-up. Configured producers keep their
allow-lists, and unknown producers get no system accounts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from schemas.commands import COMMANDS, RESTORABLE, Command
from schemas.fields import SECRET_FIELDS, SYSTEM_ACCOUNTS, hostile_character, walk_strings
from workers.attempt.holds import plan_for
from workers.errors import CommandRejected
from workers.ingest.reader import Entry, IngestGate
from workers.ingest.sealing import Sealer, SealingGate, decode_key
from workers.ingest.signing import verify
from workers.settings import OperatorConfig, ProducerConfig, Settings

logger = logging.getLogger(__name__)

#: Approximate cap on the audit stream's length (XADD MAXLEN ~).
AUDIT_MAXLEN = 100_000
#: Argument names that name a cPanel account (checked against the system accounts).
ACCOUNT_FIELDS = frozenset({"user", "newuser", "owner", "forward_to"})
#: The wildcard in a producer's allow-lists.
ANY = "*"


#: Commands that place or lift a hold (what ``holds.release`` and ``reconcile.apply`` issue).
HOLD_COMMANDS = tuple(sorted(name for name, spec in COMMANDS.items() if spec.hold))


def _allowed(value: str | None, allowed: tuple[str, ...]) -> bool:
    return ANY in allowed or (value is not None and value in allowed)


def as_producer(operator: OperatorConfig) -> ProducerConfig:
    """An operator seen from ingest: the producer ``operator.NAME`` with its key and what its actions send."""
    actions = set(operator.actions)
    commands: tuple[str, ...] = ()
    if actions & {"publish", "bulk"}:
        commands = (ANY,)
    else:
        if "holds.release" in actions or "reconcile.apply" in actions:
            commands += HOLD_COMMANDS
        if "reconcile.apply" in actions:
            commands += tuple(sorted(RESTORABLE))
    return ProducerConfig(name=operator.producer, key=operator.key, commands=commands, backends=operator.backends,
                          reasons=operator.reasons)


def senders(settings: Settings) -> dict[str, ProducerConfig]:
    """Everyone who may sign commands: the producers, and the operators as ``operator.NAME``."""
    return {**settings.producers, **{op.producer: as_producer(op) for op in settings.operators.values()}}


class AuthGate:
    """Ingest gate: signature, freshness, scope, system accounts and character rules."""

    def __init__(self, settings: Settings, client: redis.Redis, *, clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.producers: Mapping[str, ProducerConfig] = senders(settings)
        self.client = client
        self.audit_stream = settings.keys.audit
        self.clock = clock or (lambda: datetime.now(UTC))
        if not settings.require_signatures:
            logger.warning(
                "SIGNATURES DISABLED (require_signatures = false): any writer to %s can run commands "
                "as any producer; only allow-lists of configured producers apply",
                settings.commands_stream,
            )

    def __call__(self, command: Command, entry: Entry) -> Command:
        try:
            self.check(command, entry.decoded)
        except CommandRejected as exc:
            # (The entry, and any secret in it, is deleted when the rejection is answered.)
            self.audit(command, entry, exc)
            raise
        return command

    def check(self, command: Command, raw: Mapping[str, Any]) -> None:
        """Raise :class:`CommandRejected` for the first rule the command breaks."""
        producer = self.producers.get(command.producer)
        if self.settings.require_signatures:
            producer = self._authenticate(command, raw, producer)
        if producer is not None:
            if not _allowed(command.command, producer.commands):
                raise CommandRejected("command", "not_allowed", f"producer {producer.name} may not send {command.command}")
            if not _allowed(command.backend, producer.backends):
                raise CommandRejected("backend", "not_allowed", f"producer {producer.name} may not use backend {command.backend}")
            plan = plan_for(command)
            if plan is not None and not _allowed(plan.reason, (producer.name, *producer.reasons)):
                raise CommandRejected("reason", "not_allowed", f"producer {producer.name} may not place or lift "
                                                               f"{plan.reason}'s hold")
        if producer is None or not producer.allow_system_accounts:
            _refuse_system_accounts(command.args)
        for path, value in walk_strings(command.args, "args"):
            rule = hostile_character(value, secret=path.rpartition(".")[2] in SECRET_FIELDS)
            if rule == "control_characters":
                raise CommandRejected(path, rule, "control, line-break or invisible characters are not allowed")
            if rule == "query_characters":
                raise CommandRejected(path, rule, "the characters & = ? % # are not allowed here")

    def _authenticate(self, command: Command, raw: Mapping[str, Any], producer: ProducerConfig | None) -> ProducerConfig:
        if producer is None:
            raise CommandRejected("producer", "unknown", f"producer {command.producer} is not configured")
        if command.signature is None:
            raise CommandRejected("signature", "missing", "commands must be signed (HMAC-SHA256, see README)")
        if not verify(raw, producer.key.get_secret_value().encode(), command.signature):
            raise CommandRejected("signature", "mismatch", f"not signed with producer {producer.name}'s key")
        if raw.get("id") is None:
            raise CommandRejected("id", "required", "a signed command needs its own id (replays are told apart by it)")
        if raw.get("issued_at") is None:
            raise CommandRejected("issued_at", "required", "a signed command needs issued_at (its age is checked)")
        if not isinstance(raw["issued_at"], str):
            raise CommandRejected("issued_at", "rfc3339", "issued_at must be an RFC 3339 string with a zone, not a number")
        now = self.clock()
        if command.issued_at < now - timedelta(seconds=self.settings.replay_window_s):
            raise CommandRejected(
                "issued_at", "too_old", f"issued more than {self.settings.replay_window_s} s ago; send a fresh command"
            )
        if command.issued_at > now + timedelta(seconds=self.settings.max_clock_skew_s):
            raise CommandRejected("issued_at", "future", "issued_at is ahead of the worker's clock")
        return producer

    def audit(self, command: Command, entry: Entry, exc: CommandRejected) -> None:
        """One record on the audit stream for a refused command (never its arguments)."""
        record = {
            "at": str(int(time.time() * 1000)),
            "decision": "rejected",
            "entry": entry.id,
            "id": command.id,
            "producer": command.producer,
            "command": command.command,
            "backend": command.backend or "",
            "field": exc.field,
            "rule": exc.rule,
            "message": exc.message,
        }
        self.client.xadd(self.audit_stream, record, maxlen=AUDIT_MAXLEN, approximate=True)  # type: ignore[arg-type]


def _refuse_system_accounts(args: Mapping[str, Any]) -> None:
    for name in ACCOUNT_FIELDS & args.keys():
        for path, value in walk_strings(args[name], f"args.{name}"):
            if value.lower() in SYSTEM_ACCOUNTS:
                raise CommandRejected(path, "system_account", f"{value} is a system account; this producer may not target it")


def sealer_for(settings: Settings) -> Sealer | None:
    """The worker's sealer, or ``None`` when no sealing key is configured."""
    return Sealer(decode_key(settings.sealing_key.get_secret_value())) if settings.sealing_key else None


def security_gates(settings: Settings, client: redis.Redis) -> list[IngestGate]:
    """Authentication first, then sealing (the routing gate goes before both)."""
    return [AuthGate(settings, client), SealingGate(sealer_for(settings))]
