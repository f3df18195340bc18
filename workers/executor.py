"""The executor: finds a command's backend and runs the command there."""

from __future__ import annotations

from collections.abc import Mapping

from schemas.commands import Command
from workers.backends.base import Backend, PanelResult
from workers.errors import UnknownBackend, UnsupportedCommand


class Executor:
    """Runs commands against the configured backends."""

    def __init__(self, backends: Mapping[str, Backend]) -> None:
        self.backends = dict(backends)

    def backend_for(self, command: Command) -> Backend:
        if command.backend is None:
            raise UnknownBackend("the command names no backend and its target has no route")
        try:
            return self.backends[command.backend]
        except KeyError:
            raise UnknownBackend(f"no backend named {command.backend!r} is configured") from None

    def run(self, command: Command) -> PanelResult:
        backend = self.backend_for(command)
        if not backend.supports(command.command):
            raise UnsupportedCommand(f"{command.command} is not supported by backend kind {backend.kind}")
        return backend.execute(command)

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
