"""Panel backends: one module per panel kind behind the :class:`~workers.backends.base.Backend` Protocol."""

from __future__ import annotations

from workers.backends.base import Backend, PanelResult
from workers.backends.registry import build_backend, build_backends

__all__ = ["Backend", "PanelResult", "build_backend", "build_backends"]
