"""``mailops events tail``: the latest events, filtered, optionally followed live."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import click
import redis
from rich.console import Console
from rich.markup import escape

from schemas.events import Event
from workers import constants
from workers.cli.config import connected_settings
from workers.cli.event_format import STYLE, outcome_suffix, what
from workers.cli.exit_codes import RET_OK
from workers.store.wire import as_text


@dataclass(frozen=True)
class EventFilter:
    """Which events to show; an empty field matches everything."""

    ids: frozenset[str] = frozenset()
    producers: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()
    backends: frozenset[str] = frozenset()
    batch: str | None = None

    def matches(self, event: Event) -> bool:
        return (
            (not self.ids or event.id in self.ids)
            and (not self.producers or event.producer in self.producers)
            and (not self.statuses or event.status in self.statuses)
            and (not self.backends or event.backend in self.backends)
            and (self.batch is None or event.batch == self.batch)
        )



def latest(client: redis.Redis, stream: str, match: EventFilter, count: int) -> tuple[list[Event], str]:
    """The last ``count`` matching events, oldest first, and the stream's last entry id."""
    found: list[Event] = []
    top: Any = client.xrevrange(stream, count=1)
    last = as_text(top[0][0]) if top else "0-0"
    end = "+"
    while count > 0 and len(found) < count:
        page: Any = client.xrevrange(stream, max=end, count=1000)
        for _entry_id, fields in page:
            event = Event.from_json(fields[constants.BODY_FIELD.encode()])
            if match.matches(event):
                found.append(event)
                if len(found) == count:
                    break
        if len(page) < 1000:
            break
        end = f"({as_text(page[-1][0])}"
    return list(reversed(found)), last


def follow_events(client: redis.Redis, stream: str, match: EventFilter, cursor: str) -> Iterator[Event]:
    """Matching events added after ``cursor``, forever."""
    while True:
        reply: Any = client.xread({stream: cursor}, count=500, block=1000)
        for _stream, items in reply or []:
            for entry_id, fields in items:
                cursor = as_text(entry_id)
                event = Event.from_json(fields[constants.BODY_FIELD.encode()])
                if match.matches(event):
                    yield event


def render(console: Console, event: Event) -> None:
    style = STYLE.get(event.status, "")
    stamp = event.at.strftime("%H:%M:%S.%f")[:-3]
    console.print(f"[dim]{stamp}[/] [{style}]{event.status:>13}[/] {escape(event.id or '(no id)')} "
                  f"{escape(what(event))} [dim]{escape(event.producer or '')}[/]{outcome_suffix(event)}")


@click.group()
def events() -> None:
    """Read the events stream.

    \b
    Example:
      mailops events tail -n 20
    """


@events.command("tail")
@click.option("-n", "--count", default=20, show_default=True, type=click.IntRange(0),
              help="How many of the latest matching events to show first.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events as they arrive (Ctrl-C stops).")
@click.option("--id", "ids", multiple=True, help="Only this command id (repeatable).")
@click.option("--producer", "producers", multiple=True, help="Only this producer (repeatable).")
@click.option("--status", "statuses", multiple=True, help="Only this status (repeatable), e.g. failed.")
@click.option("--backend", "backends", multiple=True, help="Only this backend (repeatable).")
@click.option("--batch", help="Only events of this bulk batch.")
@click.option("--json", "as_json", is_flag=True, help="Print each event as one line of JSON.")
@click.option("--max", "max_events", type=click.IntRange(1), help="Stop after printing this many events.")
def tail(count: int, follow: bool, ids: tuple[str, ...], producers: tuple[str, ...], statuses: tuple[str, ...],
         backends: tuple[str, ...], batch: str | None, as_json: bool, max_events: int | None) -> None:
    """Show the latest events (filtered by id, producer, status, backend or batch); --follow for live.

    \b
    Example:
      mailops events tail --follow --backend whm1 --status failed
    """
    settings, client = connected_settings()
    match = EventFilter(frozenset(ids), frozenset(producers), frozenset(statuses), frozenset(backends), batch)
    console = Console(highlight=False, soft_wrap=True)
    printed = 0

    def show(event: Event) -> bool:
        nonlocal printed
        if as_json:
            click.echo(event.to_json().decode())
        else:
            render(console, event)
        printed += 1
        return max_events is not None and printed >= max_events

    history, cursor = latest(client, settings.events_stream, match, count)
    for event in history:
        if show(event):
            sys.exit(RET_OK)
    if follow:
        try:
            for event in follow_events(client, settings.events_stream, match, cursor):
                if show(event):
                    break
        except KeyboardInterrupt:
            pass
    sys.exit(RET_OK)
