"""The registry of panel kinds (workers/backends/registry.py): the one list of kinds."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.backends.registry import KINDS, PANELS, tables
from workers.errors import ConfigError
from workers.settings import Settings

pytestmark = pytest.mark.unit


def _settings_naming(tmp_path: Path, kind: str) -> Settings:
    path = tmp_path / "mailops.toml"
    path.write_text(f'[backends.panel1]\nkind = "{kind}"\nurl = "https://panel1.example.net"\nusername = "shop"\n'
                    'token_env = "TOKEN"\n')
    return Settings.from_env({"MAILOPS_CONFIG": str(path), "TOKEN": "t0ken"})


def test_a_backends_file_may_name_every_registered_panel_kind_and_no_other(tmp_path: Path) -> None:
    # Given the registered backend classes, the one list of kinds
    kinds = [panel.kind for panel in PANELS]
    # Then the registry and the call tables derive from them
    assert set(KINDS) == set(kinds) and set(tables()) == set(kinds) and len(set(kinds)) == len(kinds)
    # And a backends file may name each of them
    for kind in kinds:
        assert _settings_naming(tmp_path, kind).backends["panel1"].kind == kind
    # And a kind no class registers is refused before start, the key named, the known kinds listed
    with pytest.raises(ConfigError, match=r"table \[backends.panel1\], key 'kind': unknown panel kind 'plesk'; "
                                          rf"known: {', '.join(sorted(kinds))}"):
        _settings_naming(tmp_path, "plesk")
