"""Producers with keys, a sealing key, and feeding signed (or deliberately broken) entries."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from workers.ingest.signing import sign
from workers.sandbox import SandboxServer
from workers.settings import ProducerConfig, Settings

KEYS = {
    "abuse-detector": b"test-key-abuse-detector-0123456789",
    "billing": b"test-key-billing-0123456789abcdef",
    "migration": b"test-key-migration-0123456789abcd",
}
SEALING_KEY = base64.b64encode(bytes(range(64))).decode()
CORPUS = Path(__file__).with_name("hostile_corpus.jsonl")

PRODUCERS = {
    "abuse-detector": ProducerConfig(
        name="abuse-detector", key=SecretStr(KEYS["abuse-detector"].decode()), backends=("whm1",),
        commands=("suspend_outgoing", "unsuspend_outgoing", "suspend_login", "unsuspend_login", "terminate_sessions"),
    ),
    "billing": ProducerConfig(name="billing", key=SecretStr(KEYS["billing"].decode()), commands=("*",), backends=("whm1",)),
    "migration": ProducerConfig(
        name="migration", key=SecretStr(KEYS["migration"].decode()), backends=("whm1",),
        commands=("addmail", "passwd", "addforward", "delforward"),
    ),
}


@pytest.fixture
def secure_settings(settings_for: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings with signatures required, the test producers and a sealing key."""

    def build(backends: dict[str, tuple[str, SandboxServer]], **extra: Any) -> Settings:
        values: dict[str, Any] = {"require_signatures": True, "producers": PRODUCERS,
                                  "sealing_key": SecretStr(SEALING_KEY), **extra}
        return settings_for(backends, **values)

    return build


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def signed(body: dict[str, Any], *, sign_as: str | None = None, mode: str = "own", issued: str = "fresh") -> dict[str, Any]:
    """The body with ``issued_at`` set as asked and signed (or broken) as asked."""
    body = dict(body)
    now = datetime.now(UTC)
    if issued == "fresh":
        body["issued_at"] = iso(now - timedelta(seconds=5))
    elif issued == "stale":
        body["issued_at"] = iso(now - timedelta(minutes=20))
    elif issued == "future":
        body["issued_at"] = iso(now + timedelta(hours=1))
    elif issued == "absent":
        body.pop("issued_at", None)
    if "signature" in body:
        return body
    producer = sign_as or str(body.get("producer"))
    key = KEYS.get(producer, os.urandom(16))
    if mode == "own":
        body["signature"] = sign(body, key)
    elif mode == "other_key":
        other = next(k for name, k in KEYS.items() if name != producer)
        body["signature"] = sign(body, other)
    elif mode == "garbage":
        body["signature"] = "0" * 64
    elif mode == "tamper":
        body["signature"] = sign(body, key)
        body["args"] = dict(body["args"], user="other")
    return body


def corpus_payload(item: dict[str, Any], number: int) -> tuple[dict[bytes, bytes] | None, bytes]:
    """(fields for XADD, body bytes) for one corpus line; fields is None for the default ``body``."""
    encoding = item["encoding"]
    if encoding == "text":
        return None, str(item["body"]).encode("utf-8", "surrogatepass")
    if encoding == "b64":
        return None, base64.b64decode(item["body"])
    if encoding == "no_body":
        return {b"payload": b"{}"}, b""
    if encoding == "oversize":
        return None, b'{"command":"suspend_outgoing","pad":"' + b"x" * int(item["body"]) + b'"}'
    body = dict(item["body"])
    if body.get("id") == "AUTO":
        body["id"] = f"corpus-{number}"
    return None, orjson.dumps(signed(body, mode=item["sign"], issued=item["issued"]))


def load_corpus() -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in CORPUS.read_bytes().splitlines() if line.strip()]
