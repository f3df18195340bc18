"""The README's first command: ``mailops demo`` prints the events of every backend kind and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys

import redis

from workers.store.embedded_redis import EmbeddedRedis


def test_the_demo_prints_every_commands_terminal_event_on_all_three_backend_kinds_and_exits_0() -> None:
    # Given a shell with no Redis configured (the demo starts its own)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILOPS_")}
    # When the demo runs through the real entry point
    done = subprocess.run([sys.executable, "-m", "workers", "demo"], env=env, capture_output=True, text=True,
                          timeout=120)
    # Then it exits 0 after every command got its terminal event
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "every command has its terminal event" in out
    # And it ran on WHM, cPanel and BrainyCP, showing successes, a duplicate, a panel refusal and rejections
    for backend in ("whm1", "cp1", "brainy1"):
        assert f"on {backend}" in out
    for status in ("succeeded", "duplicate", "failed", "rejected"):
        assert status in out
    assert "SIGNATURES DISABLED" not in done.stderr


def keys_and_size(client: redis.Redis) -> tuple[int, set[bytes]]:
    return client.dbsize(), set(client.scan_iter(count=1000))


def test_the_demo_with_mailops_redis_url_exported_leaves_that_redis_untouched() -> None:
    # Given a production-like Redis with some keys of its own, exported as MAILOPS_REDIS_URL
    with EmbeddedRedis(appendonly=False) as production:
        client = redis.Redis.from_url(production.url)
        client.set("mailops:cmd:existing", "x")
        client.xadd("mailops:commands", {"body": b"{}"})
        client.hset("billing:state", "a", "1")
        before = keys_and_size(client)
        env = {**os.environ, "MAILOPS_REDIS_URL": production.url}
        # When the demo runs there
        done = subprocess.run([sys.executable, "-m", "workers", "demo"], env=env, capture_output=True, text=True,
                              timeout=120)
        # Then it ran on its own Redis, and that Redis has exactly the keys it had
        assert done.returncode == 0, done.stdout + done.stderr
        assert keys_and_size(client) == before
        assert client.xlen("mailops:commands") == 1
        client.close()


def test_the_demo_on_an_explicit_redis_url_warns_uses_a_run_prefix_and_cleans_up() -> None:
    with EmbeddedRedis(appendonly=False) as other:
        client = redis.Redis.from_url(other.url)
        client.set("mailops:cmd:existing", "x")
        before = keys_and_size(client)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILOPS_")}
        done = subprocess.run([sys.executable, "-m", "workers", "demo", "--redis-url", other.url], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "WARNING" in done.stderr and "key prefix mailops-demo-" in done.stderr
        assert keys_and_size(client) == before
        client.close()
