"""Every backend's real request building and answer classification, against the sandbox panels
in memory (the transport seam, :mod:`workers.sandbox.in_memory`): no Redis, no HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from schemas.commands import validate_command
from tests.backends.test_request_spec import LOGIN, problems_of
from tests.backends.test_vocabulary import ACCOUNTS, CASES, CELLS, reset
from workers.backends.base import Backend
from workers.backends.registry import KINDS
from workers.backends.transport import PanelHttp
from workers.errors import PanelAuthRejected, PanelTimeout, PanelUnavailable
from workers.sandbox import Faults, SandboxServer
from workers.sandbox.brainycp import BrainycpSandbox
from workers.sandbox.cpanel import CpanelSandbox
from workers.sandbox.in_memory import exchange_with
from workers.sandbox.server import Request
from workers.sandbox.whm import WhmSandbox
from workers.settings import BackendConfig

pytestmark = pytest.mark.unit


def panel(kind: str) -> tuple[Any, str, str]:
    """A fresh sandbox panel of ``kind`` with the vocabulary's account, and the login the
    request checker expects (``LOGIN``)."""
    _name, user, domain = ACCOUNTS[kind]
    username, token = LOGIN[kind]
    if kind == "whm":
        return WhmSandbox(username=username, token=token), username, token
    if kind == "cpanel":
        app = CpanelSandbox()
        app.add_account(user, domain, token=token)
        return app, username, token
    return BrainycpSandbox(username=username, password=token), username, token


def in_memory(kind: str, server: SandboxServer, username: str, token: str, seen: list[Request]) -> Backend:
    config = BackendConfig(name=ACCOUNTS[kind][0], kind=kind, url=f"https://{kind}.unit.example:2087",  # type: ignore[arg-type]
                           username=username, token=SecretStr(token), targets=(ACCOUNTS[kind][2], ACCOUNTS[kind][1]))
    backend = KINDS[kind](config, http=PanelHttp(config, exchange_with(server, seen)))  # type: ignore[call-arg]
    return backend


@pytest.mark.parametrize(("kind", "command", "scope"), CELLS, ids=[f"{k}-{c}-{s}" for k, c, s in CELLS])
def test_each_cell_changes_the_panel_in_memory_with_requests_as_the_panel_publishes_them(
        kind: str, command: str, scope: str) -> None:
    # Given a sandbox panel of this kind, in memory, in the state the command changes
    app, username, token = panel(kind)
    _name, user, domain = ACCOUNTS[kind]
    reset(app.state, user, domain)
    case = CASES[(command, scope)]
    case.given(app.state, user, domain)
    assert not case.check(app.state, user, domain)
    seen: list[Request] = []
    backend = in_memory(kind, SandboxServer(app), username, token, seen)
    # When the backend runs the command
    parsed = validate_command({"command": command, "backend": backend.name, "args": case.args(user, domain),
                               "producer": "unit-test"})
    result = backend.execute(parsed)
    # Then the panel shows it, each request matches the published API, and nothing needed a socket
    assert result.already is False
    assert case.check(app.state, user, domain)
    assert seen and [p for request in seen for p in problems_of(kind, request)] == []


def a_command(kind: str, backend: str) -> Any:
    """A command every kind runs: a suspension where the kind has one, else SPF on the domain."""
    _name, user, domain = ACCOUNTS[kind]
    name, args = {"whm": ("suspend_outgoing", {"user": user}),
                  "cpanel": ("suspend_outgoing", {"email": f"info@{domain}"})}.get(kind, ("onspf", {"domain": domain}))
    return validate_command({"command": name, "backend": backend, "args": args, "producer": "unit-test"})


@pytest.mark.parametrize(("faults", "error"), [
    (Faults(login_page_rate=1.0), PanelAuthRejected),
    (Faults(error_rate=1.0), PanelUnavailable),
    (Faults(rate_limit_rate=1.0), PanelUnavailable),
    (Faults(drop_after_apply_rate=1.0), PanelTimeout),
], ids=["login-page", "server-error", "rate-limited", "dropped-after-apply"])
@pytest.mark.parametrize("kind", sorted(ACCOUNTS))
def test_each_kind_classifies_a_misbehaving_panels_answer(kind: str, faults: Faults, error: type[Exception]) -> None:
    # Given a panel of this kind, in memory, answering with one fault
    app, username, token = panel(kind)
    _name, user, domain = ACCOUNTS[kind]
    reset(app.state, user, domain)
    backend = in_memory(kind, SandboxServer(app, faults=faults), username, token, [])
    # When a command runs, then the failure is classified as the transport boundary rules
    with pytest.raises(error):
        backend.execute(a_command(kind, backend.name))


def test_a_wrong_token_is_an_auth_failure_on_every_kind() -> None:
    for kind in sorted(ACCOUNTS):
        app, username, _token = panel(kind)
        _name, user, domain = ACCOUNTS[kind]
        reset(app.state, user, domain)
        backend = in_memory(kind, SandboxServer(app), username, "wrong-token-value", [])
        with pytest.raises(PanelAuthRejected) as raised:
            backend.execute(a_command(kind, backend.name))
        assert "wrong-token-value" not in str(raised.value)


def test_a_unit_test_is_refused_any_connection() -> None:
    # (the guard of every test marked unit, tests/conftest.py: one that reached for Redis or a panel would fail)
    import socket

    with pytest.raises(AssertionError, match="opened a connection"), socket.socket() as sock:
        sock.connect(("127.0.0.1", 9))
