"""One fleet, many servers: a target's identity is (backend, target, aspect)."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import redis
from click.testing import CliRunner
from pydantic import SecretStr

from schemas.commands import validate_command
from tests.clock import iso
from tests.conftest import WHM_TOKEN, add_command, wait_for_terminal
from workers.attempt.holds import holds_of
from workers.attempt.ordering import OrderStamp, TargetGuard
from workers.backends.registry import build_backends
from workers.cli.holds import holds as holds_cli
from workers.errors import TargetBusy
from workers.ingest.routing import RouteMap
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.sandbox.whm import WhmSandbox
from workers.settings import Settings
from workers.store.legacy_keys import upgrade
from workers.tools.reconcile import check


@pytest.fixture
def fleet() -> Iterator[tuple[SandboxServer, SandboxServer]]:
    """Two WHM servers that both hold an account ``shop`` (domain ``shop.example``)."""
    apps = [WhmSandbox(token=WHM_TOKEN, name=name) for name in ("whm1", "whm2")]
    for app in apps:
        app.add_account("shop")
    with SandboxServer(apps[0]) as first, SandboxServer(apps[1]) as second:
        yield first, second


def whm_app(server: SandboxServer) -> WhmSandbox:
    app = server.app
    assert isinstance(app, WhmSandbox)
    return app


def body(cid: str, name: str, backend: str, args: dict[str, object], producer: str, at: datetime,
         reason: str | None = None) -> dict[str, object]:
    command: dict[str, object] = {"id": cid, "command": name, "backend": backend, "args": args, "producer": producer,
                                  "issued_at": iso(at)}
    if reason:
        command["reason"] = reason
    return command


def cli_env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The CLI's environment: the worker's Redis and backends, and operator ``ops`` who may release abuse holds."""
    assert settings.redis_url
    config = tmp_path / "mailops.toml"
    if "[operators.ops]" not in config.read_text():
        config.write_text(config.read_text() + '[operators.ops]\nkey_env = "KEY_OPS"\nactions = ["holds.release"]\n'
                                                'reasons = ["abuse"]\n')
    return {"MAILOPS_REDIS_URL": settings.redis_url, "MAILOPS_CONFIG": str(config),
            "TOKEN_WHM1": WHM_TOKEN, "TOKEN_WHM2": WHM_TOKEN, "KEY_OPS": "ops-key-0123456789abcdef"}


def test_a_billing_unsuspend_on_one_server_is_not_held_by_an_abuse_suspension_of_the_same_account_name_on_another(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    fleet: tuple[SandboxServer, SandboxServer], tmp_path: Path,
) -> None:
    # given: abuse suspended outgoing mail of ``shop`` on whm1
    whm1, whm2 = fleet
    settings = settings_for({"whm1": ("whm", whm1), "whm2": ("whm", whm2)})
    runtime_for(settings)
    now = datetime.now(UTC)
    add_command(redis_client, body("abuse-1", "suspend_outgoing", "whm1", {"user": "shop"}, "abuse-detector",
                                   now - timedelta(minutes=3), "abuse"))
    wait_for_terminal(redis_client, {"abuse-1"})
    # when: billing suspends, then unsuspends, ``shop`` on whm2
    add_command(redis_client, body("bill-1", "suspend_outgoing", "whm2", {"user": "shop"}, "billing",
                                   now - timedelta(minutes=2)))
    wait_for_terminal(redis_client, {"bill-1"})
    add_command(redis_client, body("bill-2", "unsuspend_outgoing", "whm2", {"user": "shop"}, "billing",
                                   now - timedelta(minutes=1)))
    events = wait_for_terminal(redis_client, {"bill-2"})
    # then: whm2's shop is unsuspended by a panel call, whm1's stays suspended
    done = next(e for e in events if e.id == "bill-2" and e.terminal)
    assert done.status == "succeeded"
    assert done.details["holds"]["panel_called"] is True
    assert (done.backend, done.target) == ("whm2", "shop")
    assert [(c.target, c.field, c.new, c.function) for c in whm_app(whm2).ledger.changes()] == [
        ("shop", "outgoing", "suspended", "suspend_outgoing_email"),
        ("shop", "outgoing", "active", "unsuspend_outgoing_email"),
    ]
    assert whm_app(whm2).state.accounts["shop"].outgoing == "active"
    assert whm_app(whm1).state.accounts["shop"].outgoing == "suspended"
    # and: every event of every command names its backend and target
    assert all((e.backend, e.target) in {("whm1", "shop"), ("whm2", "shop")} for e in events)
    # and: ``mailops holds show`` lists the two servers apart
    shown = CliRunner().invoke(holds_cli, ["show", "shop"], env=cli_env(settings, tmp_path))
    assert shown.exit_code == 0, shown.output
    assert "shop on whm1 outgoing: suspended, held by 1 reason(s)" in shown.output
    assert "abuse: by abuse-detector (command abuse-1" in shown.output
    assert "whm2" not in shown.output
    as_json = CliRunner().invoke(holds_cli, ["show", "shop", "--json"], env=cli_env(settings, tmp_path))
    assert set(orjson.loads(as_json.output)["backends"]) == {"whm1"}
    # and: reconcile checks each server's shop against that server's holds
    backends = build_backends(settings.backends)
    try:
        findings = {(f.backend, f.target): f for f in check(redis_client, settings.keys, backends)}
    finally:
        for backend in backends.values():
            backend.close()
    assert {key: (f.expected, f.state) for key, f in findings.items()} == {
        ("whm1", "shop"): (True, "ok"), ("whm2", "shop"): (False, "ok")}


