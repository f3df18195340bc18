"""Dramatiq middleware: the cross-cutting work every command gets (lifecycle, liveness)."""

from __future__ import annotations

from workers.queue.middleware.execution import current_execution
from workers.queue.middleware.lifecycle import Lifecycle
from workers.queue.middleware.liveness import Liveness

__all__ = ["Lifecycle", "Liveness", "current_execution"]
