"""Drift check: the panels' actual suspension state against the holds, and converging it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from click.testing import CliRunner

from tests.conftest import WHM_TOKEN, add_command, wait_for_terminal
from workers.backends.registry import build_backends
from workers.cli.reconcile import reconcile as reconcile_cli
from workers.holds import holds_of
from workers.reconcile import check
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.sandbox.whm import WhmSandbox, ok
from workers.settings import Settings


def with_account_summary(app: WhmSandbox) -> None:
    """Teach this sandbox instance WHM's read-only ``accountsummary`` (the shipped sandbox lacks it)."""

    def accountsummary(params: dict[str, str]) -> dict[str, Any]:
        account = app.state.accounts[params["user"]]
        return ok("accountsummary", {"acct": [{"user": account.user,
                                                "outgoing_mail_suspended": int(account.outgoing == "suspended")}]})

    app.functions["accountsummary"] = accountsummary


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
    with_account_summary(app)
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
