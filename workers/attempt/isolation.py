"""Running one command alone in its worker process, so a crash during it is its own.

When a worker process dies, every command it was running loses its attempt, but only one of
them (at most) killed it. ``begin.lua`` therefore does not count an attempt lost in a shared
process. Most such deaths are not any command's doing (a deploy's kill, the OOM killer, a lost
host): a command caught in one runs again as before. A command caught in
:data:`~workers.constants.SUSPECT_AFTER_SHARED_LOSSES` of them runs *alone* from then on. An
alone run waits until the process's other panel calls have ended and keeps new ones waiting until
its own are over, so a crash during it is attributed to it and counted: a command that kills its
worker every time is still dead-lettered after its attempt cap (two shared deaths, then one alone
per attempt), while the commands that merely shared a process with it lose nothing.

Attribution from inside cannot tell a command's own crash from an outside kill that lands while
it runs alone; an innocent command is dead-lettered only if such kills land on as many of its
alone runs as its attempt cap allows (8-10 by default).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class ProcessGate:
    """A process-wide gate for panel calls: many at once, or one alone (alone runs go first)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._running = 0
        self._alone_waiting = 0
        self._alone_running = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        """Run beside other shared calls; wait while an alone run waits or runs."""
        with self._changed:
            self._changed.wait_for(lambda: not self._alone_waiting and not self._alone_running)
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    @contextmanager
    def alone(self, started: Callable[[], None], ended: Callable[[], None]) -> Iterator[None]:
        """Run with no other call in the process; ``started`` is called once that holds (before
        the call) and ``ended`` when the call is over (before other calls may start), so a crash
        is attributed to the run only while it really was alone in the process."""
        with self._changed:
            self._alone_waiting += 1
            try:
                self._changed.wait_for(lambda: not self._running and not self._alone_running)
            finally:
                self._alone_waiting -= 1
            self._alone_running = True
        try:
            started()
            try:
                yield
            finally:
                ended()
        finally:
            with self._changed:
                self._alone_running = False
                self._changed.notify_all()
