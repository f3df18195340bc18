"""Commands: the envelope a producer sends and the arguments of each command.

A producer adds ``{"body": <json>}`` to the commands stream; :func:`parse_command` turns the body
into a :class:`Command` or raises :class:`~workers.errors.CommandRejected` naming the field and
the rule that failed.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from schemas.fields import (
    CommandId,
    CpanelUser,
    Domain,
    EmailAddress,
    ForwardDestination,
    Name,
    Password,
    Quota,
    StreamName,
)
from workers.attempt.retry_policy import DEFAULT_POLICY, URGENT_POLICY, RetryPolicy
from workers.errors import CommandRejected

#: Largest accepted stream entry body, in bytes.
MAX_BODY_BYTES = 16 * 1024

Priority = Literal["urgent", "default", "bulk"]
#: The kind of target a command's arguments name; a backend's call table has one call per scope.
Scope = Literal["account", "mailbox", "domain"]


class FieldRuleError(ValueError):
    """Raised by a model validator to name the field and rule that a cross-field check broke."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule


class CommandArgs(BaseModel):
    """Base of every command's own arguments."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)

    def target(self) -> str:
        """What the command changes: a mailbox address or a cPanel account name."""
        raise NotImplementedError

    def scope(self) -> Scope:
        """Which kind of target that is: it picks the call in each backend's call table."""
        raise NotImplementedError


class SuspensionArgs(CommandArgs):
    """Arguments of a suspend/unsuspend command: one cPanel account or one mailbox."""

    user: CpanelUser | None = Field(default=None, description="cPanel account (account-wide).")
    email: EmailAddress | None = Field(default=None, description="one mailbox.")

    @model_validator(mode="after")
    def _one_target(self) -> SuspensionArgs:
        if self.user is None and self.email is None:
            raise FieldRuleError("user", "missing", "give args.user (a cPanel account) or args.email (a mailbox)")
        if self.user is not None and self.email is not None:
            raise FieldRuleError("email", "one_target", "give args.user or args.email, not both")
        return self

    def target(self) -> str:
        return (self.email or "").lower() or self.user or ""

    def scope(self) -> Scope:
        return "mailbox" if self.email else "account"


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


class AccountArgs(CommandArgs):
    """Arguments of a command on one whole cPanel account."""

    user: CpanelUser = Field(description="cPanel account.")

    def target(self) -> str:
        return self.user

    def scope(self) -> Scope:
        return "account"


class ForwardDestinationArgs(AccountArgs):
    """Where a (system or cPanel) account's own mail is forwarded; empty disables forwarding."""

    forward_to: list[ForwardDestination | CpanelUser] = Field(
        default_factory=list, max_length=20, description="addresses or account names; empty = no forwarding."
    )


class MailboxArgs(CommandArgs):
    """Arguments of a command on one existing mailbox."""

    email: EmailAddress = Field(description="the mailbox, local@domain.")

    def target(self) -> str:
        return self.email.lower()

    def scope(self) -> Scope:
        return "mailbox"

    @property
    def local_part(self) -> str:
        return self.email.rpartition("@")[0]

    @property
    def domain(self) -> str:
        return _domain_of(self.email)


class NewMailboxArgs(MailboxArgs):
    """A mailbox to create, with its password and quota (MB; 0 or ``unlimited`` = no limit)."""

    password: Password = Field(repr=False, description="the new mailbox's password (never logged).")
    quota: Quota = Field(default=0, description="quota in MB; 0 or 'unlimited' means no limit.")


class PasswordArgs(MailboxArgs):
    """A mailbox's new password."""

    password: Password = Field(repr=False, description="the new password (never logged).")


class ForwarderArgs(MailboxArgs):
    """One forwarder: mail to ``email`` is also delivered to ``destination``."""

    destination: ForwardDestination = Field(description="where mail is forwarded to (``+`` allowed before the @).")


class DomainArgs(CommandArgs):
    """Arguments of a command on one mail domain."""

    domain: Domain = Field(description="the mail domain.")

    def target(self) -> str:
        return self.domain.lower()

    def scope(self) -> Scope:
        return "domain"


#: A WHM ``modifyacct`` limit: 0..999999 or ``unlimited`` (sent as a string, as the panel expects).
Limit = Annotated[int, Field(ge=0, le=999_999)] | Literal["unlimited"]
#: A byte or megabyte amount: any non-negative number or ``unlimited``.
Amount = Annotated[int, Field(ge=0)] | Literal["unlimited"]
#: A WHM boolean flag, sent as ``1`` or ``0``.
Flag = Literal[0, 1]


