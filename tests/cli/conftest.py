"""Helpers for driving the real ``mailops`` entry point against the session Redis and the sandbox."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.conftest import write_config
from workers.cli.main import cli
from workers.sandbox import SandboxServer
from workers.store.embedded_redis import EmbeddedRedis

Invoke = Callable[..., Result]


def cli_env(tmp_path: Path, redis_url: str, backends: dict[str, SandboxServer], **tables: dict[str, object]) -> dict[str, str]:
    """Environment for ``mailops``: the given Redis and one WHM backend per sandbox."""
    env = {"MAILOPS_REDIS_URL": redis_url}
    config = {}
    for name, server in backends.items():
        var = f"TOKEN_{name.upper()}"
        env[var] = getattr(server.app, "token", "")
        config[name] = {"kind": "whm", "url": server.url, "token_env": var, "read_timeout": 5.0, **tables.get(name, {})}
    path = write_config(tmp_path / "cli.toml", config)
    # Producers here are trusted test code; signing is covered by its own tests.
    path.write_text("[mailops]\nrequire_signatures = false\n" + path.read_text())
    env["MAILOPS_CONFIG"] = str(path)
    return env


@pytest.fixture
def mailops(tmp_path: Path, redis_server: EmbeddedRedis, whm: SandboxServer) -> Invoke:
    """Run ``mailops ARGS...`` through click's runner with the environment of a real deployment."""
    env = cli_env(tmp_path, redis_server.url, {"whm1": whm})

    def invoke(*args: str, input: str | None = None, extra_env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), env=env | (extra_env or {}), input=input, catch_exceptions=False)

    return invoke
