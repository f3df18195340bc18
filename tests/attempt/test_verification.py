"""Read-back, end to end: a change counts as done only when the panel shows it (workers/attempt/verification.py).

Panels that lie (answer OK, apply nothing), apply late (cPanel's queueprocd), or apply and then
lose the answer, against real HTTP sandboxes and a real worker.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from schemas.commands import validate_command
from tests.clock import ISSUED
from tests.conftest import add_command, read_events, retry_for, wait_for_terminal, whm_with_accounts
from workers.attempt.retry_policy import RetryPolicy
from workers.attempt.verification import Verifier
from workers.backends import whm
from workers.backends.base import PanelResult
from workers.errors import NotApplied, PanelUnavailable
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.sandbox.cpanel import CpanelSandbox
from workers.sandbox.server import Faults
from workers.settings import BackendConfig, Settings

PASSWORD = "n3w-Secret-pass"
#: Passwords are sealed at ingest, which needs a sealing key (64 random bytes, base64).
SEALING = {"sealing_key": SecretStr(base64.b64encode(os.urandom(64)).decode())}


def command(id: str, name: str, args: dict[str, Any], backend: str = "whm1") -> dict[str, object]:
    return {"id": id, "command": name, "backend": backend, "args": args, "producer": "billing", "issued_at": ISSUED}


def final_of(events: list[Any], id: str) -> Any:
    return next(e for e in events if e.id == id and e.terminal)


def shop_panel() -> CpanelSandbox:
    """A cPanel account ``shop`` with the mailbox info@shop.example."""
    app = CpanelSandbox()
    app.add_account("shop", "shop.example")
    app.state.add_mailbox("info@shop.example")
    return app


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("suspend_outgoing", "hold_outgoing", "addmail", "addforward"):
        retry_for(monkeypatch, name, RetryPolicy(max_attempts=3, min_backoff_ms=20, max_backoff_ms=50))


@pytest.mark.parametrize(("kind", "name", "args", "read"), [
    ("whm", "suspend_outgoing", {"user": "example"}, ("accountsummary", "outgoing_mail_suspended")),
    ("cpanel", "hold_outgoing", {"email": "info@shop.example"}, ("Email::list_pops_with_disk", "hold_outgoing")),
])
def test_a_panel_that_answers_ok_and_applies_nothing_ends_dead_lettered_as_not_applied_with_what_was_read(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    quick_retries: None, kind: str, name: str, args: dict[str, Any], read: tuple[str, str],
) -> None:
    # Given a panel that answers every change call OK without applying it, and a short grace window
    app: Any = shop_panel() if kind == "cpanel" else whm_with_accounts(0)
    if kind == "whm":
        app.add_account("example")
    with SandboxServer(app, faults=Faults(lie_rate=1.0)) as server:
        runtime_for(settings_for({"b1": (kind, server)}, b1={"verify_grace_s": 0.2}))
        # When the change is asked for
        add_command(redis_client, command("lie-1", name, args, backend="b1"))
        events = wait_for_terminal(redis_client, {"lie-1"})
        changes = server.stats()["changes"]
    # Then it never succeeds: each attempt is not_applied, and after its retries it is dead-lettered
    # with the state read (not changed); one change call per attempt, nothing applied
    assert [e.status for e in events if e.id == "lie-1"] == ["accepted", "retrying", "retrying", "dead_lettered"]
    final = final_of(events, "lie-1")
    assert final.error is not None and final.error.kind == "not_applied"
    call, field = read
    assert (final.details["read"]["call"], final.details["read"]["state"][field]) == (call, False)
    assert final.verified is None
    assert changes == 3 and len(app.ledger) == 0


def test_a_change_the_panel_applies_after_answering_succeeds_verified_without_a_second_change_call(
    redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
    runtime_for: Callable[..., Runtime],
) -> None:
    # Given a WHM panel that applies each change 300 ms after answering it (cPanel's queueprocd)
    whm.set_faults(Faults(apply_late_s=0.3))
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    # When an account's outgoing mail is suspended
    add_command(redis_client, command("late-1", "suspend_outgoing", {"user": "example"}))
    final = final_of(wait_for_terminal(redis_client, {"late-1"}), "late-1")
    # Then it succeeds verified, read again within the grace window, with one change call
    assert (final.status, final.verified, final.attempt) == ("succeeded", True, 1), final.error
    assert final.details["read"]["state"]["outgoing_mail_suspended"] is True
    assert final.details["read"]["reads"] >= 1
    assert whm.stats()["changes"] == 1
    assert [(c.target, c.field, c.new) for c in whm.app.ledger.changes()] == [("example", "outgoing", "suspended")]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "args", "fault"), [
    ("addmail", {"email": "new@shop.example", "password": PASSWORD, "quota": 10}, Faults(drop_after_apply_rate=1.0)),
    ("addforward", {"email": "info@shop.example", "destination": "ops@elsewhere.example"},
     Faults(drop_after_apply_rate=1.0)),
    ("addmail", {"email": "new@shop.example", "password": PASSWORD, "quota": 10},
     Faults(timeout_after_apply_rate=1.0, hang_s=1.5)),
])
def test_a_call_applied_whose_answer_was_lost_is_read_before_calling_again_and_succeeds_with_one_change(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    quick_retries: None, name: str, args: dict[str, Any], fault: Faults,
) -> None:
    # Given a cPanel panel that applies every change call, then cuts the connection (or never
    # answers in time) - and answers its reads normally
    app = shop_panel()
    with SandboxServer(app, faults=Faults(**{**fault.__dict__, "changes_only": True})) as cp1:
        runtime_for(settings_for({"cp1": ("cpanel", cp1)}, cp1={"read_timeout": 0.5}, **SEALING))
        # When the non-idempotent command runs
        add_command(redis_client, command("lost-1", name, args, backend="cp1"))
        events = wait_for_terminal(redis_client, {"lost-1"})
        changes = cp1.stats()["changes"]
    # Then its retry reads the panel first, finds the change there, and succeeds verified
    # without calling again: one change call, one change applied
    assert [e.status for e in events if e.id == "lost-1"] == ["accepted", "retrying", "succeeded"]
    final = final_of(events, "lost-1")
    assert (final.verified, final.already, final.details["read_before_resend"]) == (True, True, True)
    assert changes == 1 and len(app.ledger) == 1


def test_with_read_back_off_a_change_succeeds_unverified_and_says_why(
    redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
    runtime_for: Callable[..., Runtime],
) -> None:
    # Given a backend with read-back turned off
    runtime_for(settings_for({"whm1": ("whm", whm)}, whm1={"verify": False}))
    # When a command runs
    add_command(redis_client, command("off-1", "suspend_outgoing", {"user": "example"}))
    final = final_of(wait_for_terminal(redis_client, {"off-1"}), "off-1")
    # Then it succeeds, unverified, with the reason, and the panel was not read
    assert (final.status, final.verified) == ("succeeded", False)
    assert final.details["not_verified"] == "read-back is off for this backend"
    assert whm.stats()["reads"] == 0


def test_a_password_never_appears_in_what_the_read_back_publishes(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
) -> None:
    # Given a cPanel panel that echoes every request's parameters into its answers
    app = shop_panel()
    with SandboxServer(app, faults=Faults(echo_rate=1.0)) as cp1:
        runtime_for(settings_for({"cp1": ("cpanel", cp1)}, **SEALING))
        # When a mailbox is created with a password and read back
        add_command(redis_client, command("pw-1", "addmail", {"email": "new@shop.example", "password": PASSWORD,
                                                             "quota": 10}, backend="cp1"))
        final = final_of(wait_for_terminal(redis_client, {"pw-1"}), "pw-1")
    # Then it is verified, and no event carries the password
    assert (final.status, final.verified, final.details["read"]["state"]) == ("succeeded", True, {
        "exists": True, "suspended_outgoing": False, "hold_outgoing": False, "suspended_incoming": False,
        "suspended_login": False})
    assert all(PASSWORD not in e.to_json().decode() for e in read_events(redis_client))


class ReadingPanel:
    """A backend whose reads return ``states`` in turn (the last one repeating), or raise ``error``."""

    kind = "whm"
    name = "whm1"
    reads = whm.READS
    not_readable = whm.NOT_READABLE

    def __init__(self, states: list[dict[str, Any]], *, grace_s: float = 2.0, error: Exception | None = None) -> None:
        self.config = BackendConfig(name="whm1", kind="whm", url="https://whm1.example:2087", verify_grace_s=grace_s)
        self.states, self.error, self.read_count = states, error, 0

    def read(self, read: Any, args: Any) -> dict[str, Any]:
        self.read_count += 1
        if self.error is not None:
            raise self.error
        return self.states[min(self.read_count, len(self.states)) - 1]


class FakeClock:
    """Time that moves only when the verifier sleeps."""

    def __init__(self) -> None:
        self.now, self.sleeps = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


SUSPEND = validate_command({"command": "suspend_outgoing", "backend": "whm1", "args": {"user": "example"},
                            "producer": "billing"})
NOT_YET, DONE = {"exists": True, "outgoing_mail_suspended": False}, {"exists": True, "outgoing_mail_suspended": True}


def test_a_change_shown_on_the_third_read_is_verified_after_growing_pauses_within_the_grace_window() -> None:
    panel, clock = ReadingPanel([NOT_YET, NOT_YET, DONE]), FakeClock()
    result = Verifier(sleep=clock.sleep, clock=lambda: clock.now).after_change(panel, SUSPEND, PanelResult())  # type: ignore[arg-type]
    assert (result.verified, result.details["read"]["reads"], panel.read_count) == (True, 3, 3)
    assert clock.sleeps == [0.05, 0.1]


def test_the_grace_window_bounds_the_reads_and_then_the_change_is_not_applied() -> None:
    panel, clock = ReadingPanel([NOT_YET], grace_s=1.0), FakeClock()
    with pytest.raises(NotApplied) as raised:
        Verifier(sleep=clock.sleep, clock=lambda: clock.now).after_change(panel, SUSPEND, PanelResult())  # type: ignore[arg-type]
    # every pause fits in the window, and the last read came when it ran out
    assert sum(clock.sleeps) == pytest.approx(1.0) and clock.sleeps[-1] <= clock.sleeps[-2] * 2
    assert raised.value.read == {"call": "accountsummary", "state": NOT_YET, "reads": panel.read_count}
    assert raised.value.kind == "not_applied"


def test_a_read_that_fails_leaves_the_change_succeeded_but_unverified_with_the_reason() -> None:
    panel = ReadingPanel([], error=PanelUnavailable("whm1: server error (HTTP 500)"))
    result = Verifier().after_change(panel, SUSPEND, PanelResult(message="OK"))  # type: ignore[arg-type]
    assert result.verified is False
    assert result.details["not_verified"] == "the read-back failed (panel_unavailable): whm1: server error (HTTP 500)"
