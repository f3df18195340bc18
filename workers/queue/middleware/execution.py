"""The command a worker thread is running (:class:`Execution`), kept per thread by the Lifecycle
middleware and read by the actor and the log formatter; what Lifecycle tells its observers
(:class:`AttemptObserver`: metrics, Sentry) as an attempt starts and ends."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol

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


#: Per worker thread: ``execution`` (the running command).
thread_state = threading.local()


class AttemptObserver(Protocol):
    """Told by :class:`~workers.queue.middleware.lifecycle.Lifecycle` what each attempt does, on the
    worker thread running it: no middleware reads another's state, and their order is free."""

    def attempt_started(self, execution: Execution) -> None:
        """The attempt was counted and is about to call the panel."""

    def attempt_ended(self, status: str, command: Command, execution: Execution | None) -> None:
        """Lifecycle decided the status the attempt leaves the command in (``execution`` is ``None``
        when it ended before it started: attempts exhausted, or a failure inside the lifecycle)."""


def current_execution() -> Execution:
    """The command the calling worker thread is running (set by :class:`Lifecycle`)."""
    execution: Execution | None = getattr(thread_state, "execution", None)
    if execution is None:
        raise RuntimeError("no command is being executed on this thread")
    return execution
