"""``mailops routes list|set|remove`` through the real entry point against the session Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from click.testing import CliRunner, Result

from tests.conftest import write_config
from workers.cli.exit_codes import RET_CONFIG, RET_FAILED, RET_OK
from workers.cli.main import cli
from workers.store.embedded_redis import EmbeddedRedis

ROUTES = "mailops:routes"


@pytest.fixture
def configured(tmp_path: Path, redis_server: EmbeddedRedis, redis_client: redis.Redis,
               monkeypatch: pytest.MonkeyPatch) -> redis.Redis:
    """MAILOPS_* pointing at the session Redis and a config with backends whm1 (seeding two targets) and cp1."""
    config = write_config(tmp_path / "mailops.toml", {
        "whm1": {"kind": "whm", "url": "http://127.0.0.1:9", "token_env": "TOKEN_WHM1",
                 "targets": ["example.example", "Example"]},
        "cp1": {"kind": "cpanel", "url": "http://127.0.0.1:9", "username": "shop", "token_env": "TOKEN_CP1"},
    })
    monkeypatch.setenv("MAILOPS_REDIS_URL", redis_server.url)
    monkeypatch.setenv("MAILOPS_CONFIG", str(config))
    monkeypatch.setenv("TOKEN_WHM1", "t1")
    monkeypatch.setenv("TOKEN_CP1", "t2")
    return redis_client


def routes(*args: str) -> Result:
    return CliRunner().invoke(cli, ["routes", *args], catch_exceptions=False)


def stored(client: redis.Redis) -> dict[str, str]:
    raw: dict[bytes, bytes] = client.hgetall(ROUTES)  # type: ignore[assignment]
    return {k.decode(): v.decode() for k, v in raw.items()}


def test_list_seeds_the_configured_targets_and_prints_them(configured: redis.Redis) -> None:
    # Given an empty route map and a config whose whm1 serves example.example and account Example
    assert stored(configured) == {}
    # When the routes are listed
    result = routes("list")
    # Then the seeds are stored (lower-cased) and printed as TARGET<TAB>BACKEND, sorted
    assert result.exit_code == RET_OK, result.output
    assert result.output == "example\twhm1\nexample.example\twhm1\n"
    assert stored(configured) == {"example": "whm1", "example.example": "whm1"}


def test_set_moves_a_target_to_another_backend_and_list_shows_it(configured: redis.Redis) -> None:
    # Given the seeded map
    routes("list")
    # When a migration moves example.example to cp1 and adds shop.example
    moved = routes("set", "Example.Example", "cp1")
    added = routes("set", "shop.example", "cp1")
    listed = routes("list")
    # Then both are stored, and listing again does not put the seed back over the operator's change
    assert (moved.exit_code, moved.output) == (RET_OK, "example.example\tcp1\n")
    assert added.exit_code == RET_OK
    assert stored(configured) == {"example": "whm1", "example.example": "cp1", "shop.example": "cp1"}
    assert listed.output == "example\twhm1\nexample.example\tcp1\nshop.example\tcp1\n"


def test_set_refuses_a_backend_that_is_not_configured(configured: redis.Redis) -> None:
    # When a target is routed to a backend the config does not name
    result = routes("set", "shop.example", "nowhere")
    # Then it fails with a message naming the backend, and nothing is stored
    assert result.exit_code == RET_FAILED
    assert "nowhere" in result.output
    assert stored(configured) == {}


def test_remove_deletes_a_route_and_fails_for_a_missing_one(configured: redis.Redis) -> None:
    # Given a route for shop.example
    routes("set", "shop.example", "cp1")
    # When it is removed, then removed again
    first = routes("remove", "SHOP.example")
    second = routes("remove", "shop.example")
    # Then the first removal succeeds and the second fails naming the target
    assert first.exit_code == RET_OK
    assert stored(configured) == {}
    assert second.exit_code == RET_FAILED
    assert "no route for 'shop.example'" in second.output


def test_a_broken_config_file_exits_with_the_configuration_code(configured: redis.Redis, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a config file naming a backend kind that does not exist
    bad = write_config(tmp_path / "bad.toml", {"x1": {"kind": "plesk", "url": "http://127.0.0.1:9", "token_env": "T"}})
    monkeypatch.setenv("MAILOPS_CONFIG", str(bad))
    monkeypatch.setenv("T", "t")
    # When routes are listed
    result = routes("list")
    # Then the command exits with the configuration error code and touches nothing
    assert result.exit_code == RET_CONFIG, result.output
    assert stored(configured) == {}
