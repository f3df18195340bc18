"""Every cell of the command × backend-kind table, end to end: XADD -> worker -> sandbox over HTTP -> event.

One worker runtime and one sandbox per kind serve the whole module; each test resets the sandbox
state and checks it afterwards (the ledger is the ground truth of what the panel applied).
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from tests.conftest import add_command, wait_for_terminal
from workers.backends import readback
from workers.backends.registry import read_tables, tables
from workers.constants import DEFAULT_SPF_RECORD
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.sandbox.brainycp import BrainycpSandbox
from workers.sandbox.cpanel import CpanelSandbox
from workers.sandbox.state import PanelState, fingerprint
from workers.sandbox.whm import WhmSandbox
from workers.settings import BackendConfig, Settings
from workers.store.embedded_redis import EmbeddedRedis

#: Backend kind -> (backend name, cPanel/host account, its domain).
ACCOUNTS = {"whm": ("whm1", "example", "example.example"), "cpanel": ("cp1", "shop", "shop.example"),
            "brainycp": ("brainy1", "host", "host.example")}
NEW_PASSWORD = "n3w-Secret-pass"


def reset(state: PanelState, user: str, domain: str) -> None:
    """The same starting data on every panel: one account, its domain, one mailbox."""
    with state.lock:
        for mapping in (state.accounts, state.domains, state.mailboxes, state.forwarders):
            mapping.clear()
        state.ledger.clear()
        state.add_account(user, domain)
        state.add_mailbox(f"info@{domain}")


#: One expected ledger entry: (target, field, new value).
Change = tuple[str, str, Any]


@dataclass(frozen=True)
class Case:
    args: Callable[[str, str], dict[str, Any]]
    check: Callable[[PanelState, str, str], bool]
    given: Callable[[PanelState, str, str], None] = lambda s, u, d: None
    #: (kind, user, domain) -> the ledger entries the command must leave, each exactly once.
    changes: Callable[[str, str, str], list[Change]] = lambda k, u, d: []


def box(s: PanelState, d: str) -> Any:
    return s.mailboxes.get(f"info@{d}")


def _set(attr: str, value: Any, *, account: bool) -> Callable[[PanelState, str, str], None]:
    def given(s: PanelState, u: str, d: str) -> None:
        setattr(s.accounts[u] if account else box(s, d), attr, value)

    return given


def _is(attr: str, value: Any, *, account: bool) -> Callable[[PanelState, str, str], bool]:
    return lambda s, u, d: getattr(s.accounts[u] if account else box(s, d), attr) == value


def suspension(attr: str, on: Any, off: Any, *, undo: bool, account: bool) -> Case:
    args: Callable[[str, str], dict[str, Any]] = (lambda u, d: {"user": u}) if account else (lambda u, d: {"email": f"info@{d}"})

    def changes(k: str, u: str, d: str) -> list[Change]:
        return [(u if account else f"info@{d}", attr, off if undo else on)]

    if undo:
        return Case(args, _is(attr, off, account=account), _set(attr, on, account=account), changes)
    return Case(args, _is(attr, on, account=account), changes=changes)


def domain_flag(attr: str, value: bool) -> Case:
    def given(s: PanelState, u: str, d: str) -> None:
        setattr(s.domains[d], attr, not value)

    def changes(k: str, u: str, d: str) -> list[Change]:
        # WHM sets the flag through modifyacct, which also stores HASSPF/HASDKIM on the account.
        setting = [(u, f"HAS{attr.upper()}", "1" if value else "0")] if k == "whm" else []
        # cPanel installs a record (the backend's spf_record, the default here).
        record = [(d, "spf_record", DEFAULT_SPF_RECORD)] if (k, attr, value) == ("cpanel", "spf", True) else []
        return [(d, attr, value), *setting, *record]

    return Case(lambda u, d: {"domain": d}, lambda s, u, d: getattr(s.domains[d], attr) is value, given, changes)


def _forwarder(s: PanelState, u: str, d: str) -> None:
    s.forwarders[f"info@{d}=>ops@elsewhere.example"] = "fwd"


FORWARD = {"destination": "ops@elsewhere.example"}

#: (command, scope) -> what to send and what the panel must show afterwards.
CASES: dict[tuple[str, str], Case] = {}
for _scope, _account in (("account", True), ("mailbox", False)):
    for _name, _attr, _on, _off in (("outgoing", "outgoing", "suspended", "active"),
                                    ("incoming", "incoming", "suspended", "active"),
                                    ("login", "login", "suspended", "active")):
        CASES[(f"suspend_{_name}", _scope)] = suspension(_attr, _on, _off, undo=False, account=_account)
        CASES[(f"unsuspend_{_name}", _scope)] = suspension(_attr, _on, _off, undo=True, account=_account)
    CASES[("hold_outgoing", _scope)] = suspension("hold", True, False, undo=False, account=_account)
    CASES[("release_outgoing", _scope)] = suspension("hold", True, False, undo=True, account=_account)
CASES |= {
    ("terminate_sessions", "account"): Case(lambda u, d: {"user": u}, _is("sessions_terminated", 1, account=True),
                                            changes=lambda k, u, d: [(u, "sessions_terminated", 1)]),
    ("set_forward_destination", "account"): Case(
        lambda u, d: {"user": u, "forward_to": ["ops@elsewhere.example"]},
        _is("forward_to", "ops@elsewhere.example", account=True),
        changes=lambda k, u, d: [(u, "forward_to", "ops@elsewhere.example")]),
    ("addmail", "mailbox"): Case(
        lambda u, d: {"email": f"new@{d}", "password": NEW_PASSWORD, "quota": 250},
        lambda s, u, d: getattr(s.mailboxes.get(f"new@{d}"), "password", None) == fingerprint(NEW_PASSWORD),
        changes=lambda k, u, d: [(f"new@{d}", "mailbox", "present")]),
    ("delmail", "mailbox"): Case(lambda u, d: {"email": f"info@{d}"}, lambda s, u, d: box(s, d) is None,
                                 changes=lambda k, u, d: [(f"info@{d}", "mailbox", None)]),
    ("passwd", "mailbox"): Case(lambda u, d: {"email": f"info@{d}", "password": NEW_PASSWORD},
                                lambda s, u, d: box(s, d).password == fingerprint(NEW_PASSWORD),
                                changes=lambda k, u, d: [(f"info@{d}", "password", fingerprint(NEW_PASSWORD))]),
    ("addforward", "mailbox"): Case(lambda u, d: {"email": f"info@{d}", **FORWARD},
                                    lambda s, u, d: s.forwarders_of(f"info@{d}") == ["ops@elsewhere.example"],
                                    changes=lambda k, u, d: [(f"info@{d}=>ops@elsewhere.example", "forwarder", "present")]),
    ("delforward", "mailbox"): Case(lambda u, d: {"email": f"info@{d}", **FORWARD},
                                    lambda s, u, d: s.forwarders_of(f"info@{d}") == [], _forwarder,
                                    changes=lambda k, u, d: [(f"info@{d}=>ops@elsewhere.example", "forwarder", None)]),
    ("onspf", "domain"): domain_flag("spf", True),
    ("offspf", "domain"): domain_flag("spf", False),
    ("ondkim", "domain"): domain_flag("dkim", True),
    ("offdkim", "domain"): domain_flag("dkim", False),
    ("modifyacct", "account"): Case(lambda u, d: {"user": u, "MAXPOP": "unlimited", "MAX_EMAIL_PER_HOUR": 500},
                                    lambda s, u, d: s.accounts[u].settings == {"MAXPOP": "unlimited",
                                                                               "MAX_EMAIL_PER_HOUR": "500"},
                                    changes=lambda k, u, d: [(u, "MAXPOP", "unlimited"), (u, "MAX_EMAIL_PER_HOUR", "500")]),
}

CELLS = [(kind, command, scope) for kind, table in tables().items() for command, calls in table.items() for scope in calls]


#: A backend on the cPanel sandbox's account with ``spf_read_first`` on.
READ_FIRST = "cpanel-read-first"


@dataclass
class World:
    client: redis.Redis
    servers: dict[str, SandboxServer]
    runtime: Runtime

    def reset(self) -> None:
        for kind, server in self.servers.items():
            _name, user, domain = ACCOUNTS[kind]
            reset(server.app.state, user, domain)  # type: ignore[attr-defined]
            server.reset_stats()

    def run(self, kind: str, command: str, args: dict[str, Any], **extra: Any) -> Any:
        id = f"v-{command}-{uuid.uuid4().hex[:8]}"
        body = {"id": id, "command": command, "backend": ACCOUNTS[kind][0], "args": args, "producer": "vocabulary-test",
                "issued_at": datetime.now(UTC).isoformat(), **extra}
        add_command(self.client, body)
        events = wait_for_terminal(self.client, {id})
        return next(e for e in events if e.id == id and e.terminal)


@pytest.fixture(scope="module")
def world(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    whm_app = WhmSandbox(token="sandbox-whm-token")
    cpanel_app = CpanelSandbox()
    brainy_app = BrainycpSandbox()
    cpanel_app.add_account("shop", "shop.example", token="sandbox-cpanel-token")
    servers = {"whm": SandboxServer(whm_app).start(), "cpanel": SandboxServer(cpanel_app).start(),
               "brainycp": SandboxServer(brainy_app).start()}
    logins = {"whm": ("root", "sandbox-whm-token"), "cpanel": ("shop", "sandbox-cpanel-token"),
              "brainycp": ("admin", brainy_app.token)}
    backends = {
        ACCOUNTS[kind][0]: BackendConfig(name=ACCOUNTS[kind][0], kind=kind, url=server.url, username=logins[kind][0],  # type: ignore[arg-type]
                                         token=SecretStr(logins[kind][1]), read_timeout=5.0,
                                         targets=(ACCOUNTS[kind][2], ACCOUNTS[kind][1]))
        for kind, server in servers.items()
    }
    # The same cPanel account behind a backend whose onspf reads the record before installing
    cpanel = backends[ACCOUNTS["cpanel"][0]]
    backends[READ_FIRST] = cpanel.model_copy(update={"name": READ_FIRST, "spf_read_first": True})
    # Producer signatures are another test module's subject; these commands are unsigned.
    # Passwords are sealed at ingest when the worker has a sealing key (64 random bytes, base64).
    unsigned: dict[str, Any] = {"require_signatures": False} if "require_signatures" in Settings.model_fields else {}
    if "sealing_key" in Settings.model_fields:
        unsigned["sealing_key"] = SecretStr(base64.b64encode(os.urandom(64)).decode())
    settings = Settings(redis_url=redis_server.url, backends=backends, **unsigned)
    runtime = Runtime(settings, threads=4).start()
    world = World(client, servers, runtime)
    yield world
    runtime.stop(drain_timeout_ms=2000)
    for server in servers.values():
        server.stop()
    client.flushall()
    client.close()


def test_every_cell_of_the_table_has_an_end_to_end_case() -> None:
    assert {(command, scope) for _kind, command, scope in CELLS} <= set(CASES)


@pytest.mark.parametrize(("kind", "command", "scope"), CELLS, ids=[f"{k}-{c}-{s}" for k, c, s in CELLS])
def test_each_supported_cell_runs_end_to_end_and_changes_the_panel(world: World, kind: str, command: str, scope: str) -> None:
    # Given a fresh panel of this kind, in the state the command changes
    world.reset()
    _name, user, domain = ACCOUNTS[kind]
    case = CASES[(command, scope)]
    state: PanelState = world.servers[kind].app.state  # type: ignore[attr-defined]
    case.given(state, user, domain)
    assert not case.check(state, user, domain)
    # When the command is added to the stream
    final = world.run(kind, command, case.args(user, domain))
    # Then it succeeds, the panel shows the asked-for state, and the ledger holds exactly the expected
    # change(s), each applied once
    assert (final.status, final.already) == ("succeeded", False), final.error
    assert case.check(state, user, domain)
    applied = sorted(((c.target, c.field, c.new) for c in state.ledger.changes()), key=lambda c: (c[0], c[1]))
    assert applied == sorted(case.changes(kind, user, domain), key=lambda c: (c[0], c[1]))
    # And a readable cell was read back once after its one change call (verified); another says why not
    check = read_tables()[kind].get(command, {}).get(scope)
    stats = world.servers[kind].stats()
    if isinstance(check, readback.Read):
        assert (final.verified, final.details["read"]["call"], final.details["read"]["reads"]) == (True, check.function, 1)
        assert (stats["changes"], stats["reads"]) == (1, 1)
    else:
        assert final.verified is False and final.details["not_verified"]
        assert (stats["changes"], stats["reads"]) == (1, 0)


UNSUPPORTED = [(kind, command) for kind, table in tables().items() for command in CASES_COMMANDS
               if command not in table] if (CASES_COMMANDS := sorted({c for c, _s in CASES})) else []


@pytest.mark.parametrize(("kind", "command"), UNSUPPORTED)
def test_an_unsupported_cell_fails_as_unsupported_without_a_panel_call(world: World, kind: str, command: str) -> None:
    # Given a panel kind that cannot run the command
    world.reset()
    _name, user, domain = ACCOUNTS[kind]
    scope = next(s for (c, s) in CASES if c == command)
    # When it is sent there
    final = world.run(kind, command, CASES[(command, scope)].args(user, domain))
    # Then it fails as unsupported, naming command and kind, and the sandbox saw no request
    assert final.status == "failed" and final.error is not None
    assert final.error.kind == "unsupported"
    assert command in final.error.message and kind in final.error.message
    assert world.servers[kind].stats()["requests"] == 0


def test_a_uapi_cpanel_call_whose_inner_status_is_0_ends_failed(world: World) -> None:
    # Given a WHM panel with no mailbox ghost@example.example
    world.reset()
    # When its login is suspended (uapi_cpanel: outer metadata.result 1, inner data.uapi.status 0)
    final = world.run("whm", "suspend_login", {"email": "ghost@example.example"})
    # Then the command failed for good with the panel's reason, and nothing changed
    assert final.status == "failed" and final.error is not None
    assert final.error.kind == "panel_refused"
    assert "You do not have an email account named “ghost@example.example”." in final.error.message
    assert len(world.servers["whm"].app.ledger) == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["whm", "cpanel", "brainycp"])
def test_adding_a_mailbox_that_exists_succeeds_as_already_so(world: World, kind: str) -> None:
    # Given a panel that already has info@<domain>
    world.reset()
    _name, user, domain = ACCOUNTS[kind]
    # When addmail asks for it again
    final = world.run(kind, "addmail", {"email": f"info@{domain}", "password": NEW_PASSWORD, "quota": 10})
    # Then the command succeeds with already=true and the panel changed nothing
    assert (final.status, final.already) == ("succeeded", True), final.error
    assert len(world.servers[kind].app.ledger) == 0  # type: ignore[attr-defined]


def test_brainycp_spf_already_enabled_is_success_already_so(world: World) -> None:
    world.reset()
    world.servers["brainycp"].app.state.domains["host.example"].spf = True  # type: ignore[attr-defined]
    final = world.run("brainycp", "onspf", {"domain": "host.example"})
    assert (final.status, final.already) == ("succeeded", True), final.error


def test_a_command_without_backend_is_routed_by_its_target(world: World) -> None:
    # Given the routes seeded from each backend's configured targets
    world.reset()
    id = f"route-{uuid.uuid4().hex[:8]}"
    # When a command names no backend, only a mailbox on the cPanel account's domain
    add_command(world.client, {"id": id, "command": "suspend_login", "args": {"email": "info@shop.example"},
                               "producer": "vocabulary-test"})
    final = next(e for e in wait_for_terminal(world.client, {id}) if e.id == id and e.terminal)
    # Then it ran on that backend
    assert (final.status, final.backend) == ("succeeded", "cp1"), final.error
    assert world.servers["cpanel"].app.state.mailboxes["info@shop.example"].login == "suspended"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("extra", "kind_or_rule"), [
    ({"backend": "nowhere"}, "unknown_backend"),
    ({"args": {"email": "info@unrouted.example"}}, "unroutable"),
])
def test_an_unknown_backend_or_unroutable_target_is_rejected(world: World, extra: dict[str, Any], kind_or_rule: str) -> None:
    id = f"route-{uuid.uuid4().hex[:8]}"
    body = {"id": id, "command": "suspend_login", "args": {"email": "info@shop.example"}, "producer": "vocabulary-test"}
    add_command(world.client, body | extra)
    final = next(e for e in wait_for_terminal(world.client, {id}) if e.id == id and e.terminal)
    assert final.status == "rejected" and final.error is not None
    assert kind_or_rule in (final.error.kind, final.error.rule)


@pytest.mark.parametrize("kind", ["whm", "cpanel", "brainycp"])
def test_a_forwarder_to_an_address_with_a_plus_is_added_end_to_end(world: World, kind: str) -> None:
    # Given a panel with info@<domain>
    world.reset()
    _name, _user, domain = ACCOUNTS[kind]
    state: PanelState = world.servers[kind].app.state  # type: ignore[attr-defined]
    # When a forwarder to a sub-addressed destination is added
    final = world.run(kind, "addforward", {"email": f"info@{domain}", "destination": "ops+abuse@elsewhere.example"})
    # Then it succeeds and the panel forwards there
    assert (final.status, final.already) == ("succeeded", False), final.error
    assert state.forwarders_of(f"info@{domain}") == ["ops+abuse@elsewhere.example"]


def test_onspf_on_cpanel_replaces_a_different_record_and_the_read_back_shows_the_new_one(world: World) -> None:
    # Given a cPanel domain that already publishes another SPF record
    world.reset()
    domain = world.servers["cpanel"].app.state.domains["shop.example"]  # type: ignore[attr-defined]
    domain.spf, domain.spf_record = True, "v=spf1 include:old-relay.example -all"
    # When onspf runs on a backend with the default settings
    final = world.run("cpanel", "onspf", {"domain": "shop.example"})
    # Then the configured record is installed, one change and one read, and the read shows it
    assert (final.status, final.already, final.verified) == ("succeeded", False, True), final.error
    assert domain.spf_record == DEFAULT_SPF_RECORD
    assert final.details["record"] == DEFAULT_SPF_RECORD and "replaced" not in final.details
    assert DEFAULT_SPF_RECORD in str(final.details["read"])
    stats = world.servers["cpanel"].stats()
    assert (stats["changes"], stats["reads"]) == (1, 1)


def test_onspf_on_cpanel_reading_first_replaces_a_different_record_and_says_so(world: World) -> None:
    # Given a cPanel domain that already publishes another SPF record
    world.reset()
    domain = world.servers["cpanel"].app.state.domains["shop.example"]  # type: ignore[attr-defined]
    domain.spf, domain.spf_record = True, "v=spf1 include:old-relay.example -all"
    # When onspf runs on a backend with spf_read_first
    final = world.run("cpanel", "onspf", {"domain": "shop.example"}, backend=READ_FIRST)
    # Then the configured record is installed and the event names the one it replaced
    assert (final.status, final.already) == ("succeeded", False), final.error
    assert domain.spf_record == DEFAULT_SPF_RECORD
    assert final.details["replaced"] == "v=spf1 include:old-relay.example -all"
    assert final.details["record"] == DEFAULT_SPF_RECORD


def test_onspf_on_cpanel_reading_first_with_the_record_in_place_is_already_so_and_installs_nothing(world: World) -> None:
    world.reset()
    domain = world.servers["cpanel"].app.state.domains["shop.example"]  # type: ignore[attr-defined]
    domain.spf, domain.spf_record = True, DEFAULT_SPF_RECORD
    final = world.run("cpanel", "onspf", {"domain": "shop.example"}, backend=READ_FIRST)
    assert (final.status, final.already) == ("succeeded", True), final.error
    assert "replaced" not in final.details
    assert len(world.servers["cpanel"].app.ledger) == 0  # type: ignore[attr-defined]
