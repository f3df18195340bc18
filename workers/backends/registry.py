"""Every panel kind: its backend class (which names its kind and call table), construction of the
configured backends, and the command × backend table rendered from the call tables."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from schemas.commands import COMMANDS
from workers.backends.base import Backend
from workers.backends.brainycp import BrainycpBackend
from workers.backends.cpanel import CpanelBackend
from workers.backends.readback import ReadTable, Unreadable
from workers.backends.vocabulary import CallTable, cell
from workers.backends.whm import WhmBackend
from workers.errors import ConfigError
from workers.settings_models import BackendConfig

#: Every panel kind's backend class, in the README table's order: the one list of kinds. The
#: backends file may name these (:mod:`workers.settings`), and :data:`KINDS`, :func:`tables` and
#: the README table derive from it.
PANELS: tuple[type[WhmBackend] | type[CpanelBackend] | type[BrainycpBackend], ...] = (
    WhmBackend, CpanelBackend, BrainycpBackend)
#: Registered panel kinds; an unknown kind in the config is refused at start-up.
KINDS: dict[str, Callable[[BackendConfig], Backend]] = {panel.kind: panel for panel in PANELS}


def build_backend(config: BackendConfig) -> Backend:
    try:
        factory = KINDS[config.kind]
    except KeyError:
        raise ConfigError(f"backend {config.name!r}: unknown kind {config.kind!r}; known: {sorted(KINDS)}") from None
    return factory(config)


def build_backends(configs: Mapping[str, BackendConfig]) -> dict[str, Backend]:
    return {name: build_backend(cfg) for name, cfg in configs.items()}


def tables() -> dict[str, CallTable]:
    """Backend kind -> its call table."""
    return {panel.kind: panel.calls for panel in PANELS}


def read_tables() -> dict[str, ReadTable]:
    """Backend kind -> how each cell's effect is read back (:mod:`workers.backends.readback`)."""
    return {panel.kind: panel.reads for panel in PANELS}


def verified_by(command: str) -> str:
    """How ``command``'s effect is read back on each kind that runs it (the table's last column)."""
    found = []
    for panel in PANELS:
        scopes = panel.calls.get(command) or {}
        checks = [(scope, (panel.reads.get(command) or {}).get(scope) or Unreadable(panel.not_readable))
                  for scope in scopes]
        if not checks:
            continue
        texts = {check.describe() for _scope, check in checks}
        text = texts.pop() if len(texts) == 1 else "; ".join(f"{scope}: {check.describe()}" for scope, check in checks)
        found.append(f"`{panel.kind}`: {text}")
    return " · ".join(found)


def render_table() -> str:
    """The Markdown table of every command × backend kind (the README section "Commands × backends"),
    with how each cell's effect is read back."""
    kinds = tables()
    lines = [
        "| command | " + " | ".join(f"`{kind}`" for kind in kinds) + " | verified by |",
        "|---|" + "---|" * (len(kinds) + 1),
    ]
    for name in COMMANDS:
        lines.append(f"| `{name}` | " + " | ".join(cell(table, name) for table in kinds.values())
                     + f" | {verified_by(name)} |")
    return "\n".join(lines) + "\n"
