"""``mailops serve``: the HTTP ingress as an operator starts it, on a real port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.cli.conftest import cli_env
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.settings import Settings
from workers.store.embedded_redis import EmbeddedRedis

MAILOPS = str(Path(sys.executable).with_name("mailops"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path, redis_server: EmbeddedRedis, redis_client: redis.Redis,
           whm: SandboxServer) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``mailops serve`` as a subprocess on a free port, once /healthz answers; always stopped."""
    port = free_port()
    env = os.environ | cli_env(tmp_path, redis_server.url, {"whm1": whm})
    process = subprocess.Popen([MAILOPS, "serve", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[1].decode()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "mailops serve did not answer /healthz in 30 s"
            time.sleep(0.1)
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_serve_accepts_a_command_answers_its_status_and_stops_on_sigterm(
        served: tuple[subprocess.Popen[bytes], str], whm: SandboxServer,
        settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime]) -> None:
    process, base = served
    # Given a worker behind the ingress
    runtime_for(settings_for({"whm1": ("whm", whm)}))
    # When a webhook POSTs a command with its Idempotency-Key
    body = {"command": "suspend_outgoing", "backend": "whm1", "args": {"user": "example"}, "producer": "billing"}
    posted = httpx.post(f"{base}/v1/commands", json=body, headers={"Idempotency-Key": "hook-1"}, timeout=10)
    # Then it is accepted with a status URL, and that URL reports the command until it has succeeded
    assert posted.status_code == 202, posted.text
    assert posted.json() == {"id": "hook-1", "status": "submitted", "status_url": "/v1/commands/hook-1"}
    deadline = time.monotonic() + 30
    while True:
        status = httpx.get(f"{base}/v1/commands/hook-1", timeout=10)
        if status.status_code == 200 and status.json()["status"] == "succeeded":
            break
        assert status.status_code in (200, 404), status.text
        assert time.monotonic() < deadline, status.text
        time.sleep(0.1)
    assert status.json()["outcome"]["producer"] == "billing"
    assert [c.target for c in whm.app.ledger.changes()] == ["example"]
    # and the OpenAPI document names both routes
    paths = httpx.get(f"{base}/openapi.json", timeout=10).json()["paths"]
    assert {"/v1/commands", "/v1/commands/{command_id}"} <= set(paths)
    # When the operator stops it, Then it shuts down gracefully, exits 0 and no longer listens
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert b"Traceback" not in process.communicate()[1]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=2)


def test_serve_answers_a_missing_idempotency_key_with_400_naming_the_header(
        served: tuple[subprocess.Popen[bytes], str], redis_client: redis.Redis) -> None:
    _process, base = served
    body = {"command": "suspend_outgoing", "args": {"user": "example"}, "producer": "billing"}
    answer = httpx.post(f"{base}/v1/commands", json=body, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"]["field"] == "Idempotency-Key"
    assert redis_client.xlen("mailops:commands") == 0