def test_the_same_account_name_on_two_servers_takes_two_turns_at_once(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], fleet: tuple[SandboxServer, SandboxServer],
) -> None:
    # given: the ordering gate, and a suspend of ``shop`` for each server
    settings = settings_for({"whm1": ("whm", fleet[0]), "whm2": ("whm", fleet[1])})
    guard = TargetGuard(redis_client, settings.keys)
    at = datetime.now(UTC)
    first, second = (validate_command(body(f"s-{b}", "suspend_outgoing", b, {"user": "shop"}, "abuse-detector", at, "abuse"))
                     for b in ("whm1", "whm2"))
    # when: both take their turn while neither has finished
    turns = [guard.take(first, "1-0"), guard.take(second, "2-0")]
    # then: neither waits for the other's lease (a second command on whm1's shop would)
    assert [t.order_key for t in turns] == [settings.keys.order(b, "shop", "outgoing") for b in ("whm1", "whm2")]
    with pytest.raises(TargetBusy):
        guard.take(validate_command(body("s-again", "suspend_outgoing", "whm1", {"user": "shop"}, "abuse-detector",
                                         at, "abuse")), "3-0")
    for turn in turns:
        guard.release(turn)


def test_releasing_a_hold_of_a_target_held_on_several_backends_needs_the_backend_named(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    fleet: tuple[SandboxServer, SandboxServer], tmp_path: Path,
) -> None:
    # given: abuse holds ``shop`` on both servers
    whm1, whm2 = fleet
    settings = settings_for({"whm1": ("whm", whm1), "whm2": ("whm", whm2)})
    runtime_for(settings)
    now = datetime.now(UTC)
    for backend in ("whm1", "whm2"):
        add_command(redis_client, body(f"abuse-{backend}", "suspend_outgoing", backend, {"user": "shop"},
                                       "abuse-detector", now - timedelta(minutes=1), "abuse"))
    wait_for_terminal(redis_client, {"abuse-whm1", "abuse-whm2"})
    env = cli_env(settings, tmp_path)
    shown = CliRunner().invoke(holds_cli, ["show", "shop"], env=env)
    assert "shop on whm1 outgoing" in shown.output and "shop on whm2 outgoing" in shown.output
    # when: an operator releases without naming a backend, then naming whm2
    vague = CliRunner().invoke(holds_cli, ["release", "shop", "--aspect", "outgoing", "--reason", "abuse", "--force"],
                               env=env)
    named = CliRunner().invoke(holds_cli, ["release", "shop", "--aspect", "outgoing", "--reason", "abuse", "--force",
                                           "--backend", "whm2"], env=env)
    # then: the first is refused with the backends listed; the second releases whm2's hold only
    assert vague.exit_code == 2
    assert "several backends (whm1, whm2)" in vague.output
    assert named.exit_code == 0, named.output
    wait_for_terminal(redis_client, count=3)
    assert set(holds_of(redis_client, settings.keys, "whm1", "shop", "outgoing")) == {"abuse"}
    assert holds_of(redis_client, settings.keys, "whm2", "shop", "outgoing") == {}
    assert whm_app(whm1).state.accounts["shop"].outgoing == "suspended"
    assert whm_app(whm2).state.accounts["shop"].outgoing == "active"


