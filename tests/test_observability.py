"""Sentry gets panel errors tagged with the command, without secrets; logs are JSON with the command id."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
import sentry_sdk
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from tests.conftest import WHM_TOKEN, add_command, wait_for_terminal, wait_until
from workers.observability import JsonFormatter, init_sentry
from workers.sandbox.server import Faults


class RecordingTransport(Transport):
    """A local Sentry transport that keeps every envelope."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)


@pytest.fixture
def sentry() -> Iterator[RecordingTransport]:
    transport = RecordingTransport()
    init_sentry("http://public@127.0.0.1:9/1", transport=transport)
    yield transport
    sentry_sdk.init()


def test_a_panel_error_reaches_sentry_with_its_tags_and_no_secret(redis_client: redis.Redis, whm, settings_for,
                                                                  runtime_for, sentry: RecordingTransport) -> None:
    # Given Sentry on and a worker
    runtime_for(settings_for({"whm1": ("whm", whm)}, require_signatures=False))
    # When a panel call raises (unknown user)
    add_command(redis_client, {"id": "s-1", "command": "suspend_outgoing", "backend": "whm1",
                               "args": {"user": "ghost"}, "producer": "abuse"})
    wait_for_terminal(redis_client, {"s-1"})

    def sentry_events() -> list[Any]:
        sentry_sdk.flush(timeout=5)
        return [item.payload.json for env in sentry.envelopes for item in env.items if item.type == "event"]

    # Then (once the worker has told Sentry: right after it published the terminal event) one event
    # carries the command's tags and the panel's reason, and the token is nowhere
    wait_until(lambda: bool(sentry_events()), timeout=10)
    events = sentry_events()
    event = events[0]
    assert event["tags"]["command_id"] == "s-1"
    assert (event["tags"]["command"], event["tags"]["backend"]) == ("suspend_outgoing", "whm1")
    assert event["exception"]["values"][-1]["type"] == "PanelRefused"
    raw = b"".join(env.serialize() for env in sentry.envelopes)
    assert WHM_TOKEN.encode() not in raw


def test_json_log_lines_carry_the_fields_of_the_record() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("mailops.test.json")
    log.addHandler(handler)
    try:
        log.warning("panel %s slow", "whm1")
    finally:
        log.removeHandler(handler)
    line = orjson.loads(stream.getvalue())
    assert (line["level"], line["message"], line["logger"]) == ("WARNING", "panel whm1 slow", "mailops.test.json")
    assert "command_id" not in line


def test_a_json_log_line_written_while_a_command_runs_carries_its_command_id(
        redis_client: redis.Redis, whm, settings_for, runtime_for) -> None:
    # Given JSON logs on the root logger and a WHM panel answering every call with HTTP 500,
    # with the breaker opening on the first failure (the worker logs a warning inside the command)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.addHandler(handler)
    whm.set_faults(Faults(error_rate=1.0))
    try:
        runtime_for(settings_for({"whm1": ("whm", whm)}, breaker_failures=1))
        # When a command runs against it
        add_command(redis_client, {"id": "log-1", "command": "suspend_outgoing", "backend": "whm1",
                                   "args": {"user": "example"}, "producer": "abuse"})
        deadline = time.monotonic() + 30
        while "breaker of whm1 opened" not in stream.getvalue():
            assert time.monotonic() < deadline, stream.getvalue()
            time.sleep(0.05)
    finally:
        root.removeHandler(handler)
    # Then that warning is one JSON object naming the command it happened in
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    (warning,) = [line for line in lines if line["message"].startswith("breaker of whm1 opened")]
    assert (warning["level"], warning["logger"]) == ("WARNING", "workers.attempt.limits")
    assert (warning["command_id"], warning["command"], warning["backend"], warning["attempt"]) == \
        ("log-1", "suspend_outgoing", "whm1", 1)
