"""HTTP ingress: POST /v1/commands with an Idempotency-Key, GET its status; checked against its own OpenAPI."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import schemathesis
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.clock import iso, outside_python
from tests.conftest import read_events, wait_for_terminal, wait_until
from tests.security.conftest import KEYS, PRODUCERS
from workers.ingest.signing import sign, verify
from workers.metrics import REJECTIONS
from workers.runtime import Runtime
from workers.sandbox import Faults, SandboxServer
from workers.sandbox.whm import WhmSandbox
from workers.settings import Settings
from workers.tools.http_ingress import create_app
from workers.tools.producer import Producer

WEBHOOKS = Path(__file__).parents[2] / "docs" / "webhooks"


@pytest.fixture
def secure(settings_for: Callable[..., Settings], whm: SandboxServer) -> Settings:
    """Default security: signatures required; billing may use whm1, abuse-detector holds ``abuse``."""
    producers = dict(PRODUCERS) | {"abuse-detector": PRODUCERS["abuse-detector"].model_copy(update={"reasons": ("abuse",)})}
    return settings_for({"whm1": ("whm", whm)}, require_signatures=True, producers=producers)


@pytest.fixture
def api(redis_client: redis.Redis, secure: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(secure, redis_client)) as client:
        yield client


def webhook(key: str, *, producer: str = "billing", command: str = "unsuspend_outgoing", user: str = "example",
            sign_with: bytes | None = None, **extra: Any) -> dict[str, Any]:
    """A body as a billing webhook posts it: signed with the Idempotency-Key as its id, a fresh issued_at."""
    body = {"id": key, "command": command, "backend": "whm1", "args": {"user": user}, "producer": producer,
            "issued_at": iso(datetime.now(UTC))} | extra
    body["signature"] = sign(body, sign_with or KEYS.get(producer, b"no-such-key"))
    return {k: v for k, v in body.items() if k != "id"}


def post(api: TestClient, key: str, body: dict[str, Any], **params: Any) -> Any:
    return api.post("/v1/commands", json=body, headers={"Idempotency-Key": key}, params=params)


def rejected_total(producer: str, field: str, rule: str) -> float:
    return REJECTIONS.labels(producer, field, rule)._value.get()


def test_a_signed_webhook_is_queued_with_its_key_as_id_and_its_signature_intact(api: TestClient,
                                                                                redis_client: redis.Redis) -> None:
    # Given a command signed with the Idempotency-Key as its id; When it is posted
    reply = post(api, "hook-1", webhook("hook-1"))
    # Then it is accepted for processing, and the stream entry still verifies
    assert reply.status_code == 202 and reply.json()["id"] == "hook-1"
    ((_entry, fields),) = redis_client.xrange("mailops:commands")
    sent = orjson.loads(fields[b"body"])
    assert verify(sent, KEYS["billing"], sent["signature"])


def test_an_invalid_command_is_answered_422_with_the_field_and_rule(api: TestClient, redis_client: redis.Redis) -> None:
    reply = api.post("/v1/commands", json={"command": "suspend_outgoing", "args": {"user": "Bad User"}, "producer": "b"},
                     headers={"Idempotency-Key": "hook-2"})
    assert reply.status_code == 422
    assert (reply.json()["error"]["field"], reply.json()["error"]["rule"]) == ("args.user", "string_pattern_mismatch")
    missing = api.post("/v1/commands", json={"command": "suspend_outgoing", "args": {"user": "a"}, "producer": "b"})
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "Idempotency-Key"
    assert not redis_client.exists("mailops:commands")


@pytest.mark.parametrize(("case", "body", "answer"), [
    ("unsigned", {"command": "unsuspend_outgoing", "backend": "whm1", "args": {"user": "example"},
                  "producer": "billing"}, (401, "signature", "missing")),
    ("unknown producer", "stranger", (401, "producer", "unknown")),
    ("wrong key", "wrong-key", (401, "signature", "mismatch")),
    ("stale", "stale", (401, "issued_at", "too_old")),
    ("command not allowed", "not-allowed", (403, "command", "not_allowed")),
    ("hold reason not allowed", "reason", (403, "reason", "not_allowed")),
    ("unknown backend", "backend", (422, "backend", "unknown")),
])
def test_each_refusal_is_answered_at_once_with_its_status_field_and_rule(
        api: TestClient, redis_client: redis.Redis, case: str, body: Any, answer: tuple[int, str, str]) -> None:
    # Given a body broken the way the case says
    key = f"refused-{abs(hash(case))}"
    bodies = {
        "stranger": lambda: webhook(key, producer="stranger"),
        "wrong-key": lambda: webhook(key, sign_with=KEYS["migration"]),
        "stale": lambda: webhook(key, issued_at=iso(datetime.now(UTC) - timedelta(minutes=20))),
        "not-allowed": lambda: webhook(key, producer="migration", command="suspend_outgoing"),
        "reason": lambda: webhook(key, reason="abuse-detector"),
        "backend": lambda: webhook(key, backend="whm9"),
    }
    payload = bodies[body]() if isinstance(body, str) else body
    before = rejected_total(payload["producer"] if payload["producer"] != "stranger" else "unknown", *answer[1:])
    # When it is posted
    reply = post(api, key, payload)
    # Then the answer says why, synchronously, and nothing reached the commands stream
    assert (reply.status_code, reply.json()["error"]["field"], reply.json()["error"]["rule"]) == answer, reply.json()
    assert not redis_client.exists("mailops:commands")
    # And the refusal is first-class: a rejected event, a rejection record GET answers, a count
    (event,) = [e for e in read_events(redis_client) if e.id == key]
    assert (event.status, event.target) == ("rejected", "example")
    status = api.get(f"/v1/commands/{key}")
    assert status.status_code == 200 and status.json()["status"] == "rejected"
    assert status.json()["outcome"]["error"]["rule"] == answer[2]
    assert rejected_total(payload["producer"] if payload["producer"] != "stranger" else "unknown", *answer[1:]) == before + 1


def test_a_reused_key_answers_409_for_another_payload_and_the_stored_outcome_for_the_same(
        api: TestClient, secure: Settings, runtime_for: Callable[..., Runtime]) -> None:
    # Given a worker, and a command that ended
    runtime_for(secure)
    first = post(api, "hook-9", webhook("hook-9"), wait=30)
    assert first.status_code == 200 and first.json()["outcome"]["status"] == "succeeded"
    # When the same key comes again with another payload, and with the same (re-signed, later) payload
    other = post(api, "hook-9", webhook("hook-9", user="other"))
    again = post(api, "hook-9", webhook("hook-9"))
    # Then the first is a conflict and the second the stored outcome, not a second run
    assert (other.status_code, other.json()["error"]["field"], other.json()["error"]["rule"]) == (
        409, "Idempotency-Key", "conflict")
    assert again.status_code == 200 and again.json()["outcome"] == first.json()["outcome"]


def test_a_reused_key_while_its_command_runs_answers_202_in_flight(
        api: TestClient, secure: Settings, whm: SandboxServer, redis_client: redis.Redis,
        runtime_for: Callable[..., Runtime]) -> None:
    # Given a slow panel and a command that is running
    whm.set_faults(Faults(latency_s=3.0))
    runtime_for(secure)
    assert post(api, "hook-10", webhook("hook-10")).status_code == 202
    wait_until(lambda: redis_client.hget("mailops:cmd:hook-10", "status") == b"running", timeout=10)
    # When the webhook is retried
    again = post(api, "hook-10", webhook("hook-10"))
    # Then it is answered in flight, and the command is not queued twice
    assert again.status_code == 202 and again.json()["status"] == "running"
    assert redis_client.xlen("mailops:commands") == 0


def test_wait_long_polls_for_the_terminal_event(api: TestClient, secure: Settings, runtime_for: Callable[..., Runtime],
                                                whm: SandboxServer) -> None:
    runtime_for(secure)
    reply = post(api, "hook-11", webhook("hook-11", command="suspend_outgoing"), wait=30)
    assert reply.status_code == 200
    assert (reply.json()["status"], reply.json()["outcome"]["status"], reply.json()["attempts"]) == ("succeeded",
                                                                                                   "succeeded", 1)
    app = whm.app
    assert isinstance(app, WhmSandbox) and app.state.accounts["example"].outgoing == "suspended"


def test_the_status_of_a_command_comes_from_its_record(api: TestClient, redis_client: redis.Redis, secure: Settings,
                                                       runtime_for: Callable[..., Runtime]) -> None:
    runtime_for(secure)
    assert api.get("/v1/commands/hook-3").status_code == 404
    post(api, "hook-3", webhook("hook-3", command="suspend_outgoing"))
    wait_for_terminal(redis_client, {"hook-3"})
    status = api.get("/v1/commands/hook-3").json()
    assert (status["status"], status["outcome"]["status"], status["attempts"]) == ("succeeded", "succeeded", 1)
    assert api.get("/healthz").json() == {"status": "ok"}


def test_the_openapi_document_describes_each_answer_of_post(api: TestClient) -> None:
    responses = api.get("/openapi.json").json()["paths"]["/v1/commands"]["post"]["responses"]
    assert {"200", "202", "400", "401", "403", "409", "422"} <= set(responses)


_schema_redis = redis.Redis.from_url("redis://127.0.0.1:1")  # replaced per test below
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings(), _schema_redis))


@pytest.fixture
def live_schema(redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # The app answers from the per-test Redis.
    monkeypatch.setattr(_schema_redis, "connection_pool", redis_client.connection_pool)


@pytest.mark.usefixtures("live_schema")
@schema.parametrize()
@settings(max_examples=15, deadline=None)
def test_the_api_keeps_its_own_openapi_contract(case: schemathesis.Case) -> None:
    # The body schema cannot say which args each command takes (a cross-field rule), so a
    # schema-valid body may still be answered 422; every other check applies.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])


@pytest.fixture
def served(redis_client: redis.Redis, secure: Settings) -> Iterator[str]:
    """The ingress served over HTTP by uvicorn (as `mailops serve` does), on a free port."""
    server = uvicorn.Server(uvicorn.Config(create_app(secure, redis_client), host="127.0.0.1", port=0,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=10)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def billing_php(url: str, key: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(outside_python(["php", str(WEBHOOKS / "billing.php"), *args]), capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "MAILOPS_URL": url, "MAILOPS_KEY": key.decode()})


@pytest.mark.skipif(shutil.which("php") is None, reason="php is not installed (CI installs it)")
def test_the_php_billing_webhook_example_unsuspends_reports_a_remaining_hold_and_a_refusal(
        served: str, secure: Settings, redis_client: redis.Redis, whm: SandboxServer,
        runtime_for: Callable[..., Runtime]) -> None:
    runtime_for(secure)
    app = whm.app
    assert isinstance(app, WhmSandbox)
    # Given billing suspended `example` for an unpaid invoice
    with Producer(redis_client, producer="billing", key=KEYS["billing"]) as billing:
        assert billing.wait(billing.publish("suspend_outgoing", {"user": "example"}, backend="whm1")).status == "succeeded"
    # When the invoice is paid, the PHP handler lifts billing's hold: exit 0, the panel unsuspended
    paid = billing_php(served, KEYS["billing"], "example", "inv-1")
    assert paid.returncode == 0, paid.stdout + paid.stderr
    assert "billing-paid-inv-1: succeeded" in paid.stdout and app.state.accounts["example"].outgoing == "active"
    # And with an abuse hold on `other` as well as billing's, it says "held" and why (exit 3)
    with Producer(redis_client, producer="abuse-detector", key=KEYS["abuse-detector"]) as abuse:
        assert abuse.wait(abuse.publish("suspend_outgoing", {"user": "other"}, backend="whm1", reason="abuse")).status == "succeeded"
    held = billing_php(served, KEYS["billing"], "other", "inv-2")
    assert held.returncode == 3, held.stdout + held.stderr
    assert "still suspended: held by abuse" in held.stdout and app.state.accounts["other"].outgoing == "suspended"
    # And signed with the wrong key it is refused at once, naming the field and rule (exit 1)
    forged = billing_php(served, b"not-the-billing-key", "example", "inv-3")
    assert forged.returncode == 1 and "refused (401) signature/mismatch" in forged.stdout
