"""The Lua scripts in ``workers/scripts/``, loaded by name."""

from __future__ import annotations

from importlib import resources


def lua_script(name: str) -> str:
    """The source of ``workers/scripts/<name>.lua``."""
    return resources.files("workers").joinpath("scripts", f"{name}.lua").read_text(encoding="utf-8")
