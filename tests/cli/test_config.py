"""``mailops config check``: 0 for a usable configuration, 4 with the reason for a broken one."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tests.cli.conftest import Invoke
from workers.cli.exit_codes import RET_CONFIG, RET_CONNECT, RET_OK
from workers.cli.main import cli
from workers.store.embedded_redis import EmbeddedRedis


def test_config_check_of_a_good_configuration_shows_it_and_exits_zero(mailops: Invoke) -> None:
    # Given the environment of a real deployment (session Redis, one WHM sandbox backend)
    # When the operator checks it
    result = mailops("config", "check")
    # Then the backend and Redis are shown as usable, and the token itself is not printed
    assert result.exit_code == RET_OK, result.output
    assert "backend whm1" in result.stdout and "token set" in result.stdout
    assert "Redis reachable" in result.stdout and "configuration ok" in result.stdout
    assert "sandbox-whm-token" not in result.stdout


def test_config_check_of_a_backend_whose_token_variable_is_unset_exits_four_with_the_reason(
        tmp_path: Path, redis_server: EmbeddedRedis) -> None:
    # Given a backends file naming a token variable that is not set
    path = tmp_path / "broken.toml"
    path.write_text('[backends.whm1]\nkind = "whm"\nurl = "http://127.0.0.1:1"\ntoken_env = "NOT_SET_ANYWHERE"\n')
    env = {"MAILOPS_REDIS_URL": redis_server.url, "MAILOPS_CONFIG": str(path)}
    # When the operator checks it
    result = CliRunner().invoke(cli, ["config", "check"], env=env, catch_exceptions=False)
    # Then it exits 4 and names the backend and the missing variable
    assert result.exit_code == RET_CONFIG
    assert "[backends.whm1]" in result.stderr and "NOT_SET_ANYWHERE is not set" in result.stderr
    assert "configuration ok" not in result.stdout


def test_config_check_of_a_file_that_is_not_toml_exits_four_and_says_so(tmp_path: Path,
                                                                        redis_server: EmbeddedRedis) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[backends.whm1\nkind = whm\n")
    env = {"MAILOPS_REDIS_URL": redis_server.url, "MAILOPS_CONFIG": str(path)}
    result = CliRunner().invoke(cli, ["config", "check"], env=env, catch_exceptions=False)
    assert result.exit_code == RET_CONFIG
    assert "is not valid TOML" in result.stderr


def test_config_check_with_redis_down_exits_three(mailops: Invoke) -> None:
    # Given the URL of a Redis that was started and stopped again (nothing listens there)
    with EmbeddedRedis(appendonly=False) as gone:
        url = gone.url
    # When the operator checks the configuration
    result = mailops("config", "check", extra_env={"MAILOPS_REDIS_URL": url})
    # Then the file is fine but Redis is not: exit 3
    assert result.exit_code == RET_CONNECT
    assert "Redis unreachable" in result.stdout
    # and --skip-redis checks the rest only
    assert mailops("config", "check", "--skip-redis", extra_env={"MAILOPS_REDIS_URL": url}).exit_code == RET_OK
