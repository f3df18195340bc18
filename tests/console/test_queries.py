"""The console's reads page through Redis indexes: every match once, newest first, nothing scanned."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import redis

from tests.console.conftest import PASSWORDS, with_console
from workers.console import queries
from workers.sandbox import SandboxServer
from workers.settings import Settings
from workers.store.command_store import CommandStore
from workers.store.dead_letters import DeadLetters


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


def test_no_page_view_runs_keys_or_scan(
    redis_client: redis.Redis, whm: SandboxServer, settings_for: Callable[..., Settings],
    console_for: Callable[..., str],
) -> None:
    # Given some records, a dead letter and a hold in their indexes
    settings = with_console(settings_for({"whm1": ("whm", whm)}))
    keys = settings.keys
    redis_client.hset(keys.command("c1"), mapping={"status": "dead_lettered", "created": 1,
                                                   "command": '{"command":"suspend_outgoing","backend":"whm1"}',
                                                   "outcome": '{"status":"dead_lettered","target":"example"}'})
    for index in (keys.command_index, keys.command_index_by("target", "example"), keys.dead_letters):
        redis_client.zadd(index, {"c1": 1})
    redis_client.hset(keys.holds("whm1", "example", "outgoing"), "abuse", '{"command":"c1"}')
    redis_client.zadd(keys.holds_index, {keys.holds("whm1", "example", "outgoing"): 1})
    base = console_for(settings)
    redis_client.config_resetstat()
    # When every page is viewed, with and without filters
    with httpx.Client(base_url=base, follow_redirects=True) as http:
        http.post("/login", data={"user": "victor", "password": PASSWORDS["victor"]})
        for path in ("/", "/live/overview", "/overview.json", "/commands", "/commands?by=target&q=example",
                     "/commands?status=dead_lettered", "/commands/c1", "/dead-letters", "/dead-letters?backend=whm1",
                     "/dead-letters?kind=timeout", "/holds", "/holds?target=example", "/holds?backend=whm1",
                     "/batches", "/backends"):
            assert http.get(path).status_code == 200, path
    # Then Redis ran neither KEYS nor SCAN
    stats = redis_client.info("commandstats")
    assert "cmdstat_keys" not in stats and "cmdstat_scan" not in stats, sorted(stats)
    assert "cmdstat_zrevrangebyscore" in stats or "cmdstat_zrange" in stats
