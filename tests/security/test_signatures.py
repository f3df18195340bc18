"""Only known producers act: forged or missing signatures never reach the panel."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import orjson
import pytest
import redis
from pydantic import SecretStr

from tests.clock import iso
from tests.conftest import wait_for_terminal
from tests.security.conftest import signed
from workers.attempt.holds import holds_of
from workers.constants import Keys
from workers.ingest.auth import AuthGate
from workers.ingest.signing import sign
from workers.sandbox import SandboxServer
from workers.settings import OperatorConfig


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
    with caplog.at_level(logging.WARNING, logger="workers.ingest.auth"):
        AuthGate(settings, redis_client)
    # Then a WARNING says so
    assert any(r.levelno == logging.WARNING and "SIGNATURES DISABLED" in r.getMessage() for r in caplog.records)


def test_billing_naming_the_abuse_detectors_reason_is_rejected_and_the_abuse_hold_stays(
    redis_client: redis.Redis, whm: SandboxServer, secure_settings, runtime_for
) -> None:
    # Given abuse-detector suspended outgoing mail of `example` (its own reason)
    runtime_for(secure_settings({"whm1": ("whm", whm)}))
    redis_client.xadd("mailops:commands", {"body": orjson.dumps(signed(suspend("hold-1")))})
    wait_for_terminal(redis_client, {"hold-1"}, timeout=20)
    calls = len(whm.app.ledger.changes())
    # When billing, signed with its own key, unsuspends it naming the abuse-detector's reason
    lift = {"id": "lift-1", "command": "unsuspend_outgoing", "backend": "whm1", "producer": "billing",
            "args": {"user": "example"}, "reason": "abuse-detector"}
    redis_client.xadd("mailops:commands", {"body": orjson.dumps(signed(lift))})
    events = wait_for_terminal(redis_client, {"lift-1"}, timeout=20)
    # Then it is rejected on its reason, the hold stays, and the panel was not called
    final = next(e for e in events if e.id == "lift-1" and e.terminal)
    assert (final.status, final.error and final.error.field, final.error and final.error.rule) == (
        "rejected", "reason", "not_allowed")
    assert set(holds_of(redis_client, Keys(), "whm1", "example", "outgoing")) == {"abuse-detector"}
    assert len(whm.app.ledger.changes()) == calls
    assert whm.app.state.accounts["example"].outgoing == "suspended"


def test_an_operator_is_verified_with_its_own_key_and_may_lift_the_reasons_it_is_given(
    redis_client: redis.Redis, whm: SandboxServer, secure_settings, runtime_for
) -> None:
    # Given an operator who may release holds of any reason, and an abuse hold
    alice = OperatorConfig(name="alice", key=SecretStr("alice-key-0123456789"), actions=("holds.release",),
                           reasons=("*",))
    runtime_for(secure_settings({"whm1": ("whm", whm)}, operators={"alice": alice}))
    redis_client.xadd("mailops:commands", {"body": orjson.dumps(signed(suspend("hold-2")))})
    wait_for_terminal(redis_client, {"hold-2"}, timeout=20)
    # When she lifts it, signed with her key, and sends a command her actions do not cover
    lift = {"id": "op-lift", "command": "unsuspend_outgoing", "backend": "whm1", "producer": "operator.alice",
            "args": {"user": "example"}, "reason": "abuse-detector", "issued_at": iso(datetime.now(UTC))}
    other = dict(lift, id="op-add", command="terminate_sessions")
    for body in (lift, other):
        body["signature"] = sign(body, b"alice-key-0123456789")
        redis_client.xadd("mailops:commands", {"body": orjson.dumps(body)})
    events = wait_for_terminal(redis_client, {"op-lift", "op-add"}, timeout=20)
    # Then the release ran (the panel is unsuspended) and the other command is not hers to send
    finals = {e.id: e for e in events if e.terminal}
    assert finals["op-lift"].status == "succeeded"
    assert (finals["op-add"].status, finals["op-add"].error and finals["op-add"].error.rule) == ("rejected", "not_allowed")
    assert whm.app.state.accounts["example"].outgoing == "active"
