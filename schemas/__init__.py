"""Pydantic models of the mailops wire contract: commands in, events out.

Non-Python producers use the generated JSON Schema files in ``schemas/jsonschema/``.
"""

from __future__ import annotations

from schemas.commands import COMMANDS, Command, CommandSpec, parse_command
from schemas.events import TERMINAL_STATUSES, ErrorInfo, Event, EventStatus

__all__ = [
    "COMMANDS",
    "TERMINAL_STATUSES",
    "Command",
    "CommandSpec",
    "ErrorInfo",
    "Event",
    "EventStatus",
    "parse_command",
]
