"""Imported by every Python process of scripts/test's clock pass (this folder is put on PYTHONPATH).

With ``TEST_CLOCK_SHIFT_DAYS`` set, the wall clock (``time.time``, ``datetime.now`` …) runs that many
days ahead from the start of the process; monotonic clocks, sleeps and timeouts are untouched. The
Redis server of that pass runs under libfaketime with the same shift, so entry ids, ``TIME`` in
scripts and TTLs agree with the Python side. (libfaketime on Python itself breaks timed waits and
sleeps; time-machine moves the clock at the Python level.)
"""

import os

_days = os.environ.get("TEST_CLOCK_SHIFT_DAYS")
if _days:
    from datetime import UTC, datetime, timedelta

    import time_machine

    time_machine.travel(datetime.now(UTC) + timedelta(days=int(_days)), tick=True).start()
