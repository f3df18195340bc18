"""``mailops worker --check``: the probe the Dockerfile, compose and Kubernetes run."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from click.testing import CliRunner

from workers.cli.exit_codes import RET_CONNECT, RET_FAILED, RET_OK
from workers.cli.health import heartbeats_key
from workers.cli.main import cli
from workers.runtime import Runtime
from workers.settings import Settings
from workers.store.embedded_redis import EmbeddedRedis, free_port


def check(env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["worker", "--check"], env=env)
    return result.exit_code, result.output


def test_the_check_is_red_when_no_worker_process_heartbeats(redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    # Given a reachable Redis where no worker runs
    # When the probe runs
    code, output = check({"MAILOPS_REDIS_URL": redis_server.url})
    # Then it fails, and says why
    assert code == RET_FAILED
    assert "no worker heartbeat" in output


def test_the_check_is_green_while_a_worker_runs_and_red_once_its_heartbeat_is_stale(
    redis_server: EmbeddedRedis, redis_client: redis.Redis, runtime_for: Callable[..., Runtime]
) -> None:
    # Given a running worker
    settings = Settings.from_env({"MAILOPS_REDIS_URL": redis_server.url})
    runtime = runtime_for(settings, threads=1)
    key = heartbeats_key(settings)
    deadline = time.monotonic() + 20
    while not redis_client.zcard(key) and time.monotonic() < deadline:
        time.sleep(0.1)
    # When the probe runs, then it passes
    code, output = check({"MAILOPS_REDIS_URL": redis_server.url})
    assert (code, "1 worker process" in output) == (RET_OK, True), output
    # When the worker stops and its last heartbeat is older than the heartbeat timeout
    # (a drain long enough that its consumer threads are joined: a live one would heartbeat on its next fetch)
    runtime.stop(drain_timeout_ms=5000)
    stale = {str(member, "ascii") if isinstance(member, bytes) else str(member): 1
             for member in redis_client.zrange(key, 0, -1)}
    redis_client.zadd(key, stale)  # scores in ms since the epoch: 1970, long stale
    # Then the probe fails
    assert check({"MAILOPS_REDIS_URL": redis_server.url})[0] == RET_FAILED


def test_the_check_reports_an_unreachable_redis_with_its_own_exit_code() -> None:
    # Given a Redis URL where nothing listens
    code, output = check({"MAILOPS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    # Then the probe fails with the connect code
    assert code == RET_CONNECT, output
    assert "Redis unreachable" in output


def test_the_check_is_red_on_a_host_whose_worker_is_gone_while_other_hosts_heartbeat(
    redis_server: EmbeddedRedis, redis_client: redis.Redis
) -> None:
    # Given a fresh heartbeat from a worker process on another host only
    settings = Settings.from_env({"MAILOPS_REDIS_URL": redis_server.url})
    redis_client.zadd(heartbeats_key(settings), {"other-pod-7f9c-4242-a1b2c3": int(time.time() * 1000)})
    # When this host's probe runs
    code, output = check({"MAILOPS_REDIS_URL": redis_server.url})
    # Then it fails (this pod is not consuming), and says the fleet still is
    assert code == RET_FAILED, output
    assert "no worker heartbeat from this host" in output and "1 worker process(es) heartbeating elsewhere" in output
