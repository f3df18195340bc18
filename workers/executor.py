"""The executor: finds a command's backend and runs the command there, under the backend's limits."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from schemas.commands import Command
from workers.backends.base import Backend, PanelResult
from workers.errors import UnknownBackend, UnsupportedCommand
from workers.limits import BackendLimits
from workers.ordering import TargetGuard
from workers.scrubbing import opened, scrub_exception


class Executor:
    """Runs commands against the configured backends.

    With ``limits``, every panel call holds a fleet-wide lease on its backend and feeds the
    backend's circuit breaker (see :mod:`workers.limits`).
    """

    def __init__(self, backends: Mapping[str, Backend], *, limits: BackendLimits | None = None,
                 ordering: TargetGuard | None = None, opener: Callable[[Command], Command] | None = None) -> None:
        self.backends = dict(backends)
        #: Opens sealed secrets into an in-memory copy of the command, handed only to the
        #: backend (:meth:`workers.sealing.Sealer.open_command`).
        self.opener = opener
        self.limits = limits
        #: With ``ordering``, each call holds its target+aspect turn: stale commands end
        #: ``superseded`` and suspensions follow the holds (see :mod:`workers.ordering`).
        self.ordering = ordering

    def backend_for(self, command: Command) -> Backend:
        if command.backend is None:
            raise UnknownBackend("the command names no backend and its target has no route")
        try:
            return self.backends[command.backend]
        except KeyError:
            raise UnknownBackend(f"no backend named {command.backend!r} is configured") from None

    def run(self, command: Command, *, entry: str | None = None, recovered: bool = False) -> PanelResult:
        """Run ``command`` on its backend; ``entry`` is its admission entry (the ordering tie-breaker)
        and ``recovered`` says its previous attempt's worker died (its target lease may be taken over)."""
        backend = self.backend_for(command)
        if not backend.supports(command.command):
            raise UnsupportedCommand(f"{command.command} is not supported by backend kind {backend.kind}")
        if self.ordering is None:
            return self._call(backend, command)
        return self.ordering.run(command, lambda c: self._call(backend, c), entry=entry, takeover=recovered)

    def _call(self, backend: Backend, command: Command) -> PanelResult:
        if self.limits is None:
            return self._execute(backend, command)
        return self.limits.call(backend.name, lambda: self._execute(backend, command))

    def _execute(self, backend: Backend, command: Command) -> PanelResult:
        if self.opener is None:
            return backend.execute(command)
        # Secrets are opened here, in memory, for this call only; its errors are scrubbed of them.
        plain = self.opener(command)
        secrets = [v for k, v in plain.args.items() if isinstance(v, str) and v != command.args.get(k)]
        try:
            with opened(secrets):
                return backend.execute(plain)
        except Exception as exc:
            scrub_exception(exc, secrets)
            raise

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