class ModifyAccountArgs(AccountArgs):
    """WHM ``modifyacct`` with the seed document's case-exact field names and value rules.

    Unknown or mis-cased names are refused here (the panel would silently ignore them).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=False)

    DNS: Domain | None = Field(default=None, description="new main domain.")
    contactemail: EmailAddress | None = Field(default=None, description="primary contact address.")
    newuser: CpanelUser | None = Field(default=None, description="new account name.")
    owner: CpanelUser | None = Field(default=None, description="reseller that owns the account.")
    BWLIMIT: Amount | None = Field(default=None, description="bandwidth limit, or 'unlimited'.")
    HASCGI: Flag | None = None
    HASDKIM: Flag | None = None
    HASSHELL: Flag | None = None
    HASSPF: Flag | None = None
    LOCALE: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")] | None = None
    MAXFTP: Limit | None = None
    MAXSQL: Limit | None = None
    MAXPOP: Limit | None = None
    MAXLST: Limit | None = None
    MAXSUB: Limit | None = None
    MAXPARK: Limit | None = None
    MAXADDON: Limit | None = None
    MAX_EMAIL_PER_HOUR: Amount | None = Field(default=None, description="0 or 'unlimited' = no limit.")
    MAX_DEFER_FAIL_PERCENTAGE: Annotated[int, Field(ge=1, le=100)] | Literal["unlimited"] | None = Field(
        default=None, description="1..100 or 'unlimited' (the panel refuses 0)."
    )
    RS: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = Field(default=None, description="theme.")
    QUOTA: Amount | None = Field(default=None, description="disk quota, 0 or 'unlimited' = no limit.")

    @model_validator(mode="after")
    def _something_to_change(self) -> ModifyAccountArgs:
        if not self.changes():
            raise FieldRuleError("DNS", "nothing_to_change", "give at least one field to change besides args.user")
        return self

    def changes(self) -> dict[str, str]:
        """The fields to send, as the panel's form strings."""
        return {
            name: str(value)
            for name, value in self.model_dump(exclude={"user"}, exclude_none=True).items()
        }


@dataclass(frozen=True)
class CommandSpec:
    """What the worker knows about one command name."""

    name: str
    args: type[CommandArgs]
    #: What the command changes on its target (``outgoing``, ``login``, ``password``...): commands
    #: with the same target and aspect are applied in issue order.
    aspect: str
    #: Queue class used when neither the command nor the producer picks one.
    priority: Priority = "default"
    description: str = ""
    #: A suspension adds its reason's hold on the target+aspect, its release removes it; the panel
    #: is suspended while any hold remains (``workers/attempt/holds.py``).
    hold: Literal["add", "remove"] | None = None
    #: Not idempotent on the panel (a second call adds a second line or fails): after an attempt
    #: that may have reached the panel unrecorded, the panel is read before calling again.
    reads_before_resend: bool = False
    #: What it sets is the target's desired state until the next command for that aspect, and
    #: ``mailops reconcile`` restores it when the panel drifts (suspensions go by holds instead).
    restorable: bool = False
    #: How often and how long it is retried.
    retry: RetryPolicy = DEFAULT_POLICY


COMMANDS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("suspend_outgoing", SuspensionArgs, "outgoing", "urgent", "Stop outgoing mail.", hold="add",
                    retry=URGENT_POLICY),
        CommandSpec("unsuspend_outgoing", SuspensionArgs, "outgoing", "default", "Allow outgoing mail again.", hold="remove"),
        CommandSpec("suspend_incoming", SuspensionArgs, "incoming", "urgent", "Refuse incoming mail.", hold="add"),
        CommandSpec("unsuspend_incoming", SuspensionArgs, "incoming", "default", "Accept incoming mail again.", hold="remove"),
        CommandSpec("suspend_login", SuspensionArgs, "login", "urgent", "Refuse mailbox logins (IMAP/POP/webmail).", hold="add"),
        CommandSpec("unsuspend_login", SuspensionArgs, "login", "default", "Allow mailbox logins again.", hold="remove"),
        CommandSpec("hold_outgoing", SuspensionArgs, "hold", "urgent", "Queue outgoing mail without delivering it.", restorable=True),
        CommandSpec("release_outgoing", SuspensionArgs, "hold", "default", "Deliver held outgoing mail again.", restorable=True),
        CommandSpec("terminate_sessions", AccountArgs, "sessions", "urgent", "End the account's IMAP/POP sessions."),
        CommandSpec("set_forward_destination", ForwardDestinationArgs, "forward_destination", "default",
                    "Forward an account's own mail (empty list: stop).", restorable=True),
        CommandSpec("addmail", NewMailboxArgs, "mailbox", "default", "Create a mailbox.", reads_before_resend=True, restorable=True),
        CommandSpec("delmail", MailboxArgs, "mailbox", "default", "Delete a mailbox.", restorable=True),
        CommandSpec("passwd", PasswordArgs, "password", "default", "Set a mailbox's password.", reads_before_resend=True),
        CommandSpec("addforward", ForwarderArgs, "forwarder", "default", "Add a forwarder.", reads_before_resend=True, restorable=True),
        CommandSpec("delforward", ForwarderArgs, "forwarder", "default", "Remove a forwarder.", restorable=True),
        CommandSpec("onspf", DomainArgs, "spf", "default", "Publish the domain's SPF record.", restorable=True),
        CommandSpec("offspf", DomainArgs, "spf", "default", "Stop publishing the domain's SPF record.", restorable=True),
        CommandSpec("ondkim", DomainArgs, "dkim", "default", "Sign the domain's mail with DKIM.", restorable=True),
        CommandSpec("offdkim", DomainArgs, "dkim", "default", "Stop DKIM signing for the domain.", restorable=True),
        CommandSpec("modifyacct", ModifyAccountArgs, "account", "default", "Change account settings (WHM modifyacct)."),
    )
}
#: The commands whose state ``mailops reconcile`` restores (``CommandSpec.restorable``).
RESTORABLE: frozenset[str] = frozenset(name for name, spec in COMMANDS.items() if spec.restorable)


