"""The command vocabulary as each backend kind runs it (the README table is rendered from it by
:func:`workers.backends.registry.render_table`).

Each backend module keeps one table ``CALLS: dict[command, dict[scope, Call]]``: for a command and
the kind of target it names (a whole account, one mailbox, a mail domain), the panel function it
calls and how the arguments become that function's parameters. A missing command or scope is
*unsupported* on that kind: the command fails with kind ``unsupported`` before any panel call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.commands import Command, CommandArgs, Scope
from workers.errors import UnsupportedCommand


@dataclass(frozen=True)
class Call:
    """One panel function a command maps to on one backend kind."""

    #: How the function is reached: ``""`` (the kind's own API), ``uapi_cpanel`` or ``API 2``.
    via: str
    #: The function as the panel names it (``suspend_outgoing_email``, ``Email::add_pop``, ``addmail``).
    function: str
    #: Typed command arguments -> the function's form parameters.
    params: Callable[[Any], dict[str, str]]
    #: What a reader needs besides the name (``HASSPF=1``).
    note: str = ""

    def describe(self) -> str:
        text = f"{self.via} `{self.function}`" if self.via else f"`{self.function}`"
        return f"{text} `{self.note}`" if self.note else text


#: command -> target scope -> call.
CallTable = Mapping[str, Mapping[Scope, Call]]


def resolve_call(table: CallTable, command: Command, kind: str) -> tuple[Call, CommandArgs]:
    """The call ``command`` maps to on a backend of ``kind``, with its typed arguments; raises
    :class:`~workers.errors.UnsupportedCommand` (before any panel call) when there is none."""
    args = command.typed_args()
    scope = args.scope()
    call = table.get(command.command, {}).get(scope)
    if call is None:
        raise UnsupportedCommand(f"{command.command} on a {scope} target is not supported by backend kind {kind}")
    return call, args


def cell(table: CallTable, command: str) -> str:
    calls = table.get(command)
    if not calls:
        return "—"
    if len(calls) == 1:
        return next(iter(calls.values())).describe()
    return "; ".join(f"{scope}: {call.describe()}" for scope, call in calls.items())
