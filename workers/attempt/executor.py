"""The executor: finds a command's backend and runs the command there, in its target's turn and
under the backend's limits. An attempt is three Redis round trips around the panel calls:

1. begin (sent by :class:`~workers.queue.middleware.lifecycle.Lifecycle`): the attempt count
   (``store/scripts/begin.lua``), the target+aspect turn (:mod:`workers.attempt.ordering`) and a
   backend slot (:mod:`workers.attempt.limits`), asked for by :meth:`Executor.start_calls`;
2. the panel: the change, then its read-back (:mod:`workers.attempt.verification`), in the slot;
   the slot's give-back is written as soon as the panel answered, its reply read with step 3;
3. end (Lifecycle again): the turn's commit with the hold plan (:mod:`workers.attempt.holds`) and
   the terminal event, or the retry the command's spec allows (``CommandSpec.retry``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.commands import Command
from workers.attempt.limits import BackendLimits, SlotRequest
from workers.attempt.ordering import Pending, Settlement, TargetGuard, Turn, TurnRequest
from workers.attempt.verification import Verifier
from workers.backends.base import Backend, PanelResult
from workers.errors import Repeat, TargetBusy, UnknownBackend, UnsupportedCommand
from workers.scrubbing import opened, scrub_exception, scrub_text, scrub_value
from workers.store.lua import ScriptCall, run_together
from workers.store.wire import Ahead


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
    def slot_claimed(self) -> bool:
        """The slot was granted, or the ask put its lease in line for one (a give-back may grant
        it at any moment): either way it is given back if the attempt does not use it."""
        return self.slot is not None and self.slot_reply is not None and BackendLimits.claimed(self.slot_reply)


class HeldSlot:
    """A backend slot held for one turn: the panel call made in it, and how it is given back.

    An answered call gives the slot back the moment the answer arrives, sent ahead of the
    turn's commit and terminal event (:meth:`BackendLimits.give_back_ahead`), so the next
    waiter's call starts while this command is still being recorded; a turn that made no call
    gives it back with its commit (:meth:`settlement`); a failed call gives it back at once
    with what the failure tells the breaker (:meth:`BackendLimits.call_holding`).
    """

    def __init__(self, limits: BackendLimits, backend: str, lease: str) -> None:
        self.limits = limits
        self.backend = backend
        self.lease = lease
        self.answered = False
        self.ahead: Ahead | None = None

    def call(self, fn: Callable[[], PanelResult]) -> PanelResult:
        result = self.limits.call_holding(self.backend, self.lease, fn)
        self.answered = True
        self.ahead = self.limits.give_back_ahead(self.backend, self.lease)
        return result

    def settlement(self) -> Settlement:
        def calls(called: bool) -> Sequence[ScriptCall]:
            return [] if self.answered else [self.limits.give_back_call(self.backend, self.lease, "other")]

        def replies(values: list[Any]) -> None:
            if self.answered:
                self.limits.settle_ahead(self.backend, self.lease, self.ahead)
            else:
                self.limits.settled(self.backend, values[0])

        return Settlement(calls, replies)


class Executor:
    """Runs commands against the configured backends.

    Every panel call holds a fleet-wide lease on its backend and feeds the backend's circuit
    breaker (``limits``, see :mod:`workers.attempt.limits`), and holds its target+aspect turn: stale
    commands end ``superseded`` and suspensions follow the holds (``ordering``, see
    :mod:`workers.attempt.ordering`).
    """

    def __init__(self, backends: Mapping[str, Backend], *, limits: BackendLimits, ordering: TargetGuard,
                 opener: Callable[[Command], Command] | None = None) -> None:
        self.backends = dict(backends)
        #: Opens sealed secrets into an in-memory copy of the command, handed only to the
        #: backend (:meth:`workers.ingest.sealing.Sealer.open_command`).
        self.opener = opener
        self.limits = limits
        self.ordering = ordering
        #: Reads each change back in the same slot (:mod:`workers.attempt.verification`).
        self.verifier = Verifier()

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
        if start.slot is not None and start.slot_claimed:
            calls.append(self.limits.give_back_call(start.slot.backend, start.slot.lease, "other"))
        if calls:
            run_together(self.ordering.client, calls)

    def run_pending(self, command: Command, *, entry: str | None = None, start: Start | None = None,
                    attempt: int = 1, after_loss: bool = False) -> tuple[PanelResult, Pending | None]:
        """Run ``command`` on its backend and return its result, and the commit of its turn still
        to be sent (Lifecycle sends it with the terminal event, see :class:`~workers.attempt.ordering.Pending`;
        none for a :class:`~workers.errors.Repeat`, which took no turn and makes no call).

        ``entry`` is its admission entry (the ordering tie-breaker), and ``start`` holds the
        replies to :meth:`start_calls` if they were already sent. A call that is not idempotent reads
        the panel first (see :mod:`workers.attempt.verification`) on a retry (``attempt`` > 1) and
        ``after_loss``: an earlier attempt died with its worker without being counted (begin.lua),
        so it may have reached the panel although the attempt number did not move."""
        backend = self.backend_for(command)
        if not backend.supports(command.command):
            raise UnsupportedCommand(f"{command.command} is not supported by backend kind {backend.kind}")
        if start is None or not start.sent:
            start = self.start_calls(command, entry)
            start.received(run_together(self.ordering.client, start.calls))
        try:
            turn = self._turn(start, entry)
        except Repeat as repeat:
            return PanelResult(already=True, message=str(repeat),
                               details={"repeat_of": repeat.original, "panel_called": False}), None
        lease = self._slot(start, turn)
        if lease is None:
            # _slot gives no lease only to a turn that makes no call.
            pending = self.ordering.complete_later(turn, _no_slot)
        else:
            slot = HeldSlot(self.limits, backend.name, lease)
            pending = self.ordering.complete_later(
                turn, lambda c: slot.call(lambda: self._verified(backend, c, retry=attempt > 1 or after_loss)),
                settle=slot.settlement())
        return pending.expected, pending

    def _turn(self, start: Start, entry: str | None) -> Turn:
        """The granted turn, or the reason there is none (the slot, if claimed, is given back)."""
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
            if start.slot is not None and start.slot_claimed:
                self.limits.give_back(start.slot.backend, start.slot.lease, "other")
            raise

    def _slot(self, start: Start, turn: Turn) -> str | None:
        """The backend lease for the call: the one granted with the turn, or waited for now. A
        command that will not call the panel keeps a granted (or waiting) lease only to give it back."""
        assert start.slot is not None
        if not self.ordering.needs_call(turn):
            return start.slot.lease if start.slot_claimed else None
        try:
            return self.limits.take(start.slot, first=start.slot_reply)
        except BaseException:
            self.ordering.release(turn)
            raise

    def _verified(self, backend: Backend, command: Command, *, retry: bool) -> PanelResult:
        """The change call and its read-back, all in the held slot. The reads take the sealed
        command: they need no secret, so none can reach ``details.read``."""
        if retry:
            found = self.verifier.before_resend(backend, command)
            if found is not None:
                return found
        return self.verifier.after_change(backend, command, self._execute(backend, command))

    def _execute(self, backend: Backend, command: Command) -> PanelResult:
        if self.opener is None:
            return backend.execute(command)
        # Secrets are opened here, in memory, for this call only; its errors are scrubbed of them.
        plain = self.opener(command)
        secrets = [v for k, v in plain.args.items() if isinstance(v, str) and v != command.args.get(k)]
        try:
            with opened(secrets):
                result = backend.execute(plain)
        except Exception as exc:
            scrub_exception(exc, secrets)
            raise
        # Success or failure, nothing of the answer is kept with a secret opened for the call in
        # it (a panel may echo its request): the answer's data is dropped, the rest scrubbed.
        return PanelResult(already=result.already, message=scrub_text(result.message, secrets),
                           details=scrub_value(result.details, secrets), verified=result.verified)

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()


def _no_slot(command: Command) -> PanelResult:
    raise AssertionError(f"{command.id}: a panel call without a backend slot")
