"""The metrics endpoint: scraped after a run, it shows what the events show."""

from __future__ import annotations

from collections import Counter

import httpx
import redis
from prometheus_client.parser import text_string_to_metric_families

from schemas.commands import validate_command
from schemas.events import Event
from tests.conftest import add_command, wait_for_terminal
from workers.metrics import Metrics
from workers.queue.messages import message_for
from workers.sandbox.server import _free_port
from workers.settings import Settings
from workers.store.command_store import CommandStore


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


def waiting_gauge(client: redis.Redis, settings: Settings) -> dict[str, float]:
    return {s.labels["reason"]: s.value for family in Metrics(client, settings).registry.collect()
            if family.name == "mailops_commands_waiting" for s in family.samples}


def test_the_waiting_gauge_follows_each_commands_latest_reason_and_drops_it_once_it_retries(
        redis_client: redis.Redis, whm, settings_for) -> None:
    # Given a command the store has just deferred because the backend's call caps are full
    settings = settings_for({"whm1": ("whm", whm)})
    store = CommandStore(redis_client, settings)
    command = {"id": "w-1", "command": "suspend_outgoing", "backend": "whm1", "args": {"user": "example"},
               "producer": "abuse"}
    message = message_for(validate_command(command))

    def schedule(status: str, reason: str | None = None) -> None:
        redis_client.hset(settings.keys.command("w-1"), mapping={"status": "running", "attempts": 1})
        event = Event(id="w-1", command="suspend_outgoing", backend="whm1", status=status,
                      details={"reason": reason} if reason else {})
        store.schedule_retry(event, generation=2, reply_to=None, message=message, delay_ms=60_000,
                             attempt={"result": status}, uncount=status == "waiting")

    schedule("waiting", "backend_busy")
    assert waiting_gauge(redis_client, settings) == {"backend_down": 0, "cap_full": 1, "target_busy": 0}
    # When it waits again, now for a down backend, it counts under that reason only
    schedule("waiting", "backend_down")
    assert waiting_gauge(redis_client, settings) == {"backend_down": 1, "cap_full": 0, "target_busy": 0}
    # And once it is scheduled as a plain retry it no longer counts as waiting
    schedule("retrying")
    assert waiting_gauge(redis_client, settings) == {"backend_down": 0, "cap_full": 0, "target_busy": 0}
    # and the delayed depth counts the scheduled copies (the delay queue's messages hash)
    depth = {s.labels["state"]: s.value for family in Metrics(redis_client, settings).registry.collect()
             if family.name == "mailops_queue_depth" for s in family.samples if s.labels["queue"] == "urgent"}
    assert depth["delayed"] == 3


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