def test_a_mailbox_added_on_the_new_server_is_not_superseded_by_a_later_delete_on_the_old_one(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    fleet: tuple[SandboxServer, SandboxServer],
) -> None:
    # given: a migration of shop.example from whm1 (old) to whm2 (new); info@ exists on the old one
    old, new = fleet
    whm_app(old).state.add_mailbox("info@shop.example")
    sealing_key = SecretStr(base64.b64encode(os.urandom(64)).decode())  # passwords are sealed at ingest
    settings = settings_for({"whm1": ("whm", old), "whm2": ("whm", new)}, sealing_key=sealing_key)
    runtime_for(settings)
    start = datetime.now(UTC) - timedelta(minutes=10)
    # when: the delete on the old server (issued at +5 min) arrives before the add on the new one (issued at +0)
    add_command(redis_client, body("del-old", "delmail", "whm1", {"email": "info@shop.example"}, "migration",
                                   start + timedelta(minutes=5)))
    wait_for_terminal(redis_client, {"del-old"})
    add_command(redis_client, body("add-new", "addmail", "whm2",
                                   {"email": "info@shop.example", "password": "Correct-Horse-9", "quota": 10},
                                   "migration", start))
    events = wait_for_terminal(redis_client, {"add-new"})
    # then: both apply, neither is superseded
    ends = {e.id: e.status for e in events if e.terminal}
    assert ends == {"del-old": "succeeded", "add-new": "succeeded"}
    assert "info@shop.example" not in whm_app(old).state.mailboxes
    assert "info@shop.example" in whm_app(new).state.mailboxes


def test_holds_and_order_stamps_written_before_backend_scoped_identity_are_honoured_after_the_upgrade(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    fleet: tuple[SandboxServer, SandboxServer], tmp_path: Path,
) -> None:
    # given: Redis data as the previous version wrote it: an abuse hold on ``shop`` (a suspend run on
    # whm1) and the order record beside it, keyed by aspect and target only
    whm1, whm2 = fleet
    whm_app(whm1).state.accounts["shop"].outgoing = "suspended"
    settings = settings_for({"whm1": ("whm", whm1), "whm2": ("whm", whm2)})
    now = datetime.now(UTC)
    issued = now - timedelta(minutes=5)
    hold = {"reason": "abuse", "producer": "abuse-detector", "command": "old-abuse", "issued_at": issued.isoformat(),
            "backend": "whm1", "args": {"user": "shop"}, "since": issued.isoformat()}
    stamp = OrderStamp(int(issued.timestamp() * 1000), 0, int(issued.timestamp() * 1000), 0, "old-abuse").encode()
    redis_client.hset("mailops:holds:outgoing:shop", "abuse", orjson.dumps(hold))
    redis_client.hset("mailops:order:outgoing:shop", mapping={"last:abuse": stamp, "backend": "whm1",
                                                              "args": orjson.dumps({"user": "shop"})})
    # when: the upgraded worker starts, then billing unsuspends shop on whm1 and a stale abuse
    # release (issued before the old suspend) arrives
    runtime_for(settings)
    add_command(redis_client, body("bill-1", "unsuspend_outgoing", "whm1", {"user": "shop"}, "billing",
                                   now - timedelta(minutes=1)))
    add_command(redis_client, body("stale-1", "unsuspend_outgoing", "whm1", {"user": "shop"}, "abuse-detector",
                                   issued - timedelta(minutes=1), "abuse"))
    events = wait_for_terminal(redis_client, {"bill-1", "stale-1"})
    # then: the old hold keeps shop suspended, the old stamp makes the stale release superseded
    ends = {e.id: e for e in events if e.terminal}
    assert ends["bill-1"].status == "held"
    assert ends["bill-1"].details["holds"]["after"] == ["abuse"]
    assert ends["stale-1"].status == "superseded"
    assert whm_app(whm1).state.accounts["shop"].outgoing == "suspended"
    # and: the data now lives under the backend-scoped keys only, and shows as whm1's
    assert set(holds_of(redis_client, settings.keys, "whm1", "shop", "outgoing")) == {"abuse"}
    assert holds_of(redis_client, settings.keys, "whm2", "shop", "outgoing") == {}
    assert redis_client.exists("mailops:holds:outgoing:shop", "mailops:order:outgoing:shop") == 0
    shown = CliRunner().invoke(holds_cli, ["show", "shop"], env=cli_env(settings, tmp_path))
    assert "shop on whm1 outgoing: suspended" in shown.output and "whm2" not in shown.output


