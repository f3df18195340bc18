"""Named exit codes of every ``mailops`` command."""

from __future__ import annotations

#: Everything worked.
RET_OK = 0
#: The command ran, but what it checked or waited for failed (a command failed, a check is red).
RET_FAILED = 1
#: The command line itself was wrong (click's own usage errors also exit 2).
RET_USAGE = 2
#: Redis could not be reached.
RET_CONNECT = 3
#: The settings or the backends file are invalid.
RET_CONFIG = 4
#: Waiting for an outcome ran out of time.
RET_TIMEOUT = 5
#: A check found nothing wrong but could not read everything (``mailops reconcile``: unknown state).
RET_UNKNOWN = 6
#: Interrupted by SIGINT (Ctrl-C), as a shell reports it: 128 + 2.
RET_INTERRUPTED = 130
