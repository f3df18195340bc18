"""Every answer shape reaches the right outcome: recorded bodies through envelopes.py, and HTTP
failures through a real sandbox with injected faults (transport.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from schemas.commands import validate_command
from tests.clock import ISSUED
from tests.conftest import WHM_TOKEN, add_command, wait_for_terminal
from tests.test_end_to_end import suspend
from workers.backends import envelopes
from workers.backends.brainycp import BrainycpBackend
from workers.backends.whm import WhmBackend
from workers.errors import PanelAuthRejected, PanelError, PanelRefused, PanelTimeout, PanelUnavailable
from workers.runtime import Runtime
from workers.sandbox import Faults, SandboxServer
from workers.sandbox.brainycp import BrainycpSandbox
from workers.sandbox.server import LOGIN_PAGE
from workers.sandbox.whm import WhmSandbox
from workers.settings import BackendConfig, Settings

UAPI_FAILED = {"status": 0, "data": None, "errors": ["You do not have an email account named “a@b.example”."],
               "messages": None, "warnings": None, "metadata": {}}

# (parser, body, expected: "done" | "already" | error class)
CASES: list[tuple[str, Any, Any]] = [
    ("whm_api1", {"metadata": {"command": "x", "reason": "OK", "result": 1, "version": 1}}, "done"),
    ("whm_api1", {"metadata": {"result": 0, "reason": "API failure: (XID 3y67mz) You do not have a user named “web08”."}},
     PanelRefused),
    ("whm_api1", {"metadata": {"result": 0, "reason": "API failure: (XID 3ywp6f) No space left on device"}}, PanelUnavailable),
    ("whm_api0", {"result": [{"status": 1, "statusmsg": "Account Modified", "newcfg": {}}]}, "done"),
    ("whm_api0", {"result": [{"status": 0, "statusmsg": "You do not have a user named “x”."}]}, PanelRefused),
    ("whm_api1", {"result": [{"status": 1, "statusmsg": "Account Modified"}]}, "done"),
    ("uapi", {"status": 1, "data": 1, "errors": None, "messages": None, "warnings": None, "metadata": {}}, "done"),
    ("uapi", UAPI_FAILED, PanelRefused),
    ("uapi", {"status": 0, "errors": ["The account “a@b.example” already exists!"]}, "already"),
    ("uapi", {"apiversion": 3, "func": "suspend_login", "module": "Email", "result": UAPI_FAILED}, PanelRefused),
    ("uapi_cpanel", {"data": {"uapi": UAPI_FAILED}, "metadata": {"command": "uapi_cpanel", "reason": "OK", "result": 1}},
     PanelRefused),
    ("uapi_cpanel", {"data": {"uapi": {"status": 1, "data": None}}, "metadata": {"result": 1, "reason": "OK"}}, "done"),
    ("cpanel_api2", {"cpanelresult": {"apiversion": 2, "data": [{"reason": "", "result": 1}], "event": {"result": 1}}}, "done"),
    ("cpanel_api2", {"cpanelresult": {"data": [{"reason": "nope", "result": 0}], "event": {"result": 1}}}, PanelRefused),
    ("cpanel_api2", {"cpanelresult": {"error": "Could not find function 'x' in module 'Email'", "data": []}}, PanelRefused),
    ("cpanel_api2", {"cpanelresult": {"data": [], "event": {"result": 0, "reason": "failed"}}}, PanelRefused),
    ("whm_api1", "<html>", PanelError),
]

BRAINY: list[tuple[str, Any, Any]] = [
    ("addmail", {"error": 0, "mess": "Mailbox added successfully: a@b.example"}, "done"),
    ("addmail", {"error": 1, "mess": "This mailbox already exists: a@b.example"}, "already"),
    ("onspf", {"error": 3, "mess": "SPF is already enabled for domain: b.example"}, "already"),
    ("offdkim", {"error": 3, "mess": "dkim is already disabled for domain: b.example"}, "already"),
    ("delmail", {"error": 1, "mess": "Error deleting mailbox: x"}, PanelRefused),
    ("addmail", {"error": 1000, "mess": "You do not have permission to administer this user"}, PanelRefused),
    ("addmail", {"error": 1001, "mess": "There is no such user in the ISP-panel"}, PanelRefused),
    ("addmail", {"code": 1, "message": "Not perm2"}, PanelAuthRejected),
]


def outcome(call: Any) -> Any:
    try:
        result = call()
    except PanelError as exc:
        return type(exc)
    return "already" if result.already else "done"


@pytest.mark.unit
@pytest.mark.parametrize(("parser", "body", "expected"), CASES)
def test_each_recorded_answer_is_classified_as_the_docs_say(parser: str, body: Any, expected: Any) -> None:
    # Given a recorded panel answer; when it is classified; then the outcome matches the table
    got = outcome(lambda: getattr(envelopes, parser)("p1", body))
    assert got is expected or got == expected


@pytest.mark.unit
@pytest.mark.parametrize(("operation", "body", "expected"), BRAINY)
def test_each_brainycp_code_is_classified_per_operation(operation: str, body: Any, expected: Any) -> None:
    assert outcome(lambda: envelopes.brainycp("b1", operation, body)) in (expected,)


def _whm(server: SandboxServer, token: str = "t", read_timeout: float = 5.0) -> WhmBackend:
    return WhmBackend(BackendConfig(name="whm1", kind="whm", url=server.url, token=SecretStr(token),
                                    read_timeout=read_timeout, connect_timeout=2.0))


SUSPEND = validate_command({"command": "suspend_outgoing", "backend": "whm1", "args": {"user": "example"}, "producer": "t"})


@pytest.mark.parametrize(("faults", "error"), [
    (Faults(error_rate=1.0), PanelUnavailable),
    (Faults(rate_limit_rate=1.0, retry_after_s=7), PanelUnavailable),
    (Faults(html_rate=1.0), PanelUnavailable),
    (Faults(login_page_rate=1.0), PanelAuthRejected),
    (Faults(drop_after_apply_rate=1.0), PanelTimeout),
    (Faults(timeout_after_apply_rate=1.0, hang_s=3.0), PanelTimeout),
])
def test_http_failures_of_a_real_server_are_classified(faults: Faults, error: type[Exception]) -> None:
    # Given a WHM sandbox injecting one kind of fault on every request
    app = WhmSandbox(token="t")
    app.add_account("example")
    with SandboxServer(app, faults=faults) as server:
        backend = _whm(server, read_timeout=1.0)
        # When a command runs; then it raises the transport error class for that fault
        with pytest.raises(error) as caught:
            backend.execute(SUSPEND)
        backend.close()
    if faults.rate_limit_rate:
        assert isinstance(caught.value, PanelUnavailable) and caught.value.retry_after == 7


@pytest.mark.parametrize("status", [401, 403])
def test_a_wrong_token_is_an_auth_failure_and_never_echoes_the_token(status: int) -> None:
    app = WhmSandbox(token="right-token")
    app.auth_failure_status = status
    with SandboxServer(app) as server:
        backend = _whm(server, token="wrong-token-value")
        with pytest.raises(PanelAuthRejected) as caught:
            backend.execute(SUSPEND)
        backend.close()
    assert "wrong-token-value" not in str(caught.value) and "wrong-token-value" not in repr(backend)


def test_a_refused_connection_is_transient() -> None:
    app = WhmSandbox(token="t")
    server = SandboxServer(app)  # never started: the port refuses connections
    backend = _whm(server)
    with pytest.raises(PanelUnavailable):
        backend.execute(SUSPEND)
    backend.close()


def test_brainycp_bad_login_is_an_auth_failure() -> None:
    app = BrainycpSandbox(password="right")
    app.add_account("host", "host.example")
    with SandboxServer(app) as server:
        backend = BrainycpBackend(BackendConfig(name="b1", kind="brainycp", url=server.url, username="admin",
                                                token=SecretStr("wrong")))
        command = validate_command({"command": "onspf", "backend": "b1", "args": {"domain": "host.example"}, "producer": "t"})
        with pytest.raises(PanelAuthRejected):
            backend.execute(command)
        backend.close()
    assert len(app.ledger) == 0


@pytest.mark.unit
@pytest.mark.parametrize(("content", "error"), [
    (LOGIN_PAGE, PanelAuthRejected),
    (b"<html><body><form action='/login/' method='post'><input name='user'></form></body></html>", PanelAuthRejected),
    (b"<!doctype html><html><form id=x><input type=password name=p></form></html>", PanelAuthRejected),
    (b"<html><body><h1>502 Bad Gateway</h1></body></html>", PanelUnavailable),
    (b"<html><body><form action='/search'><input name='q'></form></body></html>", PanelUnavailable),
    (b'{"metadata": {"result"', PanelUnavailable),
    (b"", PanelUnavailable),
])
def test_a_non_json_answer_is_an_auth_failure_only_when_it_is_an_html_login_page(content: bytes, error: type) -> None:
    with pytest.raises(error):
        envelopes.decode_json("whm1", content)


def test_an_html_login_page_ends_the_command_failed_auth_in_one_attempt_without_opening_the_breaker(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
) -> None:
    # Given a WHM server that answers every call with its login page (HTTP 200)
    app = WhmSandbox(token=WHM_TOKEN)
    app.add_account("example")
    with SandboxServer(app, faults=Faults(login_page_rate=1.0)) as server:
        settings = settings_for({"whm1": ("whm", server)})
        runtime_for(settings)
        # When a command for it runs
        add_command(redis_client, {**suspend("c-1"), "issued_at": ISSUED})
        events = wait_for_terminal(redis_client, {"c-1"})
        requests = server.stats()["changes"]
    # Then it fails at once as an auth failure: one attempt, no retry, the breaker still closed
    (done,) = [e for e in events if e.id == "c-1" and e.terminal]
    assert done.status == "failed" and done.error is not None
    assert (done.error.kind, done.attempt) == ("auth", 1)
    assert [e.status for e in events if e.id == "c-1"] == ["accepted", "failed"]
    assert requests == 1
    assert redis_client.hget(settings.keys.breaker("whm1"), "state") in (None, b"closed")
    assert redis_client.hget(settings.keys.breaker("whm1"), "failures") in (None, b"0")
