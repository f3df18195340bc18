"""Stopping a foreground process on SIGTERM or SIGINT.

Python runs signal handlers in the main thread only. When the kernel hands a process's SIGTERM to
another of its threads while the main thread sleeps in an untimed ``Event.wait()`` (a lock
acquire), nothing wakes the main thread and the handler waits with it: a worker told to stop went
on working (seen in a suite run: no "draining" line 60 s after SIGTERM, and the worker took later
tests' commands). :func:`wait_for_stop` wakes up every :data:`WAKE_S`, so the handler runs within
that time whichever thread the signal reached.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

#: Seconds between two looks at the stop flag by a waiting main thread.
WAKE_S = 0.2


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (handlers installed now, from the main thread)."""
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def wait_for_stop(stop: threading.Event) -> None:
    """Wait in the main thread until ``stop`` is set, running signal handlers as they come."""
    while not stop.wait(WAKE_S):
        pass


def interrupt_on_sigterm() -> None:
    """Make SIGTERM stop the process as Ctrl-C does (``KeyboardInterrupt``), so its ``finally``
    blocks stop the processes it started instead of leaving them running."""
    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
