"""The whole path: a plain XADD becomes a panel call and exactly one terminal event."""

from __future__ import annotations

import redis

from tests.clock import ISSUED
from tests.conftest import add_command, wait_for_terminal
from workers.sandbox import SandboxServer


def suspend(id: str, user: str = "example", backend: str = "whm1", command: str = "suspend_outgoing") -> dict[str, object]:
    return {
        "id": id, "command": command, "backend": backend, "args": {"user": user},
        "producer": "abuse-detector", "issued_at": ISSUED,
    }


def test_a_plain_xadd_command_succeeds_and_changes_the_panel_once(redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for) -> None:
    # Given a worker and a WHM sandbox
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    # When a producer adds a command as redis-cli would
    add_command(redis_client, suspend("c-1"))
    # Then it ends succeeded, after accepted, and the panel changed exactly once
    events = wait_for_terminal(redis_client, {"c-1"})
    assert [e.status for e in events if e.id == "c-1"] == ["accepted", "succeeded"]
    changes = whm.app.ledger.changes()
    assert [(c.target, c.field, c.new) for c in changes] == [("example", "outgoing", "suspended")]


def test_an_unknown_user_fails_with_the_panels_reason(redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for) -> None:
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    add_command(redis_client, suspend("c-2", user="ghost"))
    events = wait_for_terminal(redis_client, {"c-2"})
    final = [e for e in events if e.id == "c-2" and e.terminal]
    assert len(final) == 1 and final[0].status == "failed"
    assert final[0].error is not None
    assert "You do not have a user named “ghost”." in final[0].error.message
    assert whm.app.ledger.changes() == []


def test_malformed_entries_are_rejected_and_the_next_valid_command_still_succeeds(
    redis_client: redis.Redis, whm: SandboxServer, settings_for, runtime_for
) -> None:
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    bad = [
        (b"this is not json", "body", "json"),
        (suspend("c-3") | {"command": "explode_mailbox"}, "command", "unknown_command"),
        (suspend("c-4") | {"args": {}}, "args.user", "missing"),
    ]
    entries = [add_command(redis_client, body) for body, _f, _r in bad]
    add_command(redis_client, suspend("c-5"))
    events = wait_for_terminal(redis_client, count=4)
    rejected = {e.entry: e for e in events if e.status == "rejected"}
    for entry, (_body, field, rule) in zip(entries, bad, strict=True):
        assert rejected[entry].error is not None
        assert (rejected[entry].error.field, rejected[entry].error.rule) == (field, rule)
    assert [e.status for e in events if e.id == "c-5" and e.terminal] == ["succeeded"]
