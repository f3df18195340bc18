"""The process gate: an alone run starts only when no other call runs, and none starts beside it."""

from __future__ import annotations

import threading
import time

from workers.attempt.isolation import ProcessGate


def test_an_alone_run_waits_for_running_calls_and_keeps_new_ones_out_until_it_ends() -> None:
    gate, log, lock = ProcessGate(), [], threading.Lock()
    first_in, release_first = threading.Event(), threading.Event()

    def note(what: str) -> None:
        with lock:
            log.append(what)

    def first() -> None:
        with gate.shared():
            note("first starts")
            first_in.set()
            release_first.wait(5)
            note("first ends")

    def alone() -> None:
        with gate.alone(lambda: note("alone recorded"), lambda: note("alone over")):
            note("alone runs")
            time.sleep(0.05)
            note("alone ends")

    def later() -> None:
        with gate.shared():
            note("later runs")

    threads = [threading.Thread(target=first)]
    threads[0].start()
    first_in.wait(5)
    # Given a call running, when an alone run and then another call arrive
    threads.append(threading.Thread(target=alone))
    threads[1].start()
    while not gate._alone_waiting:  # the alone run is waiting
        time.sleep(0.001)
    threads.append(threading.Thread(target=later))
    threads[2].start()
    time.sleep(0.05)
    release_first.set()
    for thread in threads:
        thread.join(5)
    # Then the alone run started after the first call ended, and the later call after the alone run
    assert log == ["first starts", "first ends", "alone recorded", "alone runs", "alone ends", "alone over",
                   "later runs"]
