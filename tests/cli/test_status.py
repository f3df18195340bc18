"""What is stuck is visible: a stopped backend shows in the worker's gauges and in ``mailops status``."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.cli.conftest import Invoke
from tests.conftest import add_command
from workers.cli.exit_codes import RET_OK
from workers.metrics import Metrics
from workers.sandbox import SandboxServer
from workers.sandbox.server import _free_port

#: The issue's bound: a stopped backend shows in the gauges within this many seconds.
VISIBLE_WITHIN_S = 5.0


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def stuck_is_shown(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> bool:
    delayed = sum(v for (name, labels), v in samples.items()
                  if name == "mailops_queue_depth" and ("state", "delayed") in labels)
    return (samples.get(("mailops_backend_breaker_open", (("backend", "whm1"),))) == 1
            and samples.get(("mailops_commands_waiting", (("backend", "whm1"), ("reason", "backend_down"))), 0) >= 1
            and delayed >= 1)


def test_a_stopped_backend_shows_in_the_waiting_breaker_and_delayed_gauges_within_5_s_and_in_mailops_status(
        redis_client: redis.Redis, whm: SandboxServer, settings_for: Any, runtime_for: Any, mailops: Invoke) -> None:
    # Given a worker with its metrics endpoint, whose only backend is stopped
    settings = settings_for({"whm1": ("whm", whm)})
    metrics = Metrics(redis_client, settings)
    port = _free_port("127.0.0.1")
    server = metrics.serve(port, addr="127.0.0.1")
    try:
        runtime_for(settings, metrics=metrics)
        whm.stop()
        # When commands are sent to it
        started = time.monotonic()
        for i in range(10):
            add_command(redis_client, {"id": f"stuck-{i}", "command": "suspend_outgoing", "backend": "whm1",
                                       "args": {"user": f"user{i}"}, "producer": "abuse"})
        # Then within 5 s the scraped gauges show the open breaker, the commands waiting for it, and them delayed
        samples = scrape(port)
        while not stuck_is_shown(samples):
            assert time.monotonic() - started < VISIBLE_WITHIN_S, samples
            time.sleep(0.05)
            samples = scrape(port)
        assert samples[("mailops_backend_breaker_state", (("backend", "whm1"), ("state", "open")))] == 1
        assert samples[("mailops_workers_live", ())] >= 1
        # And `mailops status` shows the same: the breaker open and commands waiting on whm1 for backend_down
        shown = mailops("status", "--json")
        assert shown.exit_code == RET_OK, shown.output
        status = orjson.loads(shown.stdout)
        assert status["backends"]["whm1"]["breaker"] == "open"
        assert status["waiting"]["whm1"]["backend_down"] >= 1
        assert any(worker["live"] for worker in status["workers"])
        screen = mailops("status")
        assert screen.exit_code == RET_OK
        assert "whm1" in screen.stdout and "open" in screen.stdout and "dead letters: 0" in screen.stdout
    finally:
        server.shutdown()


def test_status_of_an_idle_deployment_shows_every_queue_and_no_waiting(redis_client: redis.Redis,
                                                                      mailops: Invoke) -> None:
    shown = mailops("status", "--json")
    assert shown.exit_code == RET_OK, shown.output
    status = orjson.loads(shown.stdout)
    assert set(status["queues"]) == {"urgent", "default", "bulk"}
    assert status["waiting"] == {"whm1": {"backend_down": 0, "cap_full": 0, "target_busy": 0}}
    assert status["dead_letters"] == 0 and status["ingest"] == {"lag": 0, "pending": 0}
