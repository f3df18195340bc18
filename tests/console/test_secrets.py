"""No secret ever leaves the console: every page and response is scanned for every secret it could hold."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
import orjson
import pytest
import redis
from pydantic import SecretStr

from tests.conftest import WHM_TOKEN, retry_for, wait_for_terminal
from tests.console.conftest import OPERATOR_KEY, PASSWORDS, with_console
from tests.security.conftest import KEYS, PRODUCERS, SEALING_KEY, signed
from workers.attempt.retry_policy import RetryPolicy
from workers.runtime import Runtime
from workers.sandbox import Faults, SandboxServer
from workers.sandbox.whm import WhmSandbox
from workers.settings import ProducerConfig, Settings

MAILBOX_PASSWORDS = [f"Mailbox-Secret-{i}-q9Z!" for i in range(3)]


def test_no_token_sealing_key_operator_key_or_mailbox_password_appears_in_any_page_or_response(
    redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
    runtime_for: Callable[..., Runtime], console_for: Callable[[Settings], str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given mailboxes added with passwords (one succeeds, one is dead-lettered), an abuse hold,
    # and a config full of secrets: panel tokens, producer and operator keys, the sealing key, password hashes
    retry_for(monkeypatch, "addmail", RetryPolicy(max_attempts=1, min_backoff_ms=20, max_backoff_ms=50))
    broken_app = WhmSandbox(token=WHM_TOKEN)
    broken_app.add_account("broken")
    migration = ProducerConfig(name="migration", key=SecretStr(KEYS["migration"].decode()),
                               commands=("addmail", "suspend_outgoing"), backends=("*",), reasons=("abuse",))
    with SandboxServer(broken_app, faults=Faults(error_rate=1.0)) as broken:
        settings = with_console(settings_for({"whm1": ("whm", whm), "whm2": ("whm", broken)}, require_signatures=True,
                                             producers={**PRODUCERS, "migration": migration},
                                             sealing_key=SecretStr(SEALING_KEY)))
        runtime_for(settings)
        bodies = [
            signed({"id": "add-ok", "command": "addmail", "backend": "whm1", "producer": "migration",
                    "args": {"email": "box1@example.example", "password": MAILBOX_PASSWORDS[0]}}),
            signed({"id": "add-dead", "command": "addmail", "backend": "whm2", "producer": "migration",
                    "args": {"email": "box@broken.example", "password": MAILBOX_PASSWORDS[1]}}),
            signed({"id": "hold-1", "command": "suspend_outgoing", "backend": "whm1", "producer": "migration",
                    "reason": "abuse", "args": {"user": "example"}}),
        ]
        for body in bodies:
            redis_client.xadd("mailops:commands", {"body": orjson.dumps(body)})
        wait_for_terminal(redis_client, {b["id"] for b in bodies}, timeout=30)
        base = console_for(settings)
        # When an operator opens every page, follows every link to a command, and starts every action
        responses = _every_response(base)
    # Then none of the secrets appears in any body or header
    secrets = [*MAILBOX_PASSWORDS, WHM_TOKEN, SEALING_KEY, OPERATOR_KEY, *PASSWORDS.values(),
               *(k.decode() for k in KEYS.values()),
               *(u.password_hash.get_secret_value() for u in settings.console.users.values())]
    assert len(responses) > 15
    for where, text in responses:
        for secret in secrets:
            assert secret not in text, f"a secret appears in {where}"
    assert any("add-dead" in text and "[redacted]" in text for where, text in responses if where.endswith("/add-dead"))


def _every_response(base: str) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def keep(response: httpx.Response) -> httpx.Response:
        response.read()
        seen.append((f"{response.request.method} {response.request.url.path}",
                     response.text + "\n" + "\n".join(f"{k}: {v}" for k, v in response.headers.items())))
        return response

    with httpx.Client(base_url=base, follow_redirects=True, event_hooks={"response": [keep]}) as http:
        keep(http.get("/login"))
        logged = http.post("/login", data={"user": "alice", "password": PASSWORDS["alice"]})
        assert "alice (operator)" in logged.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', logged.text)
        assert csrf is not None
        for path in ("/", "/live/overview", "/overview.json", "/commands", "/commands?by=target&q=box1@example.example",
                     "/commands?by=producer&q=migration&status=dead_lettered", "/dead-letters", "/holds",
                     "/holds?target=example", "/batches", "/backends", "/commands/nope", "/static/console.js"):
            http.get(path)
        for command_id in ("add-ok", "add-dead", "hold-1"):
            http.get(f"/commands/{command_id}")
        http.post("/backends/check", data={"csrf": csrf.group(1)})
        http.post("/dead-letters/replay", data={"csrf": csrf.group(1), "scope": "matching"})  # the confirmation page
        http.post("/dead-letters/replay", data={"scope": "matching"})  # refused: no CSRF token
        http.post("/holds/release", data={"csrf": csrf.group(1), "backend": "whm1", "target": "example",
                                          "aspect": "outgoing", "reason": "billing", "why": "no such hold"})
        http.post("/logout", data={"csrf": csrf.group(1)})
        http.get("/")
    return [(where, text) for where, text in seen if where]


