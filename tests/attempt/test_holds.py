"""Holds end to end: one party's release never lifts another's suspension; operators' forced release."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import redis
from click.testing import CliRunner

from tests.conftest import WHM_TOKEN, add_command, wait_for_terminal
from workers.attempt.holds import holds_of
from workers.cli.holds import holds as holds_cli
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.sandbox.whm import WhmSandbox
from workers.settings import Settings


def start(runtime_for: Callable[..., Runtime], settings: Settings, server: SandboxServer) -> Runtime:
    return runtime_for(settings)


def suspension(cid: str, name: str, producer: str, at: datetime, reason: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {"id": cid, "command": name, "backend": "whm1", "args": {"user": "example"},
                               "producer": producer, "issued_at": at.isoformat().replace("+00:00", "Z")}
    if reason:
        body["reason"] = reason
    return body


def cli_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment: the worker's backends file, plus operator ``ops`` who may release holds."""
    assert settings.redis_url
    config = tmp_path / "mailops.toml"
    if "[operators.ops]" not in config.read_text():
        config.write_text(config.read_text() + '[operators.ops]\nkey_env = "KEY_OPS"\n'
                                               'actions = ["holds.release"]\nreasons = ["*"]\n')
    return {"MAILOPS_REDIS_URL": settings.redis_url, "MAILOPS_CONFIG": str(config), "TOKEN_WHM1": WHM_TOKEN,
            "KEY_OPS": "ops-key-0123456789abcdef"}


def test_a_billing_unsuspend_leaves_an_abuse_suspension_in_place_and_says_why(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    whm: SandboxServer, tmp_path: Path,
) -> None:
    # given: abuse detection suspended outgoing mail of ``example``
    settings = settings_for({"whm1": ("whm", whm)})
    start(runtime_for, settings, whm)
    now = datetime.now(UTC)
    add_command(redis_client, suspension("abuse-1", "suspend_outgoing", "abuse-detector", now - timedelta(minutes=2), "abuse"))
    wait_for_terminal(redis_client, {"abuse-1"})
    # when: billing, whose customer paid, unsuspends
    add_command(redis_client, suspension("billing-1", "unsuspend_outgoing", "billing", now - timedelta(minutes=1)))
    events = wait_for_terminal(redis_client, {"billing-1"})
    # then: the mailbox stays suspended, and the event names the hold that keeps it so
    app = whm.app
    assert isinstance(app, WhmSandbox)
    assert app.state.accounts["example"].outgoing == "suspended"
    done = next(e for e in events if e.id == "billing-1" and e.terminal)
    assert done.status == "held"  # terminal, not an error, and not "succeeded": the mailbox is not unsuspended
    assert done.details["holds"]["panel_called"] is False
    assert done.details["holds"]["after"] == ["abuse"]
    assert "held by abuse" in done.details["holds"]["why"]
    first = next(e for e in events if e.id == "abuse-1" and e.terminal)
    assert first.details["holds"]["added"] == "abuse"
    # and: ``mailops holds show`` tells a person who holds it
    result = CliRunner().invoke(holds_cli, ["show", "example"], env=cli_env(settings, tmp_path))
    assert result.exit_code == 0, result.output
    assert "abuse: by abuse-detector (command abuse-1" in result.output


def test_an_operator_forced_release_removes_only_the_named_hold_and_is_audited(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    whm: SandboxServer, tmp_path: Path,
) -> None:
    # given: abuse and billing both hold outgoing mail of ``example``
    settings = settings_for({"whm1": ("whm", whm)})
    start(runtime_for, settings, whm)
    now = datetime.now(UTC)
    add_command(redis_client, suspension("abuse-1", "suspend_outgoing", "abuse-detector", now - timedelta(minutes=3), "abuse"))
    add_command(redis_client, suspension("billing-1", "suspend_outgoing", "billing", now - timedelta(minutes=2)))
    wait_for_terminal(redis_client, {"abuse-1", "billing-1"})
    env = cli_env(settings, tmp_path)
    # when: an operator releases without --force, then with it, the abuse hold
    refused = CliRunner().invoke(holds_cli, ["release", "example", "--aspect", "outgoing", "--reason", "abuse"], env=env)
    released = CliRunner().invoke(
        holds_cli, ["release", "example", "--aspect", "outgoing", "--reason", "abuse", "--force"], env=env)
    # then: only the forced one issued an unsuspend; it removed abuse's hold and billing's remains
    assert refused.exit_code == 2
    assert released.exit_code == 0, released.output
    events = wait_for_terminal(redis_client, count=3)
    release = next(e for e in events if e.terminal and str(e.id).startswith("release-"))
    assert (release.status, release.producer) == ("held", "operator.ops")  # billing's hold remains
    assert release.details["holds"]["removed"] == "abuse"
    assert release.details["holds"]["after"] == ["billing"]
    assert set(holds_of(redis_client, settings.keys, "whm1", "example", "outgoing")) == {"billing"}
    app = whm.app
    assert isinstance(app, WhmSandbox)
    assert app.state.accounts["example"].outgoing == "suspended"
    audit = [orjson.loads(fields[b"body"]) for _id, fields in redis_client.xrange(settings.keys.audit)]
    assert [(a["event"], a["reason"], a["hold"]["producer"]) for a in audit if a["event"] == "forced_release"] == [
        ("forced_release", "abuse", "abuse-detector")]
    assert [(a["operator"], a["action"], a["command"]) for a in audit if a["event"] == "operator_action"] == [
        ("ops", "holds.release", release.id)]


def test_the_holds_index_names_a_target_while_any_reason_holds_it_and_forgets_it_when_the_last_is_lifted(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    whm: SandboxServer,
) -> None:
    settings = settings_for({"whm1": ("whm", whm)})
    start(runtime_for, settings, whm)
    now = datetime.now(UTC)
    held = settings.keys.holds("whm1", "example", "outgoing")
    add_command(redis_client, suspension("ix-abuse", "suspend_outgoing", "abuse-detector", now - timedelta(minutes=3), "abuse"))
    add_command(redis_client, suspension("ix-bill", "suspend_outgoing", "billing", now - timedelta(minutes=2)))
    wait_for_terminal(redis_client, {"ix-abuse", "ix-bill"})
    assert [m.decode() for m in redis_client.zrange(settings.keys.holds_index, 0, -1)] == [held]
    add_command(redis_client, suspension("ix-unbill", "unsuspend_outgoing", "billing", now - timedelta(minutes=1)))
    wait_for_terminal(redis_client, {"ix-unbill"})
    assert redis_client.zcard(settings.keys.holds_index) == 1  # abuse still holds it
    add_command(redis_client, suspension("ix-unabuse", "unsuspend_outgoing", "abuse-detector", now, "abuse"))
    wait_for_terminal(redis_client, {"ix-unabuse"})
    assert redis_client.zcard(settings.keys.holds_index) == 0
