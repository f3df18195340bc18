"""How the CLI shows an event to a person (``mailops events tail``, ``mailops demo``)."""

from __future__ import annotations

from rich.markup import escape

from schemas.events import Event

#: Rich style of each event status.
STYLE = {"succeeded": "green", "failed": "red", "rejected": "red", "dead_lettered": "red", "conflict": "red",
         "superseded": "cyan", "duplicate": "cyan", "in_flight": "cyan", "accepted": "dim", "retrying": "yellow",
         "waiting": "yellow"}


def what(event: Event) -> str:
    """``command on backend``."""
    return f"{event.command or '?'} on {event.backend or '?'}"


def outcome_suffix(event: Event) -> str:
    """The error (kind, field and rule, message) or "(already so)", as escaped Rich markup."""
    if event.error is not None:
        where = f" [{event.error.field}: {event.error.rule}]" if event.error.field else ""
        return escape(f" — {event.error.kind}{where}: {event.error.message}")
    return " (already so)" if event.already else ""
