"""HTTP ingress: POST /v1/commands with an Idempotency-Key, GET its status; checked against its own OpenAPI."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest
import redis
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.clock import ISSUED
from tests.conftest import wait_for_terminal
from workers.embedded_redis import EmbeddedRedis
from workers.http_ingress import create_app
from workers.settings import Settings
from workers.signing import sign, verify


@pytest.fixture
def api(redis_client: redis.Redis, redis_server: EmbeddedRedis) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(redis_url=redis_server.url), redis_client)) as client:
        yield client


def test_a_signed_webhook_is_queued_with_its_key_as_id_and_its_signature_intact(api: TestClient,
                                                                                redis_client: redis.Redis) -> None:
    # Given a command signed with the Idempotency-Key as its id
    body = {"id": "hook-1", "command": "unsuspend_outgoing", "backend": "whm1", "args": {"user": "example"},
            "producer": "billing", "issued_at": ISSUED}
    body["signature"] = sign(body, b"billing-key")
    # When it is posted
    reply = api.post("/v1/commands", json={k: v for k, v in body.items() if k != "id"},
                     headers={"Idempotency-Key": "hook-1"})
    # Then it is accepted for processing, and the stream entry still verifies
    assert reply.status_code == 202 and reply.json()["id"] == "hook-1"
    ((_entry, fields),) = redis_client.xrange("mailops:commands")
    sent = orjson.loads(fields[b"body"])
    assert verify(sent, b"billing-key", sent["signature"])


def test_an_invalid_command_is_answered_422_with_the_field_and_rule(api: TestClient, redis_client: redis.Redis) -> None:
    reply = api.post("/v1/commands", json={"command": "suspend_outgoing", "args": {"user": "Bad User"}, "producer": "b"},
                     headers={"Idempotency-Key": "hook-2"})
    assert reply.status_code == 422
    assert (reply.json()["error"]["field"], reply.json()["error"]["rule"]) == ("args.user", "string_pattern_mismatch")
    missing = api.post("/v1/commands", json={"command": "suspend_outgoing", "args": {"user": "a"}, "producer": "b"})
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "Idempotency-Key"
    assert not redis_client.exists("mailops:commands")


def test_the_status_of_a_command_comes_from_its_record(api: TestClient, redis_client: redis.Redis, whm, settings_for,
                                                       runtime_for) -> None:
    runtime_for(settings_for({"whm1": ("whm", whm)}, require_signatures=False))
    assert api.get("/v1/commands/hook-3").status_code == 404
    api.post("/v1/commands", json={"command": "suspend_outgoing", "backend": "whm1", "args": {"user": "example"},
                                   "producer": "billing"}, headers={"Idempotency-Key": "hook-3"})
    wait_for_terminal(redis_client, {"hook-3"})
    status = api.get("/v1/commands/hook-3").json()
    assert (status["status"], status["outcome"]["status"], status["attempts"]) == ("succeeded", "succeeded", 1)
    assert api.get("/healthz").json() == {"status": "ok"}


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
