"""Times for the commands tests send, read from the clock when the session starts — never a date that ages.

One shared ``issued_at`` per session: a test that sends the same command twice (a producer's retry)
must send the same payload, and the retry and age caps measure from it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

SESSION_START = datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, as producers write it."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


#: The ``issued_at`` of commands whose time does not matter to the test.
ISSUED = iso(SESSION_START)


def outside_python(argv: list[str]) -> list[str]:
    """``argv`` for a program that is not Python (a PHP or Go producer), run on the same clock as
    the tests: in scripts/test's clock pass (``TEST_CLOCK_SHIFT_DAYS``) under libfaketime, as Redis is."""
    days = os.environ.get("TEST_CLOCK_SHIFT_DAYS")
    return ["faketime", "-f", f"+{int(days)}d", *argv] if days else argv
