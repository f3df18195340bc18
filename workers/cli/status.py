"""``mailops status``: one screen of what is queued, waiting, broken and alive, read from Redis."""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from typing import Any

import click
import orjson
import redis
from rich.console import Console
from rich.table import Table

from schemas.events import Event
from workers.cli.config import connected_settings
from workers.cli.exit_codes import RET_OK
from workers.metrics import State, read_state
from workers.settings import Settings

#: Seconds of the events stream the rates are taken from, and the most entries read for them.
RATE_WINDOW_S = 60
RATE_MAX_ENTRIES = 10_000


def recent_rates(client: redis.Redis, settings: Settings, now_ms: int) -> dict[str, Any]:
    """Terminal events per status in the last minute (from the events stream; bounded read)."""
    entries: Any = client.xrange(settings.events_stream, min=f"{now_ms - RATE_WINDOW_S * 1000}-0", max="+",
                                 count=RATE_MAX_ENTRIES)
    counts: Counter[str] = Counter()
    for _id, fields in entries:
        try:
            event = Event.from_json(fields[b"body"])
        except (KeyError, ValueError):
            continue
        if event.terminal:
            counts[event.status] += 1
    return {"window_s": RATE_WINDOW_S, "truncated": len(entries) >= RATE_MAX_ENTRIES,
            "per_minute": dict(sorted(counts.items()))}


def snapshot(client: redis.Redis, settings: Settings, *, rates: bool = True) -> dict[str, Any]:
    """The status as plain data (what ``--json`` prints; without ``rates``, the console counts its own)."""
    now_ms = int(time.time() * 1000)
    state: State = read_state(client, settings)
    return {
        "queues": state.queues,
        "waiting": {backend: info.waiting for backend, info in state.backends.items()},
        "backends": {backend: {"breaker": info.breaker, "inflight": info.inflight}
                     for backend, info in state.backends.items()},
        "workers": [{"id": worker, "heartbeat_age_s": round(age / 1000, 1),
                     "live": age <= settings.heartbeat_timeout_ms}
                    for worker, age in sorted(state.workers.items(), key=lambda item: item[1])],
        "dead_letters": state.dead_letters,
        "ingest": {"lag": None if math.isnan(state.ingest_lag) else int(state.ingest_lag),
                   "pending": state.ingest_pending},
        "rates": recent_rates(client, settings, now_ms) if rates else None,
    }


def render(console: Console, status: dict[str, Any]) -> None:
    queues = Table(title="queues (by priority)")
    for column in ("queue", "ready", "delayed"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    for queue, counts in status["queues"].items():
        queues.add_row(queue, str(counts["ready"]), str(counts["delayed"]))
    console.print(queues)
    backends = Table(title="backends")
    for column in ("backend", "breaker", "in flight", "waiting: backend_down", "cap_full", "target_busy"):
        backends.add_column(column)
    for backend, info in status["backends"].items():
        waiting = status["waiting"][backend]
        breaker = f"[red]{info['breaker']}[/]" if info["breaker"] != "closed" else info["breaker"]
        backends.add_row(backend, breaker, str(info["inflight"]), str(waiting.get("backend_down", 0)),
                         str(waiting.get("cap_full", 0)), str(waiting.get("target_busy", 0)))
    console.print(backends if status["backends"] else "backends: none configured")
    workers = Table(title="workers")
    for column in ("worker", "heartbeat age", "live"):
        workers.add_column(column)
    for worker in status["workers"]:
        workers.add_row(worker["id"], f"{worker['heartbeat_age_s']:.1f} s", "yes" if worker["live"] else "[red]no[/]")
    console.print(workers if status["workers"] else "[red]workers: none has a heartbeat[/]")
    ingest = status["ingest"]
    console.print(f"dead letters: {status['dead_letters']}   ingest lag: "
                  f"{'unknown' if ingest['lag'] is None else ingest['lag']} entries, pending {ingest['pending']}")
    rates = status["rates"]
    shown = ", ".join(f"{name} {n}" for name, n in rates["per_minute"].items()) or "none"
    console.print(f"terminal events in the last {rates['window_s']} s: {shown}"
                  + (" (truncated)" if rates["truncated"] else ""))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
def status(as_json: bool) -> None:
    """Show queues by priority, waiting commands by reason and backend, breakers, workers with
    their heartbeat age, the dead-letter queue, ingest lag and recent rates, in one screen.

    \b
    Example:
      mailops status --json
    """
    settings, client = connected_settings()
    try:
        data = snapshot(client, settings)
    finally:
        client.close()
    if as_json:
        click.echo(orjson.dumps(data).decode())
    else:
        render(Console(highlight=False, soft_wrap=True), data)
    sys.exit(RET_OK)
