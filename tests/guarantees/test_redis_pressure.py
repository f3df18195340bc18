"""Redis out of memory (``maxmemory`` with ``noeviction``) is a passing state: flooded until Redis
refuses writes and then given memory again, a worker ends every accepted command exactly once,
rejects none of them for the refusal, needs no restart, and calls the panel once per command."""

from __future__ import annotations

import logging
import time
from collections import Counter

import orjson
import pytest
import redis

from tests.conftest import whm_with_accounts
from tests.guarantees.processes import suspend, wait_all_terminal
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.store.embedded_redis import EmbeddedRedis

pytestmark = pytest.mark.slow

#: Most commands the flood sends (it stops at Redis's first refusal).
MOST = 3000


def test_a_flood_into_a_redis_out_of_memory_ends_every_accepted_command_once_after_memory_is_raised(
    settings_for, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    app = whm_with_accounts(MOST)
    with SandboxServer(app) as whm, \
            EmbeddedRedis(extra_args=("--maxmemory-policy", "noeviction")) as server:
        client = redis.Redis.from_url(server.url)
        # Given a worker on a Redis with 512 KiB to spare under its `maxmemory` (no eviction): the
        # flood alone fills that (3,000 queued entries take about 700 KiB), however slowly the
        # worker turns commands into records and events on a busy machine
        settings = settings_for({"whm1": ("whm", whm)}).model_copy(update={"redis_url": server.url})
        runtime = Runtime(settings).start()
        client.config_set("maxmemory", int(client.info("memory")["used_memory"]) + 512 * 1024)
        # When producers flood it with commands until Redis refuses their writes
        accepted: list[str] = []
        refused = False
        while not refused and len(accepted) < MOST:
            pipe = client.pipeline(transaction=False)
            batch = [f"oom-{i}" for i in range(len(accepted), min(len(accepted) + 100, MOST))]
            for command_id in batch:
                pipe.xadd("mailops:commands", {"body": orjson.dumps(suspend(command_id, f"u{command_id[4:]}"))})
            last = pipe.execute(raise_on_error=False)
            for command_id, reply in zip(batch, last, strict=True):
                if isinstance(reply, redis.ResponseError):
                    refused = True
                else:
                    accepted.append(command_id)
        assert refused, "Redis never ran out of memory"
        last = [r for r in last if isinstance(r, redis.ResponseError)]
        # ... and stays out of memory for a while (the worker's admits, begins, finishes and acks are refused)
        time.sleep(3)
        producer_refusals = sum(isinstance(r, redis.ResponseError) for r in last)
        oom_replies = int(client.info("errorstats").get("errorstat_OOM", {}).get("count", 0))
        # Then, once memory is raised again
        client.config_set("maxmemory", 0)
        try:
            events = wait_all_terminal(client, set(accepted), timeout=120)
        finally:
            runtime.stop(drain_timeout_ms=2000)
        requests = whm.stats()["changes"]
        client.close()
    # (the worker's own writes were refused too, not only the producer's)
    assert oom_replies > producer_refusals
    # Every accepted command ended exactly once, and succeeded (none rejected as unadmittable)
    terminal = Counter(e.id for e in events if e.terminal)
    assert {i: terminal[i] for i in accepted} == {i: 1 for i in accepted}
    statuses = Counter(e.status for e in events if e.terminal and e.id in set(accepted))
    assert statuses == {"succeeded": len(accepted)}, statuses
    assert not [e for e in events if e.error is not None and e.error.rule == "unadmittable"]
    # And the panel was called once per command (each suspends its own account)
    assert requests == len(accepted)
    assert sorted(c.target for c in app.ledger.changes()) == sorted(f"u{i[4:]}" for i in accepted)
    # And the worker never restarted a consumer, nor flooded the log with its waits
    assert "Consumer encountered" not in caplog.text
    waits = [r for r in caplog.records if "waiting it out" in r.getMessage()]
    assert len(waits) <= 10, len(waits)
    print(f"accepted {len(accepted)} commands before Redis refused; {oom_replies - producer_refusals} OOM "
          f"refusals of the worker's writes; {len(waits)} wait lines logged")