def test_the_legacy_upgrade_skips_what_it_cannot_read_and_moves_the_rest(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], fleet: tuple[SandboxServer, SandboxServer],
) -> None:
    # given: old-layout keys: a hold without a backend, an order stamp without one, a corrupt
    # stamp, and a key of another type under the old prefix
    settings = settings_for({"whm1": ("whm", fleet[0]), "whm2": ("whm", fleet[1])})
    keys = settings.keys
    redis_client.hset(keys.routes, "shop", "whm2")
    redis_client.hset("mailops:holds:outgoing:shop", "manual", orjson.dumps({"reason": "manual", "args": {"user": "shop"}}))
    redis_client.hset("mailops:order:mailbox:info@shop.example", mapping={"last": "1|0|0|0|old", "lease": "x:aaaaaaaaaaaa"})
    redis_client.hset("mailops:order:mailbox:info@other.example", "last", "not a stamp")
    redis_client.set("mailops:order:outgoing:odd", "a string")
    # when: the upgrade runs (twice: the second finds nothing to do)
    moved = upgrade(redis_client, keys, settings.backends, RouteMap(redis_client, settings).resolve)
    again = upgrade(redis_client, keys, settings.backends, RouteMap(redis_client, settings).resolve)
    # then: the hold follows the route, the unrouted stamp goes to every backend, no lease moves,
    # the string is left alone
    assert (moved, again) == (3, 0)
    assert set(holds_of(redis_client, keys, "whm2", "shop", "outgoing")) == {"manual"}
    assert holds_of(redis_client, keys, "whm1", "shop", "outgoing") == {}
    for backend in ("whm1", "whm2"):
        assert redis_client.hgetall(keys.order(backend, "info@shop.example", "mailbox")) == {b"last": b"1|0|0|0|old"}
        assert redis_client.hgetall(keys.order(backend, "info@other.example", "mailbox")) == {b"last": b"not a stamp"}
    assert redis_client.get("mailops:order:outgoing:odd") == b"a string"


def test_a_command_naming_no_backend_is_routed_before_its_identity_is_taken(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    fleet: tuple[SandboxServer, SandboxServer],
) -> None:
    # given: routes send ``shop`` to whm2
    whm1, whm2 = fleet
    settings = settings_for({"whm1": ("whm", whm1), "whm2": ("whm", whm2)}, whm2={"targets": ["shop"]})
    runtime_for(settings)
    # when: a suspend names no backend
    command = body("abuse-1", "suspend_outgoing", "whm2", {"user": "shop"}, "abuse-detector", datetime.now(UTC), "abuse")
    del command["backend"]
    add_command(redis_client, command)
    events = wait_for_terminal(redis_client, {"abuse-1"})
    # then: every event names whm2, and the hold is whm2's
    assert {(e.status, e.backend, e.target) for e in events} == {("accepted", "whm2", "shop"),
                                                                 ("succeeded", "whm2", "shop")}
    assert set(holds_of(redis_client, settings.keys, "whm2", "shop", "outgoing")) == {"abuse"}
    assert whm_app(whm2).state.accounts["shop"].outgoing == "suspended"
    assert whm_app(whm1).state.accounts["shop"].outgoing == "active"
