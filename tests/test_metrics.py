"""The metrics endpoint: scraped after a run, it shows what the events show."""

from __future__ import annotations

from collections import Counter

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import add_command, wait_for_terminal
from workers.metrics import Metrics
from workers.sandbox.server import _free_port


def _cmd(id: str, user: str) -> dict[str, object]:
    return {"id": id, "command": "suspend_outgoing", "backend": "whm1", "args": {"user": user}, "producer": "abuse"}


def test_a_scrape_after_a_run_shows_the_counts_of_the_events(redis_client: redis.Redis, whm, settings_for,
                                                             runtime_for) -> None:
    # Given a worker with a metrics endpoint
    settings = settings_for({"whm1": ("whm", whm)}, require_signatures=False)
    metrics = Metrics(redis_client, settings)
    port = _free_port("127.0.0.1")
    server = metrics.serve(port, addr="127.0.0.1")
    try:
        runtime_for(settings, metrics=metrics)
        # When three commands succeed (on three accounts: commands for one account are ordered, and
        # an older one applied after a newer would end superseded) and two fail
        whm.app.add_account("third")
        users = ["example", "other", "third", "ghost", "ghost"]
        ids = {f"m-{i}" for i in range(5)}
        for i, user in enumerate(users):
            add_command(redis_client, _cmd(f"m-{i}", user))
        events = wait_for_terminal(redis_client, ids)
        redis_client.zadd(settings.keys.dead_letters, {"old-1": 1})
        # Then the scraped counters equal the terminal events by status
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        server.shutdown()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    expected = Counter(e.status for e in events if e.terminal)
    for status, n in expected.items():
        key = ("mailops_commands_total", (("backend", "whm1"), ("command", "suspend_outgoing"), ("status", status)))
        assert samples[key] == n
    assert expected == {"succeeded": 3, "failed": 2}
    assert samples[("mailops_command_duration_seconds_count", (("backend", "whm1"), ("command", "suspend_outgoing")))] == 5
    assert samples[("mailops_dead_letters", ())] == 1
    assert samples[("mailops_queue_depth", (("queue", "urgent"), ("state", "ready")))] == 0
    assert samples[("mailops_backend_breaker_state", (("backend", "whm1"), ("state", "closed")))] == 1


def test_a_scrape_counts_rejections_by_producer_field_and_rule(redis_client: redis.Redis, whm, settings_for,
                                                               runtime_for) -> None:
    # Given a worker serving metrics; When a command is refused at ingest
    settings = settings_for({"whm1": ("whm", whm)})
    metrics = Metrics(redis_client, settings)
    port = _free_port("127.0.0.1")
    server = metrics.serve(port, addr="127.0.0.1")
    try:
        runtime_for(settings, metrics=metrics)
        add_command(redis_client, _cmd("rej-1", "Bad User"))
        wait_for_terminal(redis_client, {"rej-1"})
        # Then the process's scrape has mailops_commands_rejected_total for that field and rule
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        server.shutdown()
    samples = {(s.labels["producer"], s.labels["field"], s.labels["rule"]): s.value
               for family in text_string_to_metric_families(text) if family.name == "mailops_commands_rejected"
               for s in family.samples if s.name == "mailops_commands_rejected_total"}
    assert samples.get(("unknown", "args.user", "string_pattern_mismatch"), 0) >= 1
