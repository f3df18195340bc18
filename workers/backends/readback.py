"""How a command's effect is read back from its panel: the read call of each command × scope, the
state it must show, and the parsers of the read answers.

Each backend module keeps a table ``READS: dict[command, dict[scope, Read | Unreadable]]`` beside
its ``CALLS``; a cell absent from ``READS`` is unreadable for the kind's ``NOT_READABLE`` reason.
A read returns a small flat state (``{"exists": True, "suspended_outgoing": True}``) built from the
panel's published field names; that state is what events publish in ``details.read``, so a reader
never puts anything in it that the change call was given as a secret (passwords are never read).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.commands import Command, CommandArgs, Scope
from workers.settings_models import BackendConfig

#: UAPI's mailbox list; ``get_restrictions=1`` adds the outgoing suspension and hold fields.
LIST_POPS = "Email::list_pops_with_disk"
LIST_FORWARDERS = "Email::list_forwarders"
SPF_READ = "EmailAuth::validate_current_spfs"
DKIM_READ = "EmailAuth::validate_current_dkims"
#: Why ``passwd`` is verified nowhere.
PASSWORD_UNREADABLE = "a password cannot be read back"


@dataclass(frozen=True)
class Read:
    """The read call that shows one command's effect, and the state it must show."""

    #: How it is reached: ``""`` (the kind's own API) or ``uapi_cpanel``.
    via: str
    #: The read function as the panel names it.
    function: str
    #: Typed command arguments and the backend's settings -> the fields the change must leave.
    want: Callable[[Any, BackendConfig], dict[str, Any]]

    def describe(self) -> str:
        return f"{self.via} `{self.function}`" if self.via else f"`{self.function}`"


@dataclass(frozen=True)
class Unreadable:
    """A cell whose effect the panel's published API cannot show, and why."""

    reason: str

    def describe(self) -> str:
        return f"not readable: {self.reason}"


Check = Read | Unreadable
ReadTable = Mapping[str, Mapping[Scope, Check]]


def check_for(table: ReadTable, command: Command, otherwise: str) -> tuple[Check, CommandArgs]:
    """How ``command``'s effect is read back (``otherwise``: why a cell absent from ``table`` cannot be)."""
    args = command.typed_args()
    return table.get(command.command, {}).get(args.scope()) or Unreadable(otherwise), args


def shows(state: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    """Whether the state read has every field the change must leave."""
    return all(state.get(name) == value for name, value in want.items())


def flag(value: Any) -> bool:
    """A panel's 0/1 (number, string or boolean) as a boolean."""
    return str(value).strip().lower() in ("1", "true", "yes")


def want(**fields: Any) -> Callable[[Any, BackendConfig], dict[str, Any]]:
    """A ``want`` that does not depend on the arguments."""
    return lambda args, config: dict(fields)


def mailbox_state(data: Any, address: str) -> dict[str, Any]:
    """One mailbox in a ``list_pops_with_disk`` answer (``get_restrictions=1``): whether it exists
    and its suspension and hold flags."""
    address = address.lower()
    for item in data if isinstance(data, list) else []:
        if isinstance(item, dict) and str(item.get("email") or item.get("login") or "").lower() == address:
            return {"exists": True, **{name: flag(item.get(name)) for name in (
                "suspended_outgoing", "hold_outgoing", "suspended_incoming", "suspended_login") if name in item}}
    return {"exists": False}


def forwarder_state(data: Any, source: str, destination: str) -> dict[str, Any]:
    """Whether a ``list_forwarders`` answer (``dest`` = the address forwarded, ``forward`` = where
    to) forwards ``source`` to ``destination``."""
    pairs = {(str(i.get("dest", "")).lower(), str(i.get("forward", "")).lower())
             for i in (data if isinstance(data, list) else []) if isinstance(i, dict)}
    return {"forwarder": (source.lower(), destination.lower()) in pairs}


def current_spf(data: Any) -> str | None:
    """The current SPF record in a ``validate_current_spfs`` answer's ``data`` (``None``: none).

    The stored spec does not show that shape, so this reads a ``current`` that is the record or
    holds it as ``value``/``record``, in the first item of a list or in an object."""
    item = data[0] if isinstance(data, list) and data else data
    current = item.get("current") if isinstance(item, dict) else None
    if isinstance(current, dict):
        current = current.get("value") or current.get("record")
    return current if isinstance(current, str) and current.startswith("v=spf1") else None


def domain_state(function: str, data: Any) -> dict[str, Any]:
    """A domain's SPF record (``validate_current_spfs``) or DKIM state (``validate_current_dkims``)."""
    if function == SPF_READ:
        record = current_spf(data)
        return {"spf": record is not None, "record": record}
    return dkim_state(data)


def dkim_state(data: Any) -> dict[str, Any]:
    """Whether a ``validate_current_dkims`` answer shows a DKIM record on the domain (a ``current``
    record; ``state`` ``MISSING`` or no ``current`` = none)."""
    item = data[0] if isinstance(data, list) and data else data
    if not isinstance(item, dict):
        return {"dkim": False}
    return {"dkim": bool(item.get("current")) and str(item.get("state", "")).upper() != "MISSING"}
