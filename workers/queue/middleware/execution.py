"""The command a worker thread is running (:class:`Execution`), kept per thread by the Lifecycle
middleware and read by the actor, the other middleware and Sentry's context."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from schemas.commands import Command
from workers.attempt.executor import Start
from workers.attempt.ordering import Pending
from workers.backends.base import PanelResult
from workers.errors import MailopsError


@dataclass
class Execution:
    """The command a worker thread is running, and which attempt this is."""

    command: Command
    attempt: int
    started: float
    #: Epoch milliseconds the attempt started (for the attempt history).
    started_ms: int = 0
    #: What the panel call returned, set by the actor.
    result: PanelResult | None = None
    #: The expected (mailops) error the panel call raised, set by the actor.
    error: MailopsError | None = None
    #: The commands-stream entry that admitted the command.
    entry: str | None = None
    #: The turn and backend slot asked for with the attempt count, and the replies.
    start: Start | None = None
    #: The turn's commit, sent with the terminal event (set by the actor with :attr:`result`).
    pending: Pending | None = None
    #: Run with no other command in this process (earlier attempts died in shared processes).
    alone: bool = False
    #: An earlier attempt died with its worker: read before re-sending a non-idempotent call.
    after_loss: bool = False


#: Per worker thread: ``execution`` (the running command) and ``outcome`` (the last one's end).
thread_state = threading.local()


def last_outcome() -> tuple[str, Command] | None:
    """The status Lifecycle gave the message this thread just processed, and its command (for
    middleware placed before Lifecycle, whose after-hooks run after Lifecycle's)."""
    outcome: tuple[str, Command] | None = getattr(thread_state, "outcome", None)
    return outcome


def current_execution() -> Execution:
    """The command the calling worker thread is running (set by :class:`Lifecycle`)."""
    execution: Execution | None = getattr(thread_state, "execution", None)
    if execution is None:
        raise RuntimeError("no command is being executed on this thread")
    return execution
