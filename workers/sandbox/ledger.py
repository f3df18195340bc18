"""The ledger of state changes a sandbox applied: the ground truth tests compare against."""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Change:
    """One state change: ``target``'s ``field`` went from ``old`` to ``new``."""

    panel: str
    target: str
    field: str
    old: Any
    new: Any
    function: str
    at: float = dataclasses.field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Ledger:
    """Thread-safe, append-only list of changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changes: list[Change] = []

    def record(self, change: Change) -> None:
        with self._lock:
            self._changes.append(change)

    def changes(self) -> list[Change]:
        with self._lock:
            return list(self._changes)

    def clear(self) -> None:
        with self._lock:
            self._changes.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._changes)
