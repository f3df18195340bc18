"""A foreground process stops on SIGTERM whichever of its threads the kernel hands the signal to."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.guarantees.processes import ROOT

#: A process whose SIGTERM reaches a thread other than the main one, while the main thread waits.
SCRIPT = textwrap.dedent("""
    import signal, sys, threading, time
    from workers.stop_signal import stop_on_signals, wait_for_stop

    stop = stop_on_signals()
    parked = threading.Event()
    other = threading.Thread(target=parked.wait, daemon=True)
    other.start()
    threading.Timer(0.3, lambda: signal.pthread_kill(other.ident, signal.SIGTERM)).start()
    started = time.monotonic()
    {wait}
    print(f"stopped after {{time.monotonic() - started:.2f}} s", flush=True)
""")


def run(wait: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT.format(wait=wait)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_a_sigterm_handed_to_another_thread_ends_the_main_threads_wait_within_a_second() -> None:
    # Given a process waiting for its stop signal, when SIGTERM reaches one of its other threads
    done = run("wait_for_stop(stop)")
    # Then the wait ends and the process goes on to stop, in well under a second
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("stopped after ")
    assert float(done.stdout.split()[2]) < 1.5


def test_a_plain_event_wait_misses_that_signal_which_is_why_the_wait_wakes_up() -> None:
    # Given the same process waiting with a plain, untimed Event.wait(): 3 s later it still waits
    # (if this starts passing through, CPython wakes the main thread itself and WAKE_S can go)
    with pytest.raises(subprocess.TimeoutExpired):
        run("stop.wait()", timeout=3)
