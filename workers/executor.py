"""The executor: finds a command's backend and runs the command there, in its target's turn and
under the backend's limits.

The Redis steps around a panel call travel together: the target+aspect turn and the backend slot
are asked for in the same round trip as the attempt count (:meth:`Executor.start_calls`, sent by
:class:`~workers.middleware.lifecycle.Lifecycle`), and the slot is given back in the round trip
that commits the turn and publishes the terminal event (:meth:`Executor.run_pending`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.commands import Command
from workers.backends.base import Backend, PanelResult
from workers.errors import TargetBusy, UnknownBackend, UnsupportedCommand
from workers.limits import BackendLimits, SlotRequest
from workers.lua import ScriptCall, run_together
from workers.ordering import Pending, Settlement, TargetGuard, Turn, TurnRequest
from workers.scrubbing import opened, scrub_exception


@dataclass
class Start:
    """The turn and slot asked for before an attempt runs, and, once sent, their replies."""

    turn: TurnRequest | None = None
    slot: SlotRequest | None = None
    turn_reply: Any = None
    slot_reply: Any = None
    sent: bool = False

    @property
    def calls(self) -> list[ScriptCall]:
        return [r.call for r in (self.turn, self.slot) if r is not None]

    def received(self, replies: Sequence[Any]) -> None:
        """Take the replies to :attr:`calls`, in order."""
        rest = list(replies)
        if self.turn is not None:
            self.turn_reply = rest.pop(0)
        if self.slot is not None:
            self.slot_reply = rest.pop(0)
        self.sent = True

    @property
    def turn_granted(self) -> bool:
        return self.turn is not None and self.turn_reply is not None and TargetGuard.granted(self.turn_reply)

    @property
    def slot_granted(self) -> bool:
        return self.slot is not None and self.slot_reply is not None and BackendLimits.granted(self.slot_reply)


class Executor:
    """Runs commands against the configured backends.

    Every panel call holds a fleet-wide lease on its backend and feeds the backend's circuit
    breaker (``limits``, see :mod:`workers.limits`), and holds its target+aspect turn: stale
    commands end ``superseded`` and suspensions follow the holds (``ordering``, see
    :mod:`workers.ordering`).
    """

    def __init__(self, backends: Mapping[str, Backend], *, limits: BackendLimits, ordering: TargetGuard,
                 opener: Callable[[Command], Command] | None = None) -> None:
        self.backends = dict(backends)
        #: Opens sealed secrets into an in-memory copy of the command, handed only to the
        #: backend (:meth:`workers.sealing.Sealer.open_command`).
        self.opener = opener
        self.limits = limits
        self.ordering = ordering

    def backend_for(self, command: Command) -> Backend:
        if command.backend is None:
            raise UnknownBackend("the command names no backend and its target has no route")
        try:
            return self.backends[command.backend]
        except KeyError:
            raise UnknownBackend(f"no backend named {command.backend!r} is configured") from None

    def start_calls(self, command: Command, entry: str | None) -> Start:
        """The turn and slot ``command`` will need, to be sent with the attempt count (no call is
        asked for when the command cannot run: unknown backend or unsupported command)."""
        backend = self.backends.get(command.backend or "")
        if backend is None or not backend.supports(command.command):
            return Start()
        return Start(self.ordering.request(command, entry), self.limits.request(backend.name))

    def abandon(self, start: Start) -> None:
        """Give back what ``start`` was granted, for an attempt that will not run."""
        calls = []
        if start.turn is not None and start.turn_granted:
            calls.append(self.ordering.release_call(start.turn.token, start.turn.order_key))
        if start.slot is not None and start.slot_granted:
            calls.append(self.limits.give_back_call(start.slot.backend, start.slot.lease, "other"))
        if calls:
            run_together(self.ordering.client, calls)

    def run_pending(self, command: Command, *, entry: str | None = None,
                    start: Start | None = None) -> tuple[PanelResult, Pending]:
        """Run ``command`` on its backend and return its result, and the commit of its turn still
        to be sent (Lifecycle sends it with the terminal event, see :class:`~workers.ordering.Pending`).

        ``entry`` is its admission entry (the ordering tie-breaker), and ``start`` holds the
        replies to :meth:`start_calls` if they were already sent."""
        backend = self.backend_for(command)
        if not backend.supports(command.command):
            raise UnsupportedCommand(f"{command.command} is not supported by backend kind {backend.kind}")
        if start is None or not start.sent:
            start = self.start_calls(command, entry)
            start.received(run_together(self.ordering.client, start.calls))
        turn = self._turn(start, entry)
        lease = self._slot(start, turn)
        pending = self.ordering.complete_later(turn, lambda c: self._call(backend, c, lease),
                                               settle=self._settlement(backend, lease))
        return pending.expected, pending

    def _turn(self, start: Start, entry: str | None) -> Turn:
        """The granted turn, or the reason there is none (the slot, if granted, is given back)."""
        assert start.turn is not None
        try:
            try:
                return self.ordering.turn_from(start.turn, start.turn_reply)
            except TargetBusy:
                if not TargetGuard.held_by_own_command(start.turn, start.turn_reply):
                    raise
                # An earlier attempt of this command holds the lease: its worker died, or its
                # release never reached Redis (an outage). begin has just made this attempt the
                # current one, so take the lease over instead of waiting out its TTL.
                return self.ordering.take(start.turn.command, entry, takeover=True)
        except BaseException:
            if start.slot is not None and start.slot_granted:
                self.limits.give_back(start.slot.backend, start.slot.lease, "other")
            raise

    def _slot(self, start: Start, turn: Turn) -> str | None:
        """The backend lease for the call: the one granted with the turn, or waited for now. A
        command that will not call the panel keeps a granted lease only to give it back."""
        assert start.slot is not None
        if not self.ordering.needs_call(turn):
            return start.slot.lease if start.slot_granted else None
        try:
            return self.limits.take(start.slot, first=start.slot_reply)
        except BaseException:
            self.ordering.release(turn)
            raise

    def _settlement(self, backend: Backend, lease: str | None) -> Settlement | None:
        limits = self.limits
        if lease is None:
            return None

        def calls(called: bool) -> Sequence[ScriptCall]:
            return [limits.give_back_call(backend.name, lease, "answered" if called else "other")]

        def replies(values: list[Any]) -> None:
            limits.settled(backend.name, values[0])

        return Settlement(calls, replies)

    def _call(self, backend: Backend, command: Command, lease: str | None) -> PanelResult:
        # Only called when the command needs the panel, and then _slot has a lease for it.
        assert lease is not None
        return self.limits.call_holding(backend.name, lease, lambda: self._execute(backend, command))

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
