"""Drift check: compare the panels' actual suspension state with the holds, and converge them.

The targets checked are those mailops has applied a suspend/unsuspend to (every such commit
leaves an order record, :meth:`Keys.order`, keyed by backend, target and aspect, with the
arguments). For each, the
expected state is "suspended" when any hold remains and "active" otherwise; the actual state is
read from the panel with the read call that verifies ``suspend_<aspect>`` on that backend kind and
scope (:mod:`workers.backends.readback`: WHM ``accountsummary``, UAPI ``list_pops_with_disk``...).
A state that cannot be read (no read call, the read failed, the target is gone) is ``unknown``,
never counted as in agreement.

Converging never writes holds or panels directly: it adds ordinary commands to the commands
stream, so they pass the ordering gate like any other.

* held but active on the panel -> ``suspend_<aspect>`` for the oldest holding reason, issued 1 ms
  after that hold's own command: it re-applies the hold and loses to any later release of it;
* not held but suspended on the panel -> ``unsuspend_<aspect>`` with reason ``reconcile``, issued
  now: it removes no hold and reaches the panel only if still no hold remains.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
import redis

from schemas.commands import Command, validate_command
from workers.backends.base import Backend
from workers.backends.readback import Read, Unreadable, shows
from workers.constants import BODY_FIELD, Keys
from workers.errors import MailopsError
from workers.holds import hold_aspects, holds_of, identity_of
from workers.verification import check_of
from workers.wire import as_text

#: Producer (and, for releases, reason) of the commands a reconcile issues.
RECONCILE_PRODUCER = "reconcile"

State = Literal["ok", "drift", "unknown"]


@dataclass(frozen=True)
class Finding:
    """One target+aspect: what the holds say and what the panel says."""

    target: str
    aspect: str
    backend: str
    args: dict[str, Any]
    holds: dict[str, dict[str, Any]]
    #: True = suspended on the panel, False = active, None = could not be read.
    panel: bool | None
    note: str = ""

    @property
    def expected(self) -> bool:
        return bool(self.holds)

    @property
    def state(self) -> State:
        if self.panel is None:
            return "unknown"
        return "ok" if self.panel == self.expected else "drift"

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "aspect": self.aspect, "backend": self.backend, "state": self.state,
                "held_by": sorted(self.holds), "expected": "suspended" if self.expected else "active",
                "panel": None if self.panel is None else ("suspended" if self.panel else "active"), "note": self.note}


def known_targets(client: redis.Redis, keys: Keys) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(target, aspect, backend, args) of every backend+target+aspect a suspension was applied to."""
    aspects = set(hold_aspects())
    found = []
    for key in client.scan_iter(match=f"{keys.order_family}:*", count=500):
        identity = identity_of(keys.order_family, as_text(key))
        if identity is None or identity[2] not in aspects:
            continue
        backend, target, aspect = identity
        args = client.hget(key, "args")
        if args:
            found.append((target, aspect, backend, orjson.loads(args)))
    return sorted(found)


def check(client: redis.Redis, keys: Keys, backends: Mapping[str, Backend], *, only: str | None = None) -> list[Finding]:
    """Read every known target's panel state and compare it with its holds."""
    findings = []
    for target, aspect, backend_name, args in known_targets(client, keys):
        if only is not None and backend_name != only:
            continue
        holds = holds_of(client, keys, backend_name, target, aspect)
        backend = backends.get(backend_name)
        if backend is None:
            panel, note = None, f"backend {backend_name} is not configured"
        else:
            panel, note = panel_state(backend, aspect, args)
        findings.append(Finding(target, aspect, backend_name, args, holds, panel, note))
    return findings


def panel_state(backend: Backend, aspect: str, args: dict[str, Any]) -> tuple[bool | None, str]:
    """Whether ``aspect`` of the target in ``args`` is suspended on ``backend`` now (``None``:
    unknown), and a note saying why it is unknown."""
    def command(name: str) -> Command:
        return validate_command({"command": name, "backend": backend.name, "args": args, "producer": RECONCILE_PRODUCER})

    suspended, typed = check_of(backend, command(f"suspend_{aspect}"))
    active, _ = check_of(backend, command(f"unsuspend_{aspect}"))
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


def converging_command(finding: Finding, *, now: datetime | None = None) -> dict[str, Any] | None:
    """The command body that brings the panel to what the holds say (``None`` if nothing to do)."""
    if finding.state != "drift":
        return None
    stamp = int(time.time() * 1000)
    body: dict[str, Any] = {"backend": finding.backend, "args": finding.args, "producer": RECONCILE_PRODUCER}
    if finding.expected:
        reason, hold = min(finding.holds.items(), key=lambda item: str(item[1].get("issued_at")))
        issued = datetime.fromisoformat(str(hold["issued_at"])) + timedelta(milliseconds=1)
        body.update(command=f"suspend_{finding.aspect}", reason=reason)
    else:
        issued = now or datetime.now(UTC)
        body.update(command=f"unsuspend_{finding.aspect}", reason=RECONCILE_PRODUCER)
    body["id"] = f"reconcile-{body['command']}-{finding.backend}-{finding.target}-{stamp}"
    body["issued_at"] = issued.isoformat().replace("+00:00", "Z")
    return body


def apply(client: redis.Redis, commands_stream: str, findings: list[Finding]) -> list[dict[str, Any]]:
    """Add the converging commands of every drift to the commands stream; returns them."""
    bodies = [body for finding in findings if (body := converging_command(finding)) is not None]
    for body in bodies:
        client.xadd(commands_stream, {BODY_FIELD: orjson.dumps(body)})
    return bodies