class Command(BaseModel):
    """One command as the worker runs it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: CommandId = Field(description="the producer's idempotency key; generated when absent.")
    command: str = Field(description="what to do; one of the command vocabulary.")
    backend: Name | None = Field(default=None, description="backend to run on; resolved from the target if absent.")
    args: dict[str, Any] = Field(description="the command's own fields.")
    producer: Name = Field(description="who sent the command.")
    issued_at: datetime = Field(description="when the producer decided this (RFC 3339).")
    reply_to: StreamName | None = Field(default=None, description="stream that also receives the events.")
    priority: Priority | None = Field(default=None, description="queue class; default from the command kind.")
    seq: int | None = Field(default=None, ge=0, description="producer sequence number, breaks issued_at ties.")
    reason: Name | None = Field(default=None, description="who owns a suspension (abuse, billing, ...).")
    signature: str | None = Field(default=None, max_length=256, description="HMAC-SHA256 of the command.")
    batch: Name | None = Field(default=None, description="bulk batch this command belongs to.")
    id_generated: bool = Field(default=False, exclude=True)

    @property
    def spec(self) -> CommandSpec:
        return COMMANDS[self.command]

    def typed_args(self) -> CommandArgs:
        return self.spec.args.model_validate(self.args)

    @property
    def target(self) -> str:
        return self.typed_args().target()

    @property
    def queue(self) -> Priority:
        return self.priority or self.spec.priority

    def to_json(self) -> bytes:
        return orjson.dumps(self.model_dump(mode="json", exclude_none=True))


def parse_command(body: bytes | str, *, now: datetime | None = None) -> Command:
    """Validate one stream entry body; raise :class:`CommandRejected` on the first problem."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if len(raw) > MAX_BODY_BYTES:
        raise CommandRejected("body", "max_size", f"entry is {len(raw)} bytes; at most {MAX_BODY_BYTES} accepted")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CommandRejected("body", "json", f"not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandRejected("body", "object", "the command must be a JSON object")
    return validate_command(data, now=now)


def validate_command(data: Mapping[str, Any], *, now: datetime | None = None) -> Command:
    """Validate a decoded command object."""
    values = dict(data)
    generated = False
    if values.get("id") is None:
        values["id"] = f"gen-{uuid.uuid4()}"
        generated = True
    if values.get("issued_at") is None:
        values["issued_at"] = now or datetime.now(UTC)
    elif not isinstance(values["issued_at"], str | datetime):
        # pydantic would read a number as epoch seconds; the contract is an RFC 3339 string.
        raise CommandRejected("issued_at", "rfc3339", "issued_at must be an RFC 3339 string with a zone, not a number")
    name = values.get("command")
    if isinstance(name, str) and name not in COMMANDS:
        raise CommandRejected("command", "unknown_command", f"unknown command {name!r}; known: {', '.join(sorted(COMMANDS))}")
    try:
        command = Command.model_validate(values)
    except ValidationError as exc:
        raise _rejection(exc, prefix="") from None
    try:
        command.typed_args()
    except ValidationError as exc:
        raise _rejection(exc, prefix="args.") from None
    if command.issued_at.tzinfo is None:
        raise CommandRejected("issued_at", "timezone", "issued_at needs a timezone (e.g. 2026-11-22T10:00:00Z)")
    return command.model_copy(update={"id_generated": generated}) if generated else command


def _rejection(exc: ValidationError, *, prefix: str) -> CommandRejected:
    err = exc.errors(include_url=False)[0]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, FieldRuleError):
        loc = ".".join([*(str(p) for p in err["loc"]), cause.field])
        return CommandRejected(f"{prefix}{loc}", cause.rule, str(cause))
    loc = ".".join(str(p) for p in err["loc"])
    field = f"{prefix}{loc}" if loc else prefix.rstrip(".") or "body"
    message = str(err["msg"]).removeprefix("Value error, ")
    return CommandRejected(field, str(err["type"]), message)
