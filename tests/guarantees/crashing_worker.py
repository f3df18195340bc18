"""A worker whose WHM backend kills its own process (os._exit) on account ``poison``.

Test-only entry point: ``python -m tests.guarantees.crashing_worker worker -p 1``. The attempt
cap of ``suspend_outgoing`` is lowered to :data:`MAX_ATTEMPTS` (or ``$CRASH_TEST_MAX_ATTEMPTS``) so
the test stays short.
"""

from __future__ import annotations

import dataclasses
import os

from schemas.commands import COMMANDS, Command
from workers.attempt.retry_policy import RetryPolicy
from workers.backends import registry
from workers.backends.base import PanelResult
from workers.backends.whm import WhmBackend

MAX_ATTEMPTS = 3


class CrashingWhm(WhmBackend):
    def execute(self, command: Command) -> PanelResult:
        if command.args.get("user") == "poison":
            os._exit(9)
        return super().execute(command)


def install() -> None:
    """Patch this process only (never the test process that imports MAX_ATTEMPTS)."""
    registry.KINDS["whm"] = CrashingWhm
    cap = int(os.environ.get("CRASH_TEST_MAX_ATTEMPTS", MAX_ATTEMPTS))
    COMMANDS["suspend_outgoing"] = dataclasses.replace(COMMANDS["suspend_outgoing"], retry=RetryPolicy(max_attempts=cap))


if __name__ == "__main__":
    from workers.cli.main import main

    install()
    main()
