"""Lua scripts (workers/lua.py): registered, loaded ahead of their first call."""

from __future__ import annotations

from collections.abc import Callable

import redis

from workers.broker import build_broker
from workers.command_store import CommandStore
from workers.constants import DOORBELL_TOKENS, DOORBELL_TTL_MS
from workers.limits import BackendLimits
from workers.lua import load_scripts, prelude
from workers.ordering import TargetGuard
from workers.sandbox import SandboxServer
from workers.settings import Settings


def test_every_registered_script_is_in_redis_after_loading_them(
        redis_client: redis.Redis, settings_for: Callable[..., Settings], whm: SandboxServer) -> None:
    # Given the scripts a worker registers, and a Redis that holds none of them (a restart)
    settings = settings_for({"whm1": ("whm", whm)})
    store = CommandStore(redis_client, settings)
    limits = BackendLimits(redis_client, settings)
    guard = TargetGuard(redis_client, settings.keys)
    broker = build_broker(redis_client, settings, [])
    scripts = [store._admit, store._begin, store._finish, store._retry, limits._acquire, limits._release,
               guard._take, guard._commit, guard._release, broker._reap, broker.fetch_script, broker.scripts["dispatch"]]
    redis_client.script_flush()
    assert not any(redis_client.script_exists(*[s.sha for s in scripts]))
    # When they are loaded (as a worker starts)
    assert load_scripts(redis_client) >= len(scripts)
    # Then Redis has every one of them
    assert all(redis_client.script_exists(*[s.sha for s in scripts]))


def test_a_doorbell_rung_by_a_script_keeps_the_configured_tokens_for_the_configured_time(
        redis_client: redis.Redis) -> None:
    # When a script (any of them starts with the prelude) rings a doorbell more often than it keeps tokens
    redis_client.eval(prelude() + f"for _ = 1, {DOORBELL_TOKENS + 5} do ring(KEYS[1]) end", 1, "bell")
    # Then it holds DOORBELL_TOKENS tokens, expiring within DOORBELL_TTL_MS
    assert redis_client.llen("bell") == DOORBELL_TOKENS
    assert 0 < redis_client.pttl("bell") <= DOORBELL_TTL_MS
