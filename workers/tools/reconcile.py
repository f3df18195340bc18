"""Drift check: compare the panels' actual state with what mailops applied, and converge them.

The targets checked are every backend+target+aspect mailops has applied a command to (each commit
leaves an order record, :meth:`Keys.order`, with the command's name and its arguments without
secrets). What the panel should show:

* a suspension aspect (``outgoing``, ``incoming``, ``login``): "suspended" when any hold remains,
  "active" otherwise;
* any other aspect (``mailbox``, ``forwarder``, ``spf``, ``dkim``, ``hold``...): what the last
  command applied to it asked for (its desired state).

The actual state is read with the call that verifies that command on that backend kind and scope
(:mod:`workers.backends.readback`: WHM ``accountsummary``, UAPI ``list_pops_with_disk``,
``list_forwarders``, ``validate_current_spfs``...). A state that cannot be read (no read call, the
read failed, the target is gone) is ``unknown``, never counted as in agreement.

Converging never writes holds or panels directly: it adds ordinary commands to the commands
stream, so they pass the ordering gate like any other.

* held but active on the panel -> ``suspend_<aspect>`` for the oldest holding reason, issued 1 ms
  after that hold's own command: it re-applies the hold and loses to any later release of it;
* not held but suspended on the panel -> ``unsuspend_<aspect>`` with reason ``reconcile``, issued
  now: it removes no hold and reaches the panel only if still no hold remains;
* another aspect adrift -> its last command again, issued 1 ms after it (so it loses to any later
  command for that target). An ``addmail`` is sent with a new random password: the mailbox was
  deleted with its old one, which mailops never keeps; the owner sets one with ``passwd``.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
import redis

from schemas.commands import COMMANDS, RESTORABLE, Command, validate_command
from schemas.fields import SECRET_FIELDS
from workers.attempt.holds import hold_aspects, hold_command, holds_of, identity_of
from workers.attempt.ordering import OrderStamp
from workers.attempt.verification import check_of
from workers.backends.base import Backend
from workers.backends.readback import Read, Unreadable, shows
from workers.constants import BODY_FIELD, Keys
from workers.errors import MailopsError
from workers.store.wire import as_text

#: Producer (and, for releases, reason) of the commands a reconcile issues.
RECONCILE_PRODUCER = "reconcile"
#: What validating a stored command takes in place of a secret mailops never keeps (``addmail``'s password).
PLACEHOLDER_PASSWORD = "not-kept-by-mailops-1A"
#: Characters a command id may not hold (schemas.fields.CommandId).
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._:@/-]")

State = Literal["ok", "drift", "unknown"]


@dataclass(frozen=True)
class Finding:
    """One target+aspect: what the holds say and what the panel says."""

    target: str
    aspect: str
    backend: str
    args: dict[str, Any]
    holds: dict[str, dict[str, Any]]
    #: Suspension aspects: True = suspended on the panel, False = active; other aspects: True = the
    #: panel shows what ``last`` asked for, False = it does not; None = could not be read.
    panel: bool | None
    note: str = ""
    #: Other aspects: the last command applied (its desired state); ``None`` for suspension aspects.
    last: str | None = None
    #: Other aspects: the stamp of that command (the converging one is issued just after it).
    last_stamp: str | None = None

    @property
    def expected(self) -> bool:
        return True if self.last is not None else bool(self.holds)

    @property
    def state(self) -> State:
        if self.panel is None:
            return "unknown"
        return "ok" if self.panel == self.expected else "drift"

    def as_dict(self) -> dict[str, Any]:
        if self.last is not None:
            expected, shown, other = f"as {self.last}", f"as {self.last}", f"not as {self.last}"
        else:
            expected = "suspended" if self.expected else "active"
            shown, other = "suspended", "active"
        panel = None if self.panel is None else (shown if self.panel else other)
        return {"target": self.target, "aspect": self.aspect, "backend": self.backend, "state": self.state,
                "held_by": sorted(self.holds), "expected": expected, "panel": panel, "note": self.note,
                **({"last": self.last} if self.last is not None else {})}


    def summary(self) -> str:
        """One line for a person: what mailops expects, what the panel showed, and why unknown."""
        if self.last is not None:
            panel = "unknown" if self.panel is None else ("shows it" if self.panel else "shows otherwise")
            said = f"last applied {self.last}, panel {panel}"
        else:
            row = self.as_dict()
            said = (f"holds say {row['expected']} ({', '.join(row['held_by']) or 'no hold'}), "
                    f"panel says {row['panel'] or 'unknown'}")
        return (f"{self.state:7} {self.target} {self.aspect} on {self.backend}: {said}"
                + (f" - {self.note}" if self.note else ""))


@dataclass(frozen=True, order=True)
class Known:
    """One backend+target+aspect mailops applied a command to, and the last command applied."""

    target: str
    aspect: str
    backend: str
    args: dict[str, Any]
    #: Its name (records written before it was kept: ``""``) and its order stamp.
    command: str
    stamp: str


def known_targets(client: redis.Redis, keys: Keys) -> list[Known]:
    """Every backend+target+aspect a command was applied to (commands whose aspect nothing can
    converge, such as ``passwd`` or ``terminate_sessions``, included: :func:`check` says why)."""
    found = []
    for key in client.scan_iter(match=f"{keys.order_family}:*", count=500):
        identity = identity_of(keys.order_family, as_text(key))
        if identity is None:
            continue
        backend, target, aspect = identity
        args, command, stamp = client.hmget(key, "args", "command", "last")
        if args:
            found.append(Known(target, aspect, backend, orjson.loads(args), as_text(command or b""),
                               as_text(stamp or b"")))
    return sorted(found)


def check(client: redis.Redis, keys: Keys, backends: Mapping[str, Backend], *, only: str | None = None) -> list[Finding]:
    """Read every known target's panel state and compare it with its holds or its last command."""
    findings = []
    suspensions = set(hold_aspects())
    for known in known_targets(client, keys):
        if only is not None and known.backend != only:
            continue
        if known.aspect not in suspensions and known.command not in RESTORABLE:
            continue  # nothing to compare (passwd cannot be read) or converge (sessions)
        backend = backends.get(known.backend)
        last = None if known.aspect in suspensions else known.command
        holds = holds_of(client, keys, known.backend, known.target, known.aspect) if last is None else {}
        if backend is None:
            panel, note = None, f"backend {known.backend} is not configured"
        elif last is None:
            panel, note = panel_state(backend, known.aspect, known.args)
        else:
            panel, note = desired_state_on(backend, last, known.args)
        findings.append(Finding(known.target, known.aspect, known.backend, known.args, holds, panel, note,
                                last=last, last_stamp=known.stamp if last is not None else None))
    return findings


