"""``mailops events tail``: the latest events filtered by id, producer, status and backend; --follow."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import redis

from tests.cli.conftest import Invoke, cli_env
from tests.conftest import add_command, wait_for_terminal
from workers.cli.exit_codes import RET_OK
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.settings import Settings
from workers.store.embedded_redis import EmbeddedRedis

MAILOPS = str(Path(sys.executable).with_name("mailops"))


def shown(result_stdout: str) -> list[tuple[str, str, str | None, str | None]]:
    """(id, status, producer, backend) of each JSON line ``events tail --json`` printed."""
    events = [orjson.loads(line) for line in result_stdout.splitlines()]
    return [(e["id"], e["status"], e.get("producer"), e.get("backend")) for e in events]


@pytest.fixture
def ran(redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
        runtime_for: Callable[..., Runtime]) -> None:
    """Three commands have run: two on whm1 (abuse ok, billing failed), one on whm2 (billing ok)."""
    runtime_for(settings_for({"whm1": ("whm", whm), "whm2": ("whm", whm)}))
    commands = [("a-1", "abuse", "whm1", "example"), ("b-1", "billing", "whm1", "ghost"), ("b-2", "billing", "whm2", "other")]
    for command_id, producer, backend, user in commands:
        add_command(redis_client, {"id": command_id, "command": "suspend_outgoing", "backend": backend,
                                   "args": {"user": user}, "producer": producer})
    wait_for_terminal(redis_client, {"a-1", "b-1", "b-2"})


def test_events_tail_filters_by_id_producer_status_and_backend(ran: None, mailops: Invoke) -> None:
    # Given three finished commands (each with an accepted and a terminal event)
    # When the operator tails with each filter
    by_id = mailops("events", "tail", "--json", "--id", "b-1")
    by_producer = mailops("events", "tail", "--json", "--producer", "billing", "--status", "succeeded")
    by_status = mailops("events", "tail", "--json", "--status", "failed")
    by_backend = mailops("events", "tail", "--json", "--backend", "whm2", "--status", "succeeded")
    # Then each shows exactly the matching events, oldest first
    assert all(r.exit_code == RET_OK for r in (by_id, by_producer, by_status, by_backend))
    assert shown(by_id.stdout) == [("b-1", "accepted", "billing", "whm1"), ("b-1", "failed", "billing", "whm1")]
    assert shown(by_producer.stdout) == [("b-2", "succeeded", "billing", "whm2")]
    assert shown(by_status.stdout) == [("b-1", "failed", "billing", "whm1")]
    assert shown(by_backend.stdout) == [("b-2", "succeeded", "billing", "whm2")]


def test_events_tail_count_keeps_the_latest_and_text_output_names_status_and_error(ran: None, mailops: Invoke) -> None:
    # When the operator asks for the newest success only, and for the failures as text
    every = shown(mailops("events", "tail", "--json", "--status", "succeeded").stdout)
    last = shown(mailops("events", "tail", "--json", "-n", "1", "--status", "succeeded").stdout)
    text = mailops("events", "tail", "--status", "failed")
    # Then -n 1 keeps only the newest match, and the text line names id, command, backend and the error kind
    assert len(every) == 2 and last == every[-1:]
    (line,) = text.stdout.splitlines()
    assert "failed" in line and "b-1" in line and "suspend_outgoing on whm1" in line and "panel_refused" in line


def test_events_tail_follow_prints_a_new_event_and_stops_after_max(tmp_path: Path, redis_server: EmbeddedRedis,
                                                                   redis_client: redis.Redis, whm: SandboxServer,
                                                                   settings_for: Callable[..., Settings],
                                                                   runtime_for: Callable[..., Runtime]) -> None:
    # Given a worker and `mailops events tail --follow` started before the command exists
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    env = os.environ | cli_env(tmp_path, redis_server.url, {"whm1": whm})
    tail = subprocess.Popen([MAILOPS, "events", "tail", "--follow", "--json", "-n", "0", "--id", "f-1",
                             "--status", "succeeded", "--max", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # (it is following once its connection blocks in XREAD)
        deadline = time.monotonic() + 30
        while not any(client.get("cmd") == "xread" for client in redis_client.client_list()):
            assert time.monotonic() < deadline and tail.poll() is None, tail.stderr.read() if tail.stderr else ""
            time.sleep(0.05)
        # When the command runs
        add_command(redis_client, {"id": "f-1", "command": "suspend_outgoing", "backend": "whm1",
                                   "args": {"user": "example"}, "producer": "abuse"})
        out, err = tail.communicate(timeout=30)
    finally:
        if tail.poll() is None:
            tail.kill()
    # Then the follower prints its terminal event and exits 0 by itself after --max 1
    assert tail.returncode == RET_OK, err
    assert shown(out.decode()) == [("f-1", "succeeded", "abuse", "whm1")]


def test_events_tail_by_batch_shows_the_batch_lines_refused_at_ingest(redis_client: redis.Redis, whm: SandboxServer,
                                                                      settings_for: Callable[..., Settings],
                                                                      runtime_for: Callable[..., Runtime],
                                                                      mailops: Invoke) -> None:
    # Given a batch line ingest refuses (its backend is not configured)
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    add_command(redis_client, {"id": "b-9-1", "command": "suspend_outgoing", "backend": "nowhere", "batch": "b-9",
                               "args": {"user": "example"}, "producer": "migration"})
    wait_for_terminal(redis_client, {"b-9-1"})
    # When the batch's events are tailed, Then the rejection is there
    result = mailops("events", "tail", "--batch", "b-9", "--json")
    assert result.exit_code == RET_OK
    assert shown(result.stdout) == [("b-9-1", "rejected", "migration", "nowhere")]
