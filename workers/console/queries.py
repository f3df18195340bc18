"""What the console's pages show, read from Redis a page at a time.

Every read is bounded: a page of an index (``ZRANGE … LIMIT``) and one pipeline for its records.
A filter the indexes do not cover (a status, an error kind) is applied to at most
:data:`EXAMINE_MAX` entries per view, and the page says so when it stopped there.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis

from workers.attempt.holds import hold_aspects, identity_of
from workers.cli.status import snapshot
from workers.constants import Keys
from workers.settings import Settings
from workers.store.dead_letters import DeadLetter, DeadLetters
from workers.store.wire import as_text

#: Rows per page.
PAGE = 50
#: Index entries examined per view when a filter is applied after reading.
EXAMINE_MAX = 2_000
#: Entries read per round trip while filtering.
CHUNK = 500
#: Most recent events read for the overview's rates and failures and a command's events.
RECENT_EVENTS = 1_000
#: Statuses listed as failures on the overview.
FAILURES = frozenset({"failed", "dead_lettered"})


def _json(raw: Any) -> dict[str, Any]:
    if not raw:
        return {}
    data = orjson.loads(raw)
    return data if isinstance(data, dict) else {}


@dataclass
class Page:
    """One page of rows, and what the pager needs."""

    rows: list[Any]
    offset: int
    #: Entries in the index range searched (before a post-read filter).
    total: int
    more: bool
    #: A post-read filter stopped after :data:`EXAMINE_MAX` entries.
    truncated: bool = False
    #: Where the next page starts, when that is not ``offset + PAGE`` (a filter skipped entries).
    next_offset: int | None = None


def overview(client: redis.Redis, settings: Settings) -> dict[str, Any]:
    """``mailops status`` plus breaker times, accepted/ended rates and recent failures."""
    data = snapshot(client, settings, rates=False)
    keys = settings.keys
    pipe = client.pipeline(transaction=False)
    for backend in data["backends"]:
        pipe.hgetall(keys.breaker(backend))
    for backend, raw in zip(data["backends"], pipe.execute(), strict=True):
        breaker = {as_text(k): as_text(v) for k, v in raw.items()}
        info = data["backends"][backend]
        info["failures"] = int(breaker.get("failures", 0))
        opened, closed = breaker.get("opened_at"), breaker.get("closed_at")
        info["since_ms"] = int(opened) if info["breaker"] != "closed" and opened else int(closed) if closed else None
    now_ms = int(time.time() * 1000)
    counts: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    recent: Any = client.xrevrange(settings.events_stream, count=RECENT_EVENTS)
    for entry_id, fields in recent:
        event = _json(fields.get(b"body"))
        at_ms = int(as_text(entry_id).split("-")[0])
        if at_ms >= now_ms - 60_000:
            counts[str(event.get("status"))] += 1
        if event.get("status") in FAILURES and len(failures) < 20:
            failures.append(dict(event, at_ms=at_ms))
    data["per_minute"] = {name: counts.get(name, 0) for name in ("accepted", "succeeded", "failed", "dead_lettered")}
    # (newest first: the last entry read is the oldest)
    data["per_minute_truncated"] = len(recent) >= RECENT_EVENTS and int(as_text(recent[-1][0]).split("-")[0]) >= now_ms - 60_000
    data["failures"] = failures
    data["in_flight"] = sum(info["inflight"] for info in data["backends"].values())
    waiting: Counter[str] = Counter()
    for reasons in data["waiting"].values():
        waiting.update(reasons)
    data["waiting_total"] = dict(waiting)
    return data


@dataclass(frozen=True)
class CommandQuery:
    """A commands search: one index (by a field's value, or all), a time range, a status."""

    by: str = ""
    value: str = ""
    status: str = ""
    since_ms: int | None = None
    until_ms: int | None = None

    def index(self, keys: Keys) -> str:
        if self.by in ("target", "backend", "producer", "batch") and self.value:
            return keys.command_index_by(self.by, self.value)
        return keys.command_index


@dataclass
class CommandRow:
    id: str
    status: str
    created_ms: int
    attempts: int
    outcome: dict[str, Any] = field(default_factory=dict)


def commands(client: redis.Redis, keys: Keys, query: CommandQuery, offset: int = 0) -> Page:
    """Newest first, a page of the index the query names, in its time range and status."""
    index = query.index(keys)
    low = query.since_ms if query.since_ms is not None else "-inf"
    high = query.until_ms if query.until_ms is not None else "+inf"
    total = int(client.zcount(index, low, high))
    if not query.status:
        ids = [as_text(m) for m in client.zrevrangebyscore(index, high, low, start=offset, num=PAGE + 1)]
        rows = _command_rows(client, keys, ids[:PAGE])
        return Page(rows, offset, total, len(ids) > PAGE)
    matched: list[tuple[str, int]] = []
    position, examined = offset, 0
    while len(matched) <= PAGE and examined < EXAMINE_MAX:
        ids = [as_text(m) for m in client.zrevrangebyscore(index, high, low, start=position, num=CHUNK)]
        if not ids:
            break
        pipe = client.pipeline(transaction=False)
        for command_id in ids:
            pipe.hget(keys.command(command_id), "status")
        matched += [(i, position + n) for n, (i, status) in enumerate(zip(ids, pipe.execute(), strict=True))
                    if status == query.status.encode()]
        position += len(ids)
        examined += len(ids)
    rows = _command_rows(client, keys, [command_id for command_id, _ in matched[:PAGE]])
    more = len(matched) > PAGE
    return Page(rows, offset, total, more, truncated=examined >= EXAMINE_MAX and not more,
                next_offset=matched[PAGE][1] if more else None)


def _command_rows(client: redis.Redis, keys: Keys, ids: list[str]) -> list[CommandRow]:
    pipe = client.pipeline(transaction=False)
    for command_id in ids:
        pipe.hmget(keys.command(command_id), "status", "created", "attempts", "outcome")
    rows = []
    for command_id, (status, created, attempts, outcome) in zip(ids, pipe.execute(), strict=True):
        if status is None:  # the record expired before its index entry was trimmed
            continue
        rows.append(CommandRow(command_id, as_text(status), int(created or 0), int(attempts or 0), _json(outcome)))
    return rows


def command(client: redis.Redis, settings: Settings, command_id: str) -> dict[str, Any] | None:
    """Everything about one command: record, stored body, attempts, outcome, recent events, holds."""
    keys = settings.keys
    raw: Any = client.hgetall(keys.command(command_id))
    record = {as_text(k): as_text(v) for k, v in raw.items()}
    if not record:
        return None
    record.pop("fp", None)
    body = _json(record.pop("command", None))
    outcome = _json(record.pop("outcome", None))
    history: Any = client.lrange(keys.command_history(command_id), 0, -1)
    events = []
    recent: Any = client.xrevrange(settings.events_stream, count=RECENT_EVENTS)
    for entry_id, fields in recent:
        event = _json(fields.get(b"body"))
        if event.get("id") == command_id:
            events.append(dict(event, at_ms=int(as_text(entry_id).split("-")[0])))
    events.reverse()
    known = outcome or body or next(iter(events), {})
    backend, target = known.get("backend"), known.get("target")
    holds: dict[str, Any] = {}
    if backend and target:
        pipe = client.pipeline(transaction=False)
        aspects = hold_aspects()
        for aspect in aspects:
            pipe.hgetall(keys.holds(backend, target, aspect))
        for aspect, held in zip(aspects, pipe.execute(), strict=True):
            if held:
                holds[aspect] = {as_text(reason): _json(value) for reason, value in held.items()}
    return {"id": command_id, "record": record, "body": body, "outcome": outcome, "events": events,
            "attempts": [orjson.loads(item) for item in history], "backend": backend, "target": target,
            "command": known.get("command"), "producer": known.get("producer"), "batch": known.get("batch"),
            "holds": holds}


@dataclass(frozen=True)
class LetterQuery:
    """A dead-letter filter: backend, command kind, error kind, and dead-lettered at least this long ago."""

    backend: str = ""
    command: str = ""
    kind: str = ""
    older_than_s: float | None = None

    def matches(self, letter: DeadLetter) -> bool:
        return ((not self.backend or letter.backend == self.backend)
                and (not self.command or letter.command == self.command)
                and (not self.kind or letter.error_kind == self.kind))

    @property
    def filtered(self) -> bool:
        return bool(self.backend or self.command or self.kind)

    def high(self) -> float | str:
        return "+inf" if self.older_than_s is None else int((time.time() - self.older_than_s) * 1000)


def letters(client: redis.Redis, dead: DeadLetters, query: LetterQuery, offset: int = 0,
            limit: int = PAGE, examine: int = EXAMINE_MAX) -> Page:
    """Newest first, a page of the dead letters the query matches. A backend is looked up in its
    command index (ZINTER with the dead letters: as cheap as the smaller set); a command or error
    kind filters what is read, at most ``examine`` entries."""
    index = dead.keys.dead_letters
    total = int(client.zcount(index, "-inf", query.high()))
    if query.backend:
        members: Any = client.zinter([index, dead.keys.command_index_by("backend", query.backend)],
                                     aggregate="MIN", withscores=True)
        high = query.high()
        chosen = sorted(((m, s) for m, s in members if high == "+inf" or s <= float(high)),
                        key=lambda pair: -pair[1])
        if not (query.command or query.kind):  # the index answered the whole filter: page by position
            window = chosen[offset:offset + limit + 1]
            return Page(dead.letters(window[:limit]), offset, len(chosen), len(window) > limit)
        return _filtered(dead, query, chosen[:examine], offset, limit, total, truncated=len(chosen) > examine)
    if not query.filtered:
        members = client.zrevrangebyscore(index, query.high(), "-inf", start=offset, num=limit + 1, withscores=True)
        rows = dead.letters(members)
        return Page(rows[:limit], offset, total, len(members) > limit)
    members = client.zrevrangebyscore(index, query.high(), "-inf", start=0, num=examine, withscores=True)
    return _filtered(dead, query, members, offset, limit, total, truncated=len(members) >= examine)


def _filtered(dead: DeadLetters, query: LetterQuery, members: list[Any], offset: int, limit: int, total: int, *,
              truncated: bool) -> Page:
    rows: list[DeadLetter] = []
    skipped = 0
    for start in range(0, len(members), CHUNK):
        for letter in dead.letters(members[start:start + CHUNK]):
            if not query.matches(letter):
                continue
            if skipped < offset:  # a filtered page starts after the matches before it
                skipped += 1
                continue
            rows.append(letter)
        if len(rows) > limit:
            break
    return Page(rows[:limit], offset, total, len(rows) > limit, truncated=truncated)


def matching_ids(client: redis.Redis, dead: DeadLetters, query: LetterQuery) -> list[str]:
    """Every dead letter the query matches (for replay-all: an action, not a page view)."""
    page = letters(client, dead, query, limit=10**9, examine=10**9)
    return [letter.id for letter in page.rows]


@dataclass
class HoldRow:
    backend: str
    target: str
    aspect: str
    since_ms: int
    holds: dict[str, dict[str, Any]]


def holds(client: redis.Redis, settings: Settings, *, target: str = "", backend: str = "", offset: int = 0) -> Page:
    """Held targets, newest first; ``target`` looks its keys up on every backend directly."""
    keys = settings.keys
    if target:
        names = [keys.holds(b, target, a) for b in sorted(settings.backends) if backend in ("", b)
                 for a in hold_aspects()]
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.zscore(keys.holds_index, name)
        scored = [(name, score or 0) for name, score in zip(names, pipe.execute(), strict=True)]
        rows = [row for row in _hold_rows(client, keys, scored) if row.holds]
        return Page(rows, 0, len(rows), False)
    total = int(client.zcard(keys.holds_index))
    if not backend:
        members: Any = client.zrevrange(keys.holds_index, offset, offset + PAGE, withscores=True)
        rows = _hold_rows(client, keys, [(as_text(m), s) for m, s in members])
        return Page(rows[:PAGE], offset, total, len(members) > PAGE)
    members = client.zrevrange(keys.holds_index, 0, EXAMINE_MAX - 1, withscores=True)
    chosen = [(as_text(m), s) for m, s in members if (identity_of(keys.holds_family, as_text(m)) or ("",))[0] == backend]
    rows = _hold_rows(client, keys, chosen[offset:offset + PAGE])
    return Page(rows, offset, total, len(chosen) > offset + PAGE, truncated=len(members) >= EXAMINE_MAX)


def _hold_rows(client: redis.Redis, keys: Keys, scored: list[tuple[str, float]]) -> list[HoldRow]:
    pipe = client.pipeline(transaction=False)
    for name, _ in scored:
        pipe.hgetall(name)
    rows = []
    for (name, score), raw in zip(scored, pipe.execute(), strict=True):
        identity = identity_of(keys.holds_family, name)
        if identity is None:
            continue
        rows.append(HoldRow(*identity, int(score), {as_text(r): _json(v) for r, v in raw.items()}))
    return rows


def batches(client: redis.Redis, keys: Keys, offset: int = 0) -> Page:
    """Batches newest first, with their size, what was sent and the counts last checked."""
    total = int(client.zcard(keys.batch_index))
    members: Any = client.zrevrange(keys.batch_index, offset, offset + PAGE, withscores=True)
    pipe = client.pipeline(transaction=False)
    for member, _ in members[:PAGE]:
        pipe.hmget(keys.batch(as_text(member)), "total", "published", "counts", "complete", "file")
    rows = []
    for (member, score), (total_n, published, counts, complete, file) in zip(members, pipe.execute(), strict=False):
        summary = _json(counts)
        rows.append({"id": as_text(member), "first_ms": int(score), "total": int(total_n or 0),
                     "published": int(published or 0), "counts": summary.get("counts", {}),
                     "complete": as_text(complete or b"0") == "1", "file": as_text(file) if file else None})
    return Page(rows, offset, total, len(members) > PAGE)


def backends(client: redis.Redis, settings: Settings) -> list[dict[str, Any]]:
    """Each configured backend: caps and their use, breaker, waiting commands."""
    keys = settings.keys
    now_ms = int(time.time() * 1000)
    names = sorted(settings.backends)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.zcount(keys.backend_inflight(name), now_ms, "+inf")
        pipe.zcount(keys.backend_rate(name), now_ms - 1000, "+inf")
        pipe.zcard(keys.backend_parked(name))
        pipe.hgetall(keys.breaker(name))
    replies = iter(pipe.execute())
    rows = []
    for name in names:
        config = settings.backends[name]
        inflight, rate, parked, breaker = next(replies), next(replies), next(replies), next(replies)
        state = {as_text(k): as_text(v) for k, v in breaker.items()}
        rows.append({"name": name, "kind": config.kind, "host": _host(config.url), "max_concurrency": config.max_concurrency,
                     "max_rate": config.max_rate, "inflight": int(inflight), "rate_last_s": int(rate),
                     "parked": int(parked), "breaker": state.get("state", "closed"), "breaker_detail": state})
    return rows


def _host(url: str) -> str:
    """Scheme and host of a URL (never a userinfo part)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/')[0].rpartition('@')[2]}"