def secrets_not_kept(name: str, args: Mapping[str, Any]) -> list[str]:
    """The secret fields command ``name`` takes that its commit did not keep (``SECRET_FIELDS``)."""
    return [field for field in COMMANDS[name].args.model_fields if field in SECRET_FIELDS and field not in args]


def desired_state_on(backend: Backend, name: str, args: dict[str, Any]) -> tuple[bool | None, str]:
    """Whether ``backend`` shows what the command ``name`` with ``args`` asked for (``None``:
    unknown), and a note saying why it is unknown."""
    # Validation needs the secrets commits never keep; reads never see them.
    filled = {**args, **dict.fromkeys(secrets_not_kept(name, args), PLACEHOLDER_PASSWORD)}
    body = {"command": name, "backend": backend.name, "args": filled, "producer": RECONCILE_PRODUCER}
    try:
        read, typed = check_of(backend, validate_command(body))
    except MailopsError as exc:
        return None, f"{name} cannot be checked here: {exc}"
    if not isinstance(read, Read):
        return None, f"{backend.kind} cannot read what {name} sets here: {read.reason}"
    try:
        state = backend.read(read, typed)
    except MailopsError as exc:
        return None, f"panel read failed: {exc}"
    return shows(state, read.want(typed, backend.config)), ""


def panel_state(backend: Backend, aspect: str, args: dict[str, Any]) -> tuple[bool | None, str]:
    """Whether ``aspect`` of the target in ``args`` is suspended on ``backend`` now (``None``:
    unknown), and a note saying why it is unknown."""
    def command(name: str) -> Command:
        return validate_command({"command": name, "backend": backend.name, "args": args, "producer": RECONCILE_PRODUCER})

    suspended, typed = check_of(backend, command(hold_command(aspect, "add")))
    active, _ = check_of(backend, command(hold_command(aspect, "remove")))
    if not isinstance(suspended, Read) or not isinstance(active, Read):
        reason = suspended.reason if isinstance(suspended, Unreadable) else "no read call"
        return None, f"{backend.kind} cannot read {aspect} suspension here: {reason}"
    try:
        state = backend.read(suspended, typed)
    except MailopsError as exc:
        return None, f"panel read failed: {exc}"
    if shows(state, suspended.want(typed, backend.config)):
        return True, ""
    if shows(state, active.want(typed, backend.config)):
        return False, ""
    return None, f"{suspended.function} shows {state}"


def converging_command(finding: Finding, *, now: datetime | None = None,
                       seal: Callable[[str, str], str] | None = None) -> dict[str, Any] | None:
    """The command body that brings the panel to what the holds or the last command say (``None``
    if nothing to do). ``seal`` (the sealer's ``seal``) seals a new mailbox's password at once, so
    it never rests in Redis in plain text."""
    if finding.state != "drift":
        return None
    stamp = int(time.time() * 1000)
    body: dict[str, Any] = {"backend": finding.backend, "args": finding.args, "producer": RECONCILE_PRODUCER}
    if finding.last is not None:
        last = OrderStamp.decode(finding.last_stamp) if finding.last_stamp else None
        issued = (datetime.fromtimestamp(last.issued_ms / 1000, UTC) + timedelta(milliseconds=1)
                  if last is not None else now or datetime.now(UTC))
        body.update(command=finding.last)
        # A secret the last command set is not kept: re-creating sets a new one (the old is lost anyway).
        fresh = {field: secrets.token_urlsafe(24) for field in secrets_not_kept(finding.last, finding.args)}
        body["args"] = {**finding.args, **{field: seal(value, field) if seal else value for field, value in fresh.items()}}
    elif finding.expected:
        reason, hold = min(finding.holds.items(), key=lambda item: str(item[1].get("issued_at")))
        issued = datetime.fromisoformat(str(hold["issued_at"])) + timedelta(milliseconds=1)
        body.update(command=hold_command(finding.aspect, "add"), reason=reason)
    else:
        issued = now or datetime.now(UTC)
        body.update(command=hold_command(finding.aspect, "remove"), reason=RECONCILE_PRODUCER)
    body["id"] = _ID_UNSAFE.sub("_", f"reconcile-{body['command']}-{finding.backend}-{finding.target}-{stamp}")[-200:]
    body["issued_at"] = issued.isoformat().replace("+00:00", "Z")
    return body


def apply(client: redis.Redis, commands_stream: str, findings: list[Finding]) -> list[dict[str, Any]]:
    """Add the converging commands of every drift to the commands stream; returns them."""
    bodies = [body for finding in findings if (body := converging_command(finding)) is not None]
    for body in bodies:
        client.xadd(commands_stream, {BODY_FIELD: orjson.dumps(body)})
    return bodies
