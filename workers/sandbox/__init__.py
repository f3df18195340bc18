"""Stateful panel simulators on loopback, for mailops's own tests and for producers' integration tests.

Each sandbox answers with the real envelopes and error texts of its panel, checks credentials,
can inject faults, and keeps a ledger of every state change it applied.
"""

from __future__ import annotations

from workers.sandbox.ledger import Change, Ledger
from workers.sandbox.server import Faults, SandboxServer
from workers.sandbox.state import Account, PanelState

__all__ = ["Account", "Change", "Faults", "Ledger", "PanelState", "SandboxServer"]
