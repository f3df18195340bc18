"""Read-back: a change counts as done only when the panel shows it.

After a change call answers OK, the executor reads the state back with the cell's read call
(:mod:`workers.backends.readback`), in the same backend slot, so the read counts in the backend's
caps. cPanel queues some work behind its answer (queueprocd), so a read that does not show the
change yet is repeated, with growing pauses, until the backend's ``verify_grace_s`` runs out;
never is the change call made again for that. A state still not as asked raises
:class:`~workers.errors.NotApplied` (retried per policy, dead-lettered with what was read).

A retry of a call that is not idempotent on the panel (``addmail`` and ``addforward`` fail on
"already exists", ``passwd`` would change the password again) reads first: when the earlier
attempt's change is there (it timed out after the panel applied it), the command succeeds without
calling again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from schemas.commands import Command
from workers.backends.base import Backend, PanelResult
from workers.backends.readback import Check, Read, Unreadable, check_for, shows
from workers.errors import NotApplied, PanelError

#: First pause between reads in the grace window (then doubled each time).
FIRST_PAUSE_S = 0.05


def check_of(backend: Backend, command: Command) -> tuple[Check, Any]:
    """How ``command``'s effect on ``backend`` is read back, with its typed arguments."""
    return check_for(backend.reads, command, backend.not_readable)


@dataclass(frozen=True)
class Verifier:
    """Reads changes back; ``sleep``/``clock`` are injectable for tests of the grace window."""

    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    def before_resend(self, backend: Backend, command: Command) -> PanelResult | None:
        """On a retry of a command that is not idempotent (``CommandSpec.reads_before_resend``: the
        call, made again after it was applied, fails or changes something again), the result when the panel already
        shows its change (no call needed); ``None``: call the panel."""
        if not command.spec.reads_before_resend or not backend.config.verify:
            return None
        check, args = check_of(backend, command)
        if isinstance(check, Unreadable):
            return None  # passwd: cannot be read; setting the same password again is harmless
        try:
            state = backend.read(check, args)
        except PanelError:
            return None  # the read failed: decide as without it (call again)
        if not shows(state, check.want(args, backend.config)):
            return None
        return PanelResult(already=True, message=f"already so: {check.function} shows it (read before calling again)",
                           details={"read": _published(check, state, 1), "read_before_resend": True}, verified=True)

    def after_change(self, backend: Backend, command: Command, result: PanelResult) -> PanelResult:
        """``result`` once the panel shows the change (``verified``), or marked unverified with
        the reason; raises :class:`NotApplied` when it still does not after the grace window."""
        if not backend.config.verify:
            return _unverified(result, "read-back is off for this backend")
        check, args = check_of(backend, command)
        if isinstance(check, Unreadable):
            return _unverified(result, check.reason)
        wanted = check.want(args, backend.config)
        deadline = self.clock() + backend.config.verify_grace_s
        pause, reads = FIRST_PAUSE_S, 0
        while True:
            try:
                state = backend.read(check, args)
            except PanelError as exc:
                return _unverified(result, f"the read-back failed ({exc.kind}): {exc}")
            reads += 1
            if shows(state, wanted):
                return replace(result, verified=True, details={**result.details, "read": _published(check, state, reads)})
            left = deadline - self.clock()
            if left <= 0:
                raise NotApplied(
                    f"{backend.name}: the panel answered OK, but {check.function} still shows "
                    f"{ {k: state.get(k) for k in wanted} } instead of {wanted} after {reads} read(s)",
                    read=_published(check, state, reads))
            self.sleep(min(pause, left))
            pause *= 2


def _published(check: Read, state: dict[str, Any], reads: int) -> dict[str, Any]:
    """``details.read``: the read call, the state it showed and how many reads it took."""
    return {"call": check.function, "state": state, "reads": reads}


def _unverified(result: PanelResult, reason: str) -> PanelResult:
    return replace(result, verified=False, details={**result.details, "not_verified": reason})
