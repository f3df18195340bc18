"""What a sandbox panel knows: accounts and their mail settings.

Every mutation goes through :meth:`PanelState.set`, which records a ledger entry only when the
value actually changes, so "applied exactly once" is checkable from the ledger alone.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from workers.sandbox.ledger import Change, Ledger


@dataclass
class Account:
    """One cPanel account (or BrainyCP host user)."""

    user: str
    domain: str
    #: Account-level outgoing mail: ``active``, ``suspended`` or ``hold``.
    outgoing: str = "active"
    settings: dict[str, Any] = field(default_factory=dict)


class PanelState:
    """Accounts of one sandbox panel, guarded by one lock."""

    def __init__(self, panel: str, ledger: Ledger | None = None) -> None:
        self.panel = panel
        self.ledger = ledger or Ledger()
        self.lock = threading.RLock()
        self.accounts: dict[str, Account] = {}

    def add_account(self, user: str, domain: str | None = None) -> Account:
        with self.lock:
            account = Account(user=user, domain=domain or f"{user}.example")
            self.accounts[user] = account
            return account

    def set(self, obj: Any, attr: str, value: Any, *, target: str, function: str) -> bool:
        """Set ``obj.attr`` (or ``obj[attr]`` for dicts); record and return True if it changed."""
        with self.lock:
            old = obj.get(attr) if isinstance(obj, dict) else getattr(obj, attr)
            if old == value:
                return False
            if isinstance(obj, dict):
                obj[attr] = value
            else:
                setattr(obj, attr, value)
            self.ledger.record(Change(self.panel, target, attr, old, value, function))
            return True
