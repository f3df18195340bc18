"""Lua scripts (workers/store/lua.py): registered, loaded ahead of their first call."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

import redis

import workers
from schemas.events import SCRIPT_TEXTS
from workers.attempt.limits import BackendLimits
from workers.attempt.ordering import TargetGuard
from workers.constants import DOORBELL_TOKENS, DOORBELL_TTL_MS
from workers.queue.broker import build_broker
from workers.sandbox import SandboxServer
from workers.settings import Settings
from workers.store.command_store import CommandStore
from workers.store.lua import load_scripts, lua_script, prelude, registered


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
    # When a script (one that calls ring gets the prelude's) rings a doorbell more often than it keeps tokens
    redis_client.eval(prelude() + f"for _ = 1, {DOORBELL_TOKENS + 5} do ring(KEYS[1]) end", 1, "bell")
    # Then it holds DOORBELL_TOKENS tokens, expiring within DOORBELL_TTL_MS
    assert redis_client.llen("bell") == DOORBELL_TOKENS
    assert 0 < redis_client.pttl("bell") <= DOORBELL_TTL_MS


SCRIPTS = Path(workers.__file__).parent / "store" / "scripts"


def test_no_python_module_of_workers_holds_lua_source_in_a_string() -> None:
    # Given every string constant in every module of the workers package
    lua = re.compile(r"redis\.p?call\(|\bKEYS\[\d|\bARGV\[\d|\b(?:then|do|end)\n")
    found = []
    for path in Path(workers.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            # Then none of them is Lua: scripts live in workers/store/scripts/*.lua
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and lua.search(node.value):
                found.append(f"{path}:{node.lineno}")
    assert not found


def test_each_shared_lua_helper_is_defined_once_and_no_script_writes_its_commands_again() -> None:
    # Given the shared helper files and every function they define
    helper_files = {"prelude.lua", "lifecycle.lua", "stamps.lua"}
    texts = {p.name: p.read_text(encoding="utf-8") for p in SCRIPTS.glob("*.lua")}
    bodies = {match.group(1): match.group(0) for name in helper_files
              for match in re.finditer(r"(?ms)^local function (\w+)\(.*?^end$", texts[name])}
    assert {"ring", "unpark", "publish", "add_history", "enqueue", "parse", "older", "now_ms"} <= set(bodies)
    # Then each helper's name and body stand once across all scripts
    for name, body in bodies.items():
        assert sum(len(re.findall(rf"local function {name}\(", text)) for text in texts.values()) == 1, name
        assert sum(text.count(body) for text in texts.values()) == 1, name
    # And the Redis commands the helpers issue (events, history, enqueue, clock, stamp pattern) are
    # written in the helper files only: every script goes through the helpers
    for needle in ['"XADD"', '"LTRIM"', '"RPUSH"', '"TIME"', r'"^(%d+)|(%d+)|']:
        using = {name for name, text in texts.items() if needle in text}
        assert using and using <= helper_files, (needle, using)


def test_a_script_carries_the_shared_helpers_it_calls_and_those_they_call_and_no_other() -> None:
    # Given scripts that call some shared helpers
    def defined(name: str) -> list[str]:
        return re.findall(r"local function (\w+)\(", lua_script(name))

    # Then each starts with just those helpers (every call of a script defines its functions anew),
    # a helper before those that call it
    assert defined("begin") == ["add_history"]
    assert defined("finish") == ["publish", "add_history"]
    assert defined("admit") == ["ring", "publish", "enqueue", "announce"]
    assert defined("order_take") == ["parse", "older", "now_ms", "owner"]
    assert defined("order_commit") == ["parse", "older", "now_ms"] and defined("order_release") == []
    assert defined("limits_release") == ["ring", "unpark"]


def test_replay_publishes_on_the_events_and_reply_to_streams_and_keeps_the_last_history_entries(
        redis_client: redis.Redis) -> None:
    # Given a dead-lettered command record whose history already holds three entries
    replay = registered(redis_client, lua_script("replay"))
    redis_client.hset("rec", mapping={"status": "dead_lettered", "gen": 1})
    redis_client.zadd("dlq", {"c-1": 1})
    redis_client.rpush("history", "h1", "h2", "h3")
    keys = ["rec", "dlq", "events", "queue", "queue.msgs", "history", "queue.bell", "replies"]
    # When it is replayed with a history of at most two entries
    verdict = replay(keys=keys, args=[1000, "m-1", "data", '{"status":"accepted"}', 100, "h4", 2, 60, "c-1", 2])
    # Then both streams got the event, the history kept its last two entries, and the message is queued
    assert verdict == b"replayed"
    assert [e[1][b"body"] for e in redis_client.xrange("events")] == [b'{"status":"accepted"}']
    assert [e[1][b"body"] for e in redis_client.xrange("replies")] == [b'{"status":"accepted"}']
    assert redis_client.lrange("history", 0, -1) == [b"h3", b"h4"]
    assert 0 < redis_client.ttl("history") <= 60
    assert redis_client.lrange("queue", 0, -1) == [b"m-1"] and redis_client.hget("queue.msgs", "m-1") == b"data"
    assert redis_client.llen("queue.bell") == 1 and not redis_client.zscore("dlq", "c-1")


def test_the_texts_scripts_write_are_defined_once_in_python_and_filled_in_when_loaded() -> None:
    # Given the script files as written and as loaded
    written = {p.stem: p.read_text(encoding="utf-8") for p in SCRIPTS.glob("*.lua")}
    loaded = {name: lua_script(name) for name in written if name not in {"prelude", "lifecycle", "stamps"}}
    # Then no script writes an error message of its own: each names a text of schemas.events.SCRIPT_TEXTS
    assert [name for name, source in written.items() if re.search(r'message\s*=\s*"', source)] == []
    named = {match for source in written.values() for match in re.findall(r"\b[A-Z_]+_TEXT\b", source)}
    assert named == set(SCRIPT_TEXTS)
    # And once loaded, each text is there as a Lua string and no placeholder is left
    assert all(f'"{SCRIPT_TEXTS[name]}"' in "".join(loaded.values()) for name in named)
    assert [name for name, source in loaded.items() if re.search(r"\b[A-Z_]+_TEXT\b", source)] == []
