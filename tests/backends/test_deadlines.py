"""A trickling panel, run by a worker: every call ends by its backend's deadline, and the
backend's concurrency cap holds fleet-wide (its leases outlive its calls)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import redis

from tests.clock import ISSUED
from tests.conftest import add_command, read_events
from workers.sandbox.trickle import TricklingPanel


def test_a_trickling_panel_holds_no_call_beyond_its_deadline_and_no_more_threads_than_its_cap(
    redis_client: redis.Redis, settings_for, runtime_for,
) -> None:
    # Given a backend capped at 2 calls whose panel trickles a byte a second (2 s read timeout,
    # 5 s deadline), and a worker with 8 threads
    with TricklingPanel() as trickling:
        panel = SimpleNamespace(url=trickling.url, app=SimpleNamespace(token="slow-token"))
        settings = settings_for({"slow": ("whm", panel)},
                                slow={"read_timeout": 2.0, "call_deadline": 5.0, "max_concurrency": 2})
        runtime = runtime_for(settings)
        # When 8 commands for it arrive, and the worker works them for 14 s
        for i in range(8):
            add_command(redis_client, {"id": f"t-{i}", "command": "suspend_outgoing", "backend": "slow",
                                       "args": {"user": f"u{i}"}, "producer": "billing", "issued_at": ISSUED})
        leases = settings.keys.backend_inflight("slow")
        most_leases, until = 0, time.monotonic() + 14
        while time.monotonic() < until:
            most_leases = max(most_leases, int(redis_client.zcard(leases)))
            time.sleep(0.02)
        runtime.stop(drain_timeout_ms=0)
    # Then the panel never had more than 2 calls at once, nor the backend more than 2 leases
    assert trickling.most <= 2 and most_leases <= 2
    # And every call ended by the 5 s deadline, as the panel saw it
    assert trickling.calls
    assert max(end - start for start, end in trickling.calls) <= 5.0 + 0.5
    # And the worker reported them as timeouts to retry, not as answers
    kinds = {e.error.kind for e in read_events(redis_client) if e.status == "retrying" and e.error is not None}
    assert kinds == {"timeout"}
