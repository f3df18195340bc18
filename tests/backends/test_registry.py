"""The registry of panel kinds (workers/backends/registry.py)."""

from __future__ import annotations

from typing import get_args

from workers.backends.registry import KINDS, PANELS, tables
from workers.settings import BackendKind


def test_every_kind_the_config_may_name_has_a_backend_and_a_call_table_and_no_other() -> None:
    # Given the kinds a backends file may name, and the registered backend classes
    named = set(get_args(BackendKind))
    # Then each has exactly one backend class, which the registry and the call tables derive from
    assert sorted(panel.kind for panel in PANELS) == sorted(named)
    assert set(KINDS) == named and set(tables()) == named
