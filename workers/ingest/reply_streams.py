"""The one ``reply_to`` rule, for every commands-stream entry, valid or rejected.

A ``reply_to`` is a stream mailops copies a command's events to, so it must be a name no part of
mailops owns:

* ``pattern``: a stream name (``StreamName`` in ``schemas/fields.py``);
* ``reserved``: not under the key prefix, and neither the commands nor the events stream;
* ``not_a_stream``: not an existing key of another type (a producer's hash, list...).

A valid command that breaks it is ``rejected`` with field ``reply_to`` and the rule; a rejected
entry that breaks it gets its answer on the events stream only. Either way nothing is written to
that key. The key types are read once per batch (one round trip), not once per entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import redis

from workers.errors import CommandRejected
from workers.settings import Settings
from workers.store.wire import as_text

#: The ``StreamName`` pattern (``schemas/fields.py``), for values read from entries that failed to parse.
_STREAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}")


class ReplyStreams:
    """Checks ``reply_to`` names against the rule above, with the key types of one batch."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.prefix = f"{settings.key_prefix}:"
        self.reserved = {settings.commands_stream, settings.events_stream}
        self._types: dict[str, str] = {}

    def prefetch(self, names: Iterable[Any]) -> None:
        """Read the type of every plausible name of a batch, in one round trip."""
        wanted = sorted({n for n in names if isinstance(n, str) and self._shape_problem(n) is None})
        if not wanted:
            self._types = {}
            return
        pipe = self.client.pipeline(transaction=False)
        for name in wanted:
            pipe.type(name)
        self._types = {name: as_text(kind) for name, kind in zip(wanted, pipe.execute(), strict=True)}

    def check(self, name: str | None) -> None:
        """Raise :class:`CommandRejected` (field ``reply_to``) unless ``name`` is absent or usable."""
        if name is None:
            return
        problem = self._shape_problem(name)
        if problem is None:
            kind = self._types.get(name)
            if kind is None:
                kind = as_text(self.client.type(name))
            if kind not in ("none", "stream"):
                problem = ("not_a_stream", f"{name!r} is an existing {kind} key, not a stream")
        if problem is not None:
            raise CommandRejected("reply_to", *problem)

    def usable(self, name: Any) -> str | None:
        """``name`` if a rejected entry's answer may be copied there, else ``None``."""
        if not isinstance(name, str):
            return None
        try:
            self.check(name)
        except CommandRejected:
            return None
        return name

    def _shape_problem(self, name: str) -> tuple[str, str] | None:
        if not _STREAM_NAME.fullmatch(name):
            return ("pattern", "reply_to must be a stream name: letters, digits and ._:/- (at most 200)")
        if name.startswith(self.prefix) or name in self.reserved:
            return ("reserved", f"{name!r} is reserved for mailops's own keys")
        return None
