"""Fixtures shared by the whole suite: a private Redis per session, sandboxes, worker runtimes."""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from schemas.commands import COMMANDS
from schemas.events import Event
from workers.attempt.limits import BackendLimits
from workers.attempt.retry_policy import RetryPolicy
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.sandbox.whm import WhmSandbox
from workers.settings import Settings
from workers.store.embedded_redis import REDIS_SERVER_ENV, EmbeddedRedis, redis_server_binary

WHM_TOKEN = "sandbox-whm-token"


@contextlib.contextmanager
def loopback_http(handler: type[http.server.BaseHTTPRequestHandler], *,
                  tls: ssl.SSLContext | None = None) -> Iterator[str]:
    """A threaded HTTP (or, with ``tls``, HTTPS) server on loopback for ``handler``; yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


#: Set by CI (``.ci/run`` runs with CI=true): there every tool a test needs is provisioned, so a skip is a failure.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where nothing may be skipped: {report.longrepr}"


#: Modules (or single tests, ``path::name``) whose tests touch ages, TTLs, replay windows, backoff or
#: ``issued_at``: ``scripts/test`` runs them a second time with the clock 400 days ahead (``-m clock`` under
#: faketime), so none of them depends on the day. Where one test of a module stamps ``issued_at`` the way its
#: slow neighbours do (the same helper), only that one is named: the clock pass proves the helper, not the load.
CLOCK_SENSITIVE = frozenset({
    "tests/queue/middleware/test_lifecycle.py", "tests/attempt/test_ordering.py", "tests/attempt/test_holds.py",
    "tests/store/test_dead_letters.py", "tests/attempt/test_retry_policy.py", "tests/security/test_signatures.py",
    "tests/security/test_signing_examples.py", "tests/security/test_secrets.py", "tests/store/test_command_store.py",
    "tests/tools/test_reconcile.py", "tests/test_end_to_end.py", "tests/ingest/test_reader.py", "tests/tools/test_producer.py",
    "tests/tools/test_http_ingress.py", "tests/attempt/test_limits.py",
    "tests/guarantees/test_worker_crashes.py::test_a_command_that_kills_its_worker_every_time_is_dead_lettered_after_its_attempt_cap",
    "tests/cli/test_publish.py", "tests/cli/test_bulk.py::test_a_dry_run_reports_every_bad_line_and_sends_nothing",
    "tests/cli/test_bulk.py::test_a_dry_run_of_a_good_file_names_the_batch",
    "tests/cli/test_bulk.py::test_batch_status_counts_outcomes_and_lists_the_failures",
    "tests/test_clock.py", "tests/test_fleet.py",
    "tests/test_constants.py", "tests/attempt/test_verification.py", "tests/console/test_secrets.py",
})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        module = Path(str(item.path)).relative_to(root).as_posix()
        if module in CLOCK_SENSITIVE or f"{module}::{item.originalname}" in CLOCK_SENSITIVE:
            item.add_marker(pytest.mark.clock)


def pytest_report_header() -> list[str]:
    """The versions this run used (tests/test_lock.py checks they are requirements.lock's)."""
    from importlib import metadata

    names = ("dramatiq", "redis", "hiredis", "pydantic", "httpx", "sentry-sdk", "fastapi", "mypy", "ruff")
    return ["mailops dependencies: " + ", ".join(f"{n}=={metadata.version(n)}" for n in names),
            f"redis-server: {redis_server_binary()}", f"clock at start: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"]


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MAILOPS_* variable of the developer's shell leaks into a test (but the choice of redis-server binary)."""
    for name in list(os.environ):
        if (name.startswith("MAILOPS_") and name != REDIS_SERVER_ENV) or name == "SENTRY_DSN":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """This session's own redis-server on a free port (never the machine's shared one)."""
    with EmbeddedRedis(appendonly=False) as server:
        yield server


@pytest.fixture
def redis_client(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.flushall()
    client.close()


def whm_with_accounts(count: int, *, token: str = WHM_TOKEN) -> WhmSandbox:
    """A WHM sandbox holding accounts ``u0`` … ``u<count-1>``."""
    app = WhmSandbox(token=token)
    for i in range(count):
        app.add_account(f"u{i}")
    return app


@pytest.fixture
def whm() -> Iterator[SandboxServer]:
    """A WHM sandbox with accounts ``example`` and ``other``."""
    app = WhmSandbox(token=WHM_TOKEN)
    for user in ("example", "other"):
        app.add_account(user)
    with SandboxServer(app) as server:
        yield server


def loopback_table(table: dict[str, Any]) -> dict[str, Any]:
    """A backend table for a sandbox on loopback: plain http:// allowed explicitly (the one place tests say so)."""
    if str(table.get("url", "")).startswith("http://"):
        return {"allow_insecure_http": True, **table}
    return table


def sandbox_username(kind: str, server: SandboxServer) -> dict[str, str]:
    """The login a sandbox panel expects: cPanel's first account, BrainyCP's admin (WHM defaults to root)."""
    if kind == "cpanel":
        return {"username": next(iter(server.app.tokens), "")}
    if kind == "brainycp":
        return {"username": server.app.username}
    return {}


def write_config(path: Path, backends: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for name, table in backends.items():
        lines.append(f"[backends.{name}]")
        for key, value in loopback_table(table).items():
            lines.append(f"{key} = {orjson.dumps(value).decode()}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def settings_for(tmp_path: Path, redis_server: EmbeddedRedis, redis_client: redis.Redis) -> Callable[..., Settings]:
    """Build settings for the session Redis and the given sandbox servers (name -> (kind, server))."""

    def build(backends: dict[str, tuple[str, SandboxServer]], **extra: Any) -> Settings:
        tables = {}
        env = {"MAILOPS_REDIS_URL": redis_server.url}
        for name, (kind, server) in backends.items():
            var = f"TOKEN_{name.upper()}"
            env[var] = getattr(server.app, "token", "")
            tables[name] = {"kind": kind, "url": server.url, "token_env": var, "read_timeout": 5.0,
                            **sandbox_username(kind, server), **extra.pop(name, {})}
        env["MAILOPS_CONFIG"] = str(write_config(tmp_path / "mailops.toml", tables))
        settings = Settings.from_env(env)
        # Suites that are not about producer signatures run with them explicitly off;
        # tests/security/ passes require_signatures=True and its producers.
        extra.setdefault("require_signatures", False)
        return settings.model_copy(update=extra)

    return build


def capped_limits(settings_for: Callable[..., Settings], whm: SandboxServer, cap: int, **extra: Any) -> BackendLimits:
    """Backend limits of a settings whose one backend ``whm1`` (the ``whm`` sandbox) allows ``cap`` calls at once."""
    settings = settings_for({"whm1": ("whm", whm)}, whm1={"max_concurrency": cap}, **extra)
    return BackendLimits(redis.Redis.from_url(str(settings.redis_url)), settings)


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.005)


@pytest.fixture
def runtime_for() -> Iterator[Callable[..., Runtime]]:
    started: list[Runtime] = []

    def start(settings: Settings, **kwargs: Any) -> Runtime:
        runtime = Runtime(settings, **kwargs).start()
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.stop(drain_timeout_ms=2000)


def add_command(client: redis.Redis, body: dict[str, Any] | bytes | str, stream: str = "mailops:commands") -> str:
    """XADD a command exactly as redis-cli would: one field ``body``."""
    payload = body if isinstance(body, bytes | str) else orjson.dumps(body)
    return client.xadd(stream, {"body": payload}).decode()


def read_events(client: redis.Redis, stream: str = "mailops:events") -> list[Event]:
    return [Event.from_json(fields[b"body"]) for _id, fields in client.xrange(stream)]


def wait_for_terminal(
    client: redis.Redis, ids: set[str] | None = None, *, count: int | None = None, timeout: float = 30.0,
    stream: str = "mailops:events",
) -> list[Event]:
    """Wait until every id in ``ids`` (or ``count`` entries) has a terminal event; return all events."""
    deadline = time.monotonic() + timeout
    while True:
        events = read_events(client, stream)
        terminal = [e for e in events if e.terminal]
        if ids is not None and ids <= {e.id for e in terminal if e.id}:
            return events
        if count is not None and len(terminal) >= count:
            return events
        if time.monotonic() > deadline:
            have = len(terminal)
            raise AssertionError(f"timed out waiting for terminal events: have {have}; last: {events[-3:]}")
        time.sleep(0.02)


def retry_for(monkeypatch: pytest.MonkeyPatch, command: str, policy: RetryPolicy) -> None:
    """Give ``command``'s spec another retry policy for one test (in this process: the runtime's worker threads)."""
    monkeypatch.setitem(COMMANDS, command, dataclasses.replace(COMMANDS[command], retry=policy))


@pytest.fixture(autouse=True)
def _unit_tests_open_no_socket(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unit layer (``pytest -m unit``): a test marked ``unit`` fails if it opens a connection, so
    it needs no Redis and no HTTP server."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a unit test opened a connection (it needs no Redis and no HTTP)")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
