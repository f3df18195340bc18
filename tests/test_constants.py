"""Key names: no command id, batch id or target can spell another key."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import redis

from tests.clock import iso
from tests.conftest import add_command, wait_for_terminal
from workers.constants import Keys, key_name, key_part
from workers.runtime import Runtime
from workers.sandbox import SandboxServer
from workers.settings import Settings

PLACEHOLDER = "PLACEHOLDER"


def key_suffixes() -> set[str]:
    """Every literal segment of every key name ``Keys`` builds (``history``, ``inflight``, ``hold``...)."""
    keys = Keys()
    found: set[str] = set()
    for name, member in inspect.getmembers(Keys):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            value = getattr(keys, name)
        elif inspect.isfunction(member):
            params = [p for p in inspect.signature(member).parameters if p != "self"]
            value = member(keys, *[PLACEHOLDER] * len(params))
        else:
            continue
        if isinstance(value, str):
            found.update(part for part in value.split(":")[1:] if part and part != PLACEHOLDER)
    return found


def test_a_key_part_never_contains_a_separator_or_a_glob_and_reads_back() -> None:
    for name in ("X:history", "X:*", "a?b[c]", "50%", "plain-id_1.2@x/y"):
        part = key_part(name)
        assert not set(part) & set(":*?[]\\ ")
        assert key_name(part) == name
    assert key_part("plain-id_1.2@x/y") == "plain-id_1.2@x/y"


def test_ids_that_spell_another_commands_keys_end_once_each_on_their_own_keys(
    redis_client: redis.Redis, settings_for: Callable[..., Settings], runtime_for: Callable[..., Runtime],
    whm: SandboxServer,
) -> None:
    # given: commands whose ids are X followed by every key suffix, and X:* — then X itself
    settings = settings_for({"whm1": ("whm", whm)})
    keys = settings.keys
    runtime_for(settings)
    hostile = [f"X:{suffix}" for suffix in sorted(key_suffixes())] + ["X:*"]
    assert "X:history" in hostile
    start = datetime.now(UTC) - timedelta(minutes=5)
    ids = [*hostile, "X"]
    # when: they run one after another on one account
    for n, cid in enumerate(ids):
        add_command(redis_client, {"id": cid, "command": "terminate_sessions", "backend": "whm1",
                                   "args": {"user": "example"}, "producer": "ops",
                                   "issued_at": iso(start + timedelta(seconds=n))})
        wait_for_terminal(redis_client, {cid}, timeout=15)
    events = wait_for_terminal(redis_client, set(ids))
    # then: each ends with exactly one terminal event (X:* is not a valid id and is rejected)
    terminal = [e for e in events if e.terminal]
    assert sorted(str(e.id) for e in terminal) == sorted(ids)
    ends = {e.id: e.status for e in terminal}
    assert ends.pop("X:*") == "rejected"
    assert set(ends.values()) == {"succeeded"}
    # and: on the right keys: each id has its own record and history list
    for cid in ids[:-2] + ["X"]:
        assert redis_client.type(keys.command(cid)) == b"hash"
        assert redis_client.hget(keys.command(cid), "status") == b"succeeded"
        assert redis_client.type(keys.command_history(cid)) == b"list"
    assert keys.command("X:history") != keys.command_history("X")
