"""The console's reads page through Redis indexes: every match once, newest first, nothing scanned."""

from __future__ import annotations

from collections.abc import Callable

import redis

from workers.console import queries
from workers.sandbox import SandboxServer
from workers.settings import Settings


def test_a_status_filtered_search_pages_through_every_match_once_newest_first(
    redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
) -> None:
    # Given 300 commands on one backend, every third failed
    keys = settings_for({"whm1": ("whm", whm)}).keys
    for n in range(300):
        cid = f"c{n:03d}"
        redis_client.hset(keys.command(cid), mapping={"status": "failed" if n % 3 == 0 else "succeeded", "created": n})
        redis_client.zadd(keys.command_index_by("backend", "whm1"), {cid: n})
    query = queries.CommandQuery("backend", "whm1", "failed")
    # When the failed ones are paged through
    seen: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = queries.commands(redis_client, keys, query, offset)
        seen += [row.id for row in page.rows]
        assert all(row.status == "failed" for row in page.rows)
        offset = page.next_offset if page.more else None
    # Then each appears once, newest first
    assert seen == [f"c{n:03d}" for n in range(297, -1, -3)]


def test_dead_letters_filtered_by_backend_come_from_its_index_and_a_missing_record_is_left_out(
    redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
) -> None:
    from workers.command_store import CommandStore
    from workers.dead_letters import DeadLetters

    settings = settings_for({"whm1": ("whm", whm)})
    keys = settings.keys
    for n, backend in enumerate(["whm1", "whm2", "whm1", "whm1"]):
        cid = f"d{n}"
        redis_client.zadd(keys.dead_letters, {cid: 1000 + n})
        redis_client.zadd(keys.command_index_by("backend", backend), {cid: n})
        if n != 2:  # d2's record expired
            redis_client.hset(keys.command(cid), mapping={
                "status": "dead_lettered", "command": f'{{"command":"addmail","backend":"{backend}"}}',
                "outcome": '{"error":{"kind":"timeout","message":"slow"}}'})
    dead = DeadLetters(redis_client, CommandStore(redis_client, settings))
    page = queries.letters(redis_client, dead, queries.LetterQuery(backend="whm1"))
    assert [letter.id for letter in page.rows] == ["d3", "d0"]
    assert queries.matching_ids(redis_client, dead, queries.LetterQuery(kind="timeout")) == ["d3", "d1", "d0"]
