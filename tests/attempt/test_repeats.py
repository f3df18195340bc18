"""Repeats collapse: the same state asked again within the window costs no panel call."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import redis

from tests.clock import iso
from tests.conftest import wait_for_terminal
from tests.guarantees.processes import add_many
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.sandbox.cpanel import CpanelSandbox
from workers.settings import Settings


def suspend(command_id: str, at: datetime, *, command: str = "suspend_outgoing") -> dict[str, object]:
    return {"id": command_id, "command": command, "backend": "cp1", "args": {"email": "info@shop.example"},
            "producer": "abuse-detector", "reason": "abuse", "issued_at": iso(at)}


def mailbox_panel() -> CpanelSandbox:
    app = CpanelSandbox()
    app.add_account("shop", "shop.example")
    app.state.add_mailbox("info@shop.example")
    return app


def test_a_thousand_identical_suspensions_of_one_mailbox_make_one_panel_call_and_a_thousand_terminal_events(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime]) -> None:
    # Given a cPanel account with mailbox info@shop.example, and an abuse detector re-sending its verdict
    app = mailbox_panel()
    with SandboxServer(app) as cp1:
        start = datetime.now(UTC)
        # When 1,000 identical suspend_outgoing commands are queued within the repeat window (all of
        # them before the worker starts: each is admitted before the first call ends, whatever the
        # scheduling; one queued after that call ended would rightly ask the panel again)
        add_many(redis_client, [suspend(f"scan-{i}", start + timedelta(milliseconds=i)) for i in range(1000)])
        runtime_for(settings_for({"cp1": ("cpanel", cp1)}))
        events = wait_for_terminal(redis_client, {f"scan-{i}" for i in range(1000)}, timeout=120)
        requests = cp1.stats()["changes"]
    # Then every command ended once, the mailbox was suspended by one panel call
    terminal = [e for e in events if e.terminal]
    assert Counter(e.id for e in terminal) == Counter({f"scan-{i}": 1 for i in range(1000)})
    assert requests == 1 and len(app.ledger.changes()) == 1
    # And the others say whose call already set that state
    statuses = Counter((e.status, e.already) for e in terminal)
    assert statuses[("succeeded", False)] == 1
    repeats = [e for e in terminal if e.details.get("repeat_of")]
    assert all(e.status == "succeeded" and e.already and e.details["panel_called"] is False for e in repeats)
    superseded = statuses[("superseded", None)]
    print(f"\nrepeats {len(repeats)}, superseded {superseded}")
    assert len(repeats) + superseded == 999


def test_a_resend_after_the_call_ended_and_a_different_state_in_between_both_reach_the_panel(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime]) -> None:
    # Given a mailbox suspended by abuse
    app = mailbox_panel()
    with SandboxServer(app) as cp1:
        runtime_for(settings_for({"cp1": ("cpanel", cp1)}))
        start = datetime.now(UTC)
        for i, (command_id, command) in enumerate([("a-1", "suspend_outgoing"), ("a-2", "unsuspend_outgoing"),
                                                   ("a-3", "suspend_outgoing"), ("a-4", "suspend_outgoing")]):
            # When the abuse desk lifts it, suspends it again, and its detector re-sends that
            # suspension once the call has ended (one at a time)
            add_many(redis_client, [suspend(command_id, start + timedelta(seconds=i), command=command)])
            events = wait_for_terminal(redis_client, {command_id})
        requests = cp1.stats()["changes"]
    # Then every one was asked of the panel (it may have drifted after each call); three changed it
    final = {e.id: e for e in events if e.terminal}
    assert [final[i].details.get("repeat_of") for i in ("a-1", "a-2", "a-3", "a-4")] == [None] * 4
    assert requests == 4 and len(app.ledger.changes()) == 3
    assert final["a-4"].status == "succeeded"


def test_another_producers_identical_command_queued_meanwhile_still_reaches_the_panel(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime]) -> None:
    # Given one worker thread, and the abuse detector's suspension queued together with an operator's identical one
    app = mailbox_panel()
    with SandboxServer(app) as cp1:
        runtime_for(settings_for({"cp1": ("cpanel", cp1)}), threads=1)
        start = datetime.now(UTC)
        operator = suspend("op-1", start + timedelta(milliseconds=1)) | {"producer": "operator.ops"}
        add_many(redis_client, [suspend("det-1", start), operator])
        events = wait_for_terminal(redis_client, {"det-1", "op-1"})
        requests = cp1.stats()["changes"]
    # Then both reached the panel: only a producer's own re-sends collapse
    final = {e.id: e for e in events if e.terminal}
    assert [final[i].details.get("repeat_of") for i in ("det-1", "op-1")] == [None, None]
    assert requests == 2
