"""Backend kind name -> class, and construction of the configured backends."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from workers.backends.base import Backend
from workers.backends.brainycp import BrainycpBackend
from workers.backends.cpanel import CpanelBackend
from workers.backends.whm import WhmBackend
from workers.errors import ConfigError
from workers.settings import BackendConfig

#: Registered panel kinds; an unknown kind in the config is refused at start-up.
KINDS: dict[str, Callable[[BackendConfig], Backend]] = {
    "whm": WhmBackend,
    "cpanel": CpanelBackend,
    "brainycp": BrainycpBackend,
}


def build_backend(config: BackendConfig) -> Backend:
    try:
        factory = KINDS[config.kind]
    except KeyError:
        raise ConfigError(f"backend {config.name!r}: unknown kind {config.kind!r}; known: {sorted(KINDS)}") from None
    return factory(config)


def build_backends(configs: Mapping[str, BackendConfig]) -> dict[str, Backend]:
    return {name: build_backend(cfg) for name, cfg in configs.items()}
