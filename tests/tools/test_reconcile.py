"""Drift check: the panels' actual state against the holds and the last commands, and converging it,
on every readable aspect and across the fleet; what cannot be read is reported unknown, never as a match."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner

from schemas.fields import SEALED_PREFIX
from tests.conftest import WHM_TOKEN, add_command, read_events, wait_for_terminal, wait_until
from workers.attempt.holds import holds_of
from workers.backends.registry import build_backends
from workers.cli import reconcile as reconcile_cli_module
from workers.cli.acting import issue
from workers.cli.exit_codes import RET_FAILED, RET_OK, RET_UNKNOWN
from workers.cli.reconcile import reconcile as reconcile_cli
from workers.ingest.signing import sign
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.sandbox.cpanel import CpanelSandbox
from workers.sandbox.state import fingerprint
from workers.sandbox.whm import WhmSandbox
from workers.settings import Settings
from workers.tools import reconcile as reconcile_module
from workers.tools.reconcile import check
from workers.tools.reconcile_service import DriftGauges, run_rounds, seconds_of


def suspension(cid: str, name: str, user: str, at: datetime, reason: str) -> dict[str, object]:
    return {"id": cid, "command": name, "backend": "whm1", "args": {"user": user}, "producer": reason,
            "reason": reason, "issued_at": at.isoformat().replace("+00:00", "Z")}


def test_reconcile_reports_panels_that_differ_from_the_holds_and_apply_converges_them(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    whm: SandboxServer, tmp_path: Path,
) -> None:
    # given: abuse holds ``example`` suspended and ``other`` was suspended then released
    app = whm.app
    assert isinstance(app, WhmSandbox)
    settings = settings_for({"whm1": ("whm", whm)})
    runtime_for(settings)
    at = datetime.now(UTC) - timedelta(minutes=5)
    add_command(redis_client, suspension("a1", "suspend_outgoing", "example", at, "abuse"))
    add_command(redis_client, suspension("a2", "suspend_outgoing", "other", at, "abuse"))
    add_command(redis_client, suspension("a3", "unsuspend_outgoing", "other", at + timedelta(minutes=1), "abuse"))
    wait_for_terminal(redis_client, {"a1", "a2", "a3"})
    backends = build_backends(settings.backends)
    assert {f.target: f.state for f in check(redis_client, settings.keys, backends)} == {"example": "ok", "other": "ok"}
    # and: someone changed both accounts on the panel by hand
    with app.state.lock:
        app.state.accounts["example"].outgoing = "active"
        app.state.accounts["other"].outgoing = "suspended"
    # and: an operator who may apply reconciliations of any hold reason
    config = tmp_path / "mailops.toml"
    config.write_text(config.read_text() + '[operators.ops]\nkey_env = "KEY_OPS"\n'
                                           'actions = ["reconcile.apply"]\nreasons = ["*"]\n')
    env = {"MAILOPS_REDIS_URL": str(settings.redis_url), "MAILOPS_CONFIG": str(config), "TOKEN_WHM1": WHM_TOKEN,
           "KEY_OPS": "ops-key-0123456789abcdef"}
    # when: reconcile checks, then applies (and waits for the converging commands)
    report = CliRunner().invoke(reconcile_cli, ["--backend", "whm1"], env=env)
    applied = CliRunner().invoke(reconcile_cli, ["--apply"], env=env)
    # then: the check named both differences; apply issued commands that restored what the holds say
    assert report.exit_code == 1, report.output
    assert "drift   example outgoing on whm1: holds say suspended (abuse), panel says active" in report.output
    assert "drift   other outgoing on whm1: holds say active (no hold), panel says suspended" in report.output
    assert applied.exit_code == 0, applied.output
    wait_for_terminal(redis_client, count=5)
    assert app.state.accounts["example"].outgoing == "suspended"
    assert app.state.accounts["other"].outgoing == "active"
    assert set(holds_of(redis_client, settings.keys, "whm1", "example", "outgoing")) == {"abuse"}
    assert {f.state for f in check(redis_client, settings.keys, backends)} == {"ok"}
    for backend in backends.values():
        backend.close()


#: Who acts in these tests: the abuse detector (signs its suspensions) and an operator who may
#: apply reconciliations of any reason; keys as the environment gives them.
SIGNERS = ('[producers.abuse]\nkey_env = "KEY_ABUSE"\ncommands = ["*"]\nbackends = ["*"]\nreasons = ["abuse"]\n'
           '[operators.ops]\nkey_env = "KEY_OPS"\nactions = ["reconcile.apply"]\nreasons = ["*"]\n')
KEYS = {"KEY_ABUSE": "abuse-key-0123456789abcdef", "KEY_OPS": "ops-key-0123456789abcdef"}


def signed_world(settings: Settings, tmp_path: Path, tokens: dict[str, str]) -> tuple[Settings, dict[str, str]]:
    """Settings with producer signatures at their default (required) and the environment of a
    ``mailops reconcile`` run on the same backends file."""
    config = tmp_path / "mailops.toml"
    config.write_text(config.read_text() + SIGNERS)
    env = {"MAILOPS_REDIS_URL": str(settings.redis_url), "MAILOPS_CONFIG": str(config), **KEYS, **tokens}
    signed = Settings.from_env(env)
    assert signed.require_signatures
    return signed, env


def abuse_signed(body: dict[str, object]) -> dict[str, object]:
    return {**body, "producer": "abuse", "signature": sign(body | {"producer": "abuse"}, KEYS["KEY_ABUSE"].encode())}


def shop_on_cpanel(*mailboxes: str) -> CpanelSandbox:
    """A cPanel sandbox with the account ``shop`` (``shop.example``) and these mailboxes."""
    app = CpanelSandbox()
    app.add_account("shop", "shop.example")
    for address in mailboxes:
        app.state.add_mailbox(address)
    return app


def mailbox_suspension(cid: str, name: str, email: str, at: datetime, backend: str = "cp1") -> dict[str, object]:
    return {"id": cid, "command": name, "backend": backend, "args": {"email": email}, "producer": "abuse",
            "reason": "abuse", "issued_at": at.isoformat().replace("+00:00", "Z")}


def test_drift_made_by_hand_on_each_readable_mailbox_aspect_is_found_fixed_by_apply_and_then_none(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    tmp_path: Path,
) -> None:
    # Given a cPanel mailbox whose outgoing mail, incoming mail and login abuse suspended
    app = shop_on_cpanel("info@shop.example")
    with SandboxServer(app) as cp1:
        settings, env = signed_world(settings_for({"cp1": ("cpanel", cp1)}), tmp_path, {"TOKEN_CP1": app.token})
        runtime_for(settings)
        at = datetime.now(UTC) - timedelta(minutes=5)
        ids = {f"m-{aspect}" for aspect in ("outgoing", "incoming", "login")}
        for aspect in ("outgoing", "incoming", "login"):
            add_command(redis_client, abuse_signed(
                mailbox_suspension(f"m-{aspect}", f"suspend_{aspect}", "info@shop.example", at)))
        assert {e.status for e in wait_for_terminal(redis_client, ids) if e.terminal} == {"succeeded"}
        assert CliRunner().invoke(reconcile_cli, [], env=env).exit_code == RET_OK
        # And someone lifted all three on the panel by hand
        mailbox = app.state.mailboxes["info@shop.example"]
        with app.state.lock:
            mailbox.outgoing = mailbox.incoming = mailbox.login = "active"
        # When reconcile checks, applies (signed by the operator, signatures on), and checks again
        report = CliRunner().invoke(reconcile_cli, [], env=env)
        applied = CliRunner().invoke(reconcile_cli, ["--apply"], env=env)
        wait_for_terminal(redis_client, count=6)
        after = CliRunner().invoke(reconcile_cli, [], env=env)
    # Then the check found each aspect adrift (exit 1), apply restored them, and none is left
    assert report.exit_code == RET_FAILED, report.output
    for aspect in ("outgoing", "incoming", "login"):
        assert f"drift   info@shop.example {aspect} on cp1: holds say suspended (abuse), panel says active" in report.output
    assert applied.exit_code == RET_OK, applied.output
    assert (mailbox.outgoing, mailbox.incoming, mailbox.login) == ("suspended", "suspended", "suspended")
    assert after.exit_code == RET_OK and "3 checked, 0 differ, 0 unknown" in after.output


def test_a_target_that_cannot_be_read_is_reported_unknown_with_its_own_exit_code(
    redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
    runtime_for: Callable[..., Runtime], tmp_path: Path,
) -> None:
    # Given a WHM account whose incoming mail is suspended account-wide (no published read shows it)
    settings, env = signed_world(settings_for({"whm1": ("whm", whm)}), tmp_path, {"TOKEN_WHM1": WHM_TOKEN})
    runtime_for(settings)
    add_command(redis_client, abuse_signed(suspension("in-1", "suspend_incoming", "example", datetime.now(UTC), "abuse")))
    wait_for_terminal(redis_client, {"in-1"})
    # When reconcile checks
    report = CliRunner().invoke(reconcile_cli, [], env=env)
    # Then the target is unknown, not in agreement, and the exit code says so
    assert report.exit_code == RET_UNKNOWN, report.output
    assert "unknown example incoming on whm1" in report.output
    assert "1 checked, 0 differ, 1 unknown" in report.output


def test_the_same_account_on_two_backends_with_drift_on_one_is_named_and_fixed_there_only(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    tmp_path: Path,
) -> None:
    # Given account ``example`` on two WHM servers, suspended by abuse on both
    apps = {name: WhmSandbox(token=WHM_TOKEN) for name in ("whm1", "whm2")}
    for app in apps.values():
        app.add_account("example")
    with SandboxServer(apps["whm1"]) as whm1, SandboxServer(apps["whm2"]) as whm2:
        settings, env = signed_world(settings_for({"whm1": ("whm", whm1), "whm2": ("whm", whm2)}), tmp_path,
                                     {"TOKEN_WHM1": WHM_TOKEN, "TOKEN_WHM2": WHM_TOKEN})
        runtime_for(settings)
        at = datetime.now(UTC) - timedelta(minutes=5)
        for name in ("whm1", "whm2"):
            add_command(redis_client, abuse_signed(
                {**suspension(f"s-{name}", "suspend_outgoing", "example", at, "abuse"), "backend": name}))
        wait_for_terminal(redis_client, {"s-whm1", "s-whm2"})
        # And someone lifted it by hand on whm2 only
        with apps["whm2"].state.lock:
            apps["whm2"].state.accounts["example"].outgoing = "active"
        whm1.reset_stats()
        # When reconcile checks and applies
        report = CliRunner().invoke(reconcile_cli, [], env=env)
        applied = CliRunner().invoke(reconcile_cli, ["--apply"], env=env)
        wait_for_terminal(redis_client, count=3)
        whm1_changes = whm1.stats()["changes"]
    # Then it names whm2 alone, fixes whm2, and makes no change call on whm1
    assert report.exit_code == RET_FAILED, report.output
    assert "drift   example outgoing on whm2" in report.output
    assert "ok      example outgoing on whm1" in report.output
    assert applied.exit_code == RET_OK, applied.output
    assert apps["whm2"].state.accounts["example"].outgoing == "suspended"
    assert whm1_changes == 0


def test_the_reconcile_service_publishes_drift_found_per_differing_target_and_sets_the_drift_gauge(
    redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
    runtime_for: Callable[..., Runtime],
) -> None:
    # Given abuse holds ``example`` suspended, and someone lifted it on the panel by hand
    settings = settings_for({"whm1": ("whm", whm)})
    runtime_for(settings)
    add_command(redis_client, suspension("svc-1", "suspend_outgoing", "example", datetime.now(UTC), "abuse"))
    wait_for_terminal(redis_client, {"svc-1"})
    app = whm.app
    assert isinstance(app, WhmSandbox)
    with app.state.lock:
        app.state.accounts["example"].outgoing = "active"
    # When the service runs its rounds for a moment
    backends = build_backends(settings.backends)
    gauges, stop = DriftGauges(), threading.Event()
    service = threading.Thread(target=run_rounds, args=(redis_client, settings, backends),
                               kwargs={"every_s": 0.05, "gauges": gauges, "stop": stop})
    service.start()
    try:
        wait_until(lambda: any(e.status == "drift_found" for e in read_events(redis_client)))
    finally:
        stop.set()
        service.join()
        for backend in backends.values():
            backend.close()
    # Then each round published a drift_found event naming the backend, target and both states,
    # and the gauge counts the target as drift
    found = next(e for e in read_events(redis_client) if e.status == "drift_found")
    assert (found.backend, found.target, found.terminal) == ("whm1", "example", False)
    assert found.details == {"aspect": "outgoing", "expected": "suspended", "panel": "active", "held_by": ["abuse"]}
    assert gauges.registry.get_sample_value("mailops_reconcile_targets", {"backend": "whm1", "state": "drift"}) == 1


def test_every_takes_a_period_in_seconds_minutes_hours_or_days() -> None:
    assert [seconds_of(p) for p in ("90s", "30m", "1h", "1d", "5")] == [90, 1800, 3600, 86400, 5]
    with pytest.raises(ValueError, match="not a period"):
        seconds_of("hourly")


def signed_command(cid: str, name: str, args: dict[str, object], at: datetime, backend: str = "cp1") -> dict[str, object]:
    return abuse_signed({"id": cid, "command": name, "backend": backend, "args": args,
                         "issued_at": at.isoformat().replace("+00:00", "Z")})


def test_drift_made_by_hand_on_each_readable_desired_state_aspect_is_found_fixed_by_apply_and_then_none(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (the re-created mailbox's random password made known to the test, and what the CLI sends recorded)
    monkeypatch.setattr(reconcile_module.secrets, "token_urlsafe", lambda n: "Known-new-pass-77")
    sent: list[dict[str, object]] = []

    def recording_issue(*args: Any, **kwargs: Any) -> Any:
        producer, bodies = issue(*args, **kwargs)
        sent.extend(bodies)
        return producer, bodies

    monkeypatch.setattr(reconcile_cli_module, "issue", recording_issue)
    # Given a cPanel account where mailops created a mailbox, deleted another, added a forwarder,
    # published SPF and DKIM and held a mailbox's outgoing mail
    app = shop_on_cpanel("info@shop.example", "old@shop.example")
    with SandboxServer(app) as cp1:
        sealing = base64.b64encode(os.urandom(64)).decode()
        settings, env = signed_world(settings_for({"cp1": ("cpanel", cp1)}), tmp_path,
                                     {"TOKEN_CP1": app.token, "MAILOPS_SEALING_KEY": sealing})
        runtime_for(settings)
        at = datetime.now(UTC) - timedelta(minutes=5)
        commands = {
            "d-addmail": ("addmail", {"email": "new@shop.example", "password": "Fresh-pass-42", "quota": 100}),
            "d-delmail": ("delmail", {"email": "old@shop.example"}),
            "d-addforward": ("addforward", {"email": "info@shop.example", "destination": "keep@elsewhere.example"}),
            "d-onspf": ("onspf", {"domain": "shop.example"}),
            "d-ondkim": ("ondkim", {"domain": "shop.example"}),
            "d-hold": ("hold_outgoing", {"email": "info@shop.example"}),
        }
        for cid, (name, args) in commands.items():
            add_command(redis_client, signed_command(cid, name, args, at))
        ended = [e for e in wait_for_terminal(redis_client, set(commands)) if e.terminal]
        assert {e.status for e in ended} == {"succeeded"}, [(e.id, e.error) for e in ended if e.status != "succeeded"]
        before = CliRunner().invoke(reconcile_cli, [], env=env)
        # And then someone undid each change on the panel by hand
        state = app.state
        with state.lock:
            del state.mailboxes["new@shop.example"]
            state.add_mailbox("old@shop.example")
            state.forwarders.clear()
            state.domains["shop.example"].spf = state.domains["shop.example"].dkim = False
            state.mailboxes["info@shop.example"].hold = False
        # When reconcile checks, applies (signed by the operator, signatures on), and checks again
        report = CliRunner().invoke(reconcile_cli, [], env=env)
        applied = CliRunner().invoke(reconcile_cli, ["--apply"], env=env)
        after = CliRunner().invoke(reconcile_cli, [], env=env)
    # Then all agreed at first, the check found each aspect adrift (exit 1), apply restored them, and none is left
    assert before.exit_code == RET_OK and "6 checked, 0 differ, 0 unknown" in before.output, before.output
    assert report.exit_code == RET_FAILED, report.output
    for target, aspect, name in (("new@shop.example", "mailbox", "addmail"), ("old@shop.example", "mailbox", "delmail"),
                                 ("info@shop.example", "forwarder", "addforward"), ("shop.example", "spf", "onspf"),
                                 ("shop.example", "dkim", "ondkim"), ("info@shop.example", "hold", "hold_outgoing")):
        assert f"drift   {target} {aspect} on cp1: last applied {name}, panel shows otherwise" in report.output
    assert applied.exit_code == RET_OK, applied.output
    assert "new@shop.example" in state.mailboxes and "old@shop.example" not in state.mailboxes
    assert state.forwarders_of("info@shop.example") == ["keep@elsewhere.example"]
    assert state.domains["shop.example"].spf and state.domains["shop.example"].dkim
    assert state.mailboxes["info@shop.example"].hold
    assert after.exit_code == RET_OK and "6 checked, 0 differ, 0 unknown" in after.output, after.output
    # And the re-created mailbox's new password rests nowhere in plain text: not in Redis, not in the output
    # (the new password was sealed before it was sent, the panel has it, and it is printed nowhere)
    (readded,) = [body for body in sent if body["command"] == "addmail"]
    assert str(readded["args"]["password"]).startswith(SEALED_PREFIX)  # type: ignore[index]
    assert state.mailboxes["new@shop.example"].password == fingerprint("Known-new-pass-77")
    assert "Known-new-pass-77" not in applied.output + report.output + after.output
    dump = b"".join(redis_client.dump(k) or b"" for k in redis_client.scan_iter(count=1000))
    assert b"Known-new-pass-77" not in dump and b"Fresh-pass-42" not in dump


def test_drift_on_a_whm_accounts_forward_destination_and_outgoing_hold_is_found_and_fixed(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    tmp_path: Path,
) -> None:
    # Given a WHM account whose mail mailops forwards elsewhere and whose outgoing mail it holds
    app = WhmSandbox(token=WHM_TOKEN)
    app.add_account("shop")
    account = app.state.accounts["shop"]
    with SandboxServer(app) as whm1:
        settings, env = signed_world(settings_for({"whm1": ("whm", whm1)}), tmp_path, {"TOKEN_WHM1": WHM_TOKEN})
        runtime_for(settings)
        at = datetime.now(UTC) - timedelta(minutes=5)
        commands = {"w-forward": ("set_forward_destination", {"user": "shop", "forward_to": ["ops@elsewhere.example"]}),
                    "w-hold": ("hold_outgoing", {"user": "shop"})}
        for cid, (name, args) in commands.items():
            add_command(redis_client, signed_command(cid, name, args, at, backend="whm1"))
        ended = [e for e in wait_for_terminal(redis_client, set(commands)) if e.terminal]
        assert {e.status for e in ended} == {"succeeded"}, [(e.id, e.error) for e in ended]
        # And someone cleared both on the panel by hand
        with app.state.lock:
            account.forward_to, account.hold = "", False
        # When reconcile checks, applies as the operator, and checks again
        report = CliRunner().invoke(reconcile_cli, [], env=env)
        applied = CliRunner().invoke(reconcile_cli, ["--apply"], env=env)
        after = CliRunner().invoke(reconcile_cli, [], env=env)
    # Then both were found adrift on whm1 (exit 1), restored, and none is left
    assert report.exit_code == RET_FAILED, report.output
    assert "drift   shop forward_destination on whm1: last applied set_forward_destination" in report.output
    assert "drift   shop hold on whm1: last applied hold_outgoing" in report.output
    assert applied.exit_code == RET_OK, applied.output
    assert (account.forward_to, account.hold) == ("ops@elsewhere.example", True)
    assert after.exit_code == RET_OK and "2 checked, 0 differ, 0 unknown" in after.output, after.output
