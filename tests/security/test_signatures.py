"""Only known producers act: forged or missing signatures never reach the panel."""

from __future__ import annotations

import logging

import orjson
import pytest
import redis

from tests.conftest import wait_for_terminal
from tests.security.conftest import signed
from workers.auth import AuthGate
from workers.sandbox import SandboxServer


def suspend(id: str, user: str = "example") -> dict[str, object]:
    return {"id": id, "command": "suspend_outgoing", "backend": "whm1", "producer": "abuse-detector", "args": {"user": user}}


def test_forged_and_unsigned_commands_are_rejected_audited_and_never_reach_the_sandbox(
    redis_client: redis.Redis, whm: SandboxServer, secure_settings, runtime_for
) -> None:
    # Given a worker that requires signatures
    runtime_for(secure_settings({"whm1": ("whm", whm)}))
    # When unsigned, forged and tampered commands arrive
    bodies = [suspend("f-1"), signed(suspend("f-2"), mode="other_key"), signed(suspend("f-3"), mode="garbage"),
              signed(suspend("f-4"), mode="tamper")]
    for body in bodies:
        redis_client.xadd("mailops:commands", {"body": orjson.dumps(body)})
    events = wait_for_terminal(redis_client, {"f-1", "f-2", "f-3", "f-4"}, timeout=20)
    # Then each is rejected on its signature, audited, and the sandbox ledger is unchanged
    finals = {e.id: e for e in events if e.terminal}
    assert {i: (e.status, e.error.field if e.error else None) for i, e in finals.items()} == {
        i: ("rejected", "signature") for i in ("f-1", "f-2", "f-3", "f-4")}
    assert whm.app.ledger.changes() == []
    assert redis_client.xlen("mailops:audit") == 4


def test_a_replayed_signed_command_runs_once_and_a_stale_replay_is_rejected(
    redis_client: redis.Redis, whm: SandboxServer, secure_settings, runtime_for
) -> None:
    # Given a worker and one signed command that succeeded
    runtime_for(secure_settings({"whm1": ("whm", whm)}))
    body = signed(suspend("r-1"))
    redis_client.xadd("mailops:commands", {"body": orjson.dumps(body)})
    wait_for_terminal(redis_client, {"r-1"}, timeout=20)
    # When the same bytes are replayed inside the window, and a copy re-signed 20 minutes old
    redis_client.xadd("mailops:commands", {"body": orjson.dumps(body)})
    stale = signed(suspend("r-2"), issued="stale")
    redis_client.xadd("mailops:commands", {"body": orjson.dumps(stale)})
    events = wait_for_terminal(redis_client, count=3, timeout=20)
    # Then the replay is a duplicate (not run again) and the stale one is rejected as too old
    assert [e.status for e in events if e.id == "r-1" and e.terminal] == ["succeeded", "duplicate"]
    stale_final = [e for e in events if e.id == "r-2" and e.terminal]
    assert stale_final[0].error is not None and stale_final[0].error.rule == "too_old"
    assert len(whm.app.ledger.changes()) == 1


def test_disabling_signatures_is_logged_as_a_warning_at_start_up(
    redis_client: redis.Redis, whm: SandboxServer, settings_for, caplog: pytest.LogCaptureFixture
) -> None:
    # Given settings with require_signatures explicitly off
    settings = settings_for({"whm1": ("whm", whm)}, require_signatures=False)
    # When the auth gate is built
    with caplog.at_level(logging.WARNING, logger="workers.auth"):
        AuthGate(settings, redis_client)
    # Then a WARNING says so
    assert any(r.levelno == logging.WARNING and "SIGNATURES DISABLED" in r.getMessage() for r in caplog.records)
