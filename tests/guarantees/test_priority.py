"""Priority isolation: an urgent command does not queue behind a bulk migration."""

from __future__ import annotations

import time

import pytest
import redis

from tests.conftest import add_command, read_events
from tests.guarantees.processes import add_many, suspend
from workers.sandbox import Faults, SandboxServer
from workers.sandbox.whm import WhmSandbox

TOKEN = "sandbox-whm-token"
#: The bound stated in the README: an urgent command behind 5,000 bulk ones ends within this.
URGENT_BOUND_S = 15.0

pytestmark = pytest.mark.slow


def test_an_urgent_command_after_5000_queued_bulk_commands_finishes_long_before_the_bulk(
    redis_client: redis.Redis, settings_for, runtime_for
) -> None:
    # Given 5,000 bulk commands queued on one worker (8 threads) and a panel answering in 20 ms
    n = 5000
    app = WhmSandbox(token=TOKEN)
    for i in range(n):
        app.add_account(f"b{i}")
    app.add_account("abuser")
    with SandboxServer(app, faults=Faults(latency_s=0.02)) as whm:
        settings = settings_for({"whm1": ("whm", whm)}, whm1={"max_concurrency": 16}, require_signatures=False)
        add_many(redis_client, [suspend(f"bulk-{i}", f"b{i}", priority="bulk") for i in range(n)])
        runtime_for(settings)
        deadline = time.monotonic() + 120
        while sum(1 for e in read_events(redis_client) if e.status == "accepted") < n:
            assert time.monotonic() < deadline, "bulk was not admitted"
            time.sleep(0.5)
        # When one urgent command arrives behind them
        sent = time.monotonic()
        add_command(redis_client, suspend("urgent-1", "abuser", priority="urgent"))
        while True:
            events = read_events(redis_client)
            if any(e.id == "urgent-1" and e.terminal for e in events):
                took = time.monotonic() - sent
                break
            assert time.monotonic() - sent < 120, "urgent command never finished"
            time.sleep(0.05)
    # Then it succeeded while most of the bulk was still waiting, within the stated bound
    final = [e for e in events if e.id == "urgent-1" and e.terminal]
    assert [e.status for e in final] == ["succeeded"]
    bulk_done = sum(1 for e in events if e.terminal and (e.id or "").startswith("bulk-"))
    print(f"\nurgent after {n} bulk: finished in {took:.2f}s with {bulk_done}/{n} bulk done")
    assert bulk_done < n
    assert took < URGENT_BOUND_S
