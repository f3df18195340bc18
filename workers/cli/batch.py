"""``mailops batch status ID [--follow]``: a bulk batch's progress, counts by outcome and failures.

How the counts are kept (the cheapest correct way we found): the batch record
(:meth:`Keys.batch`) knows the batch's line numbers, so every command id of the batch is known
(``<batch>-<line>``). A status read fetches the ``status`` of each command record in pipelined
``HMGET`` calls: one source of truth per command, so duplicates, retries and redeliveries can
never be counted twice, and no worker-side bookkeeping is needed. The counts are then stored in
the batch record (``counts``, ``checked``); once every command has ended they are frozen there
(``complete``), because the command records expire after the idempotency TTL.

A line that was sent but refused at ingest (for example a bad signature) has no command record
but a rejection record (:meth:`Keys.rejection`, kept as long): it counts as ``rejected`` and is
listed with the failures. ``mailops bulk`` validates every line first, so only ingest gates refuse.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
import orjson
import redis
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from schemas.events import TERMINAL_STATUSES, Event
from workers import constants
from workers.cli.batch_ids import command_id_for, decode_ranges
from workers.cli.config import connected_settings
from workers.cli.exit_codes import RET_FAILED, RET_OK, RET_TIMEOUT, RET_USAGE

#: Command ids whose record is read per pipeline.
PAGE = 1000
#: Outcomes listed as failures.
FAILED = frozenset({"failed", "dead_lettered", "rejected"})


@dataclass
class BatchStatus:
    batch_id: str
    total: int
    published: int
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[Event] = field(default_factory=list)
    complete: bool = False

    @property
    def ended(self) -> int:
        return sum(n for status, n in self.counts.items() if status in TERMINAL_STATUSES)

    def to_json(self) -> dict[str, Any]:
        return {"batch": self.batch_id, "total": self.total, "published": self.published, "ended": self.ended,
                "complete": self.complete, "counts": dict(sorted(self.counts.items())),
                "failures": [orjson.loads(e.to_json()) for e in self.failures]}


def read_status(client: redis.Redis, keys: constants.Keys, batch_id: str, *, max_failures: int = 1000) -> BatchStatus | None:
    """The batch's counts by command status (``pending`` = sent, not yet recorded; ``unsent``)."""
    raw: Any = client.hgetall(keys.batch(batch_id))
    meta = {k.decode(): v.decode() for k, v in raw.items()}
    if not meta:
        return None
    status = BatchStatus(batch_id, int(meta.get("total", 0)), int(meta.get("published", 0)))
    if meta.get("complete") == "1":
        frozen = orjson.loads(meta["counts"])
        status.counts = Counter(frozen["counts"])
        status.failures = [Event.model_validate(e) for e in frozen["failures"]]
        status.complete = True
        return status
    ids = [command_id_for(batch_id, n) for n in decode_ranges(meta.get("lines", ""))]
    for start in range(0, len(ids), PAGE):
        page = ids[start:start + PAGE]
        pipe = client.pipeline(transaction=False)
        for command_id in page:
            pipe.hmget(keys.command(command_id), "status", "outcome")
            pipe.get(keys.rejection(command_id))
        replies = pipe.execute()
        for index, ((state, outcome), rejection) in enumerate(zip(replies[::2], replies[1::2], strict=True), start=start):
            if state is None and rejection is not None:
                state, outcome = b"rejected", rejection
            if state is None:
                status.counts["pending" if index < status.published else "unsent"] += 1
                continue
            name = state.decode()
            status.counts[name] += 1
            if name in FAILED and outcome and len(status.failures) < max_failures:
                status.failures.append(Event.from_json(outcome))
    status.complete = status.total > 0 and status.ended == status.total
    summary = {"counts": dict(status.counts), "failures": [orjson.loads(e.to_json()) for e in status.failures]}
    client.hset(keys.batch(batch_id), mapping={"counts": orjson.dumps(summary), "checked": int(time.time() * 1000),
                                               "complete": int(status.complete)})
    return status


def render(status: BatchStatus, max_failures: int) -> Group:
    bar = Progress(TextColumn(f"[bold]{status.batch_id}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("ended"), auto_refresh=False)
    bar.add_task("ended", total=status.total or 1, completed=status.ended)
    counts = Table(title=f"sent {status.published} of {status.total}", show_header=True)
    counts.add_column("status")
    counts.add_column("commands", justify="right")
    for name, n in sorted(status.counts.items(), key=lambda kv: -kv[1]):
        style = "green" if name == "succeeded" else "red" if name in FAILED else ""
        counts.add_row(f"[{style}]{name}[/]" if style else name, str(n))
    parts: list[Any] = [bar, counts]
    if status.failures:
        failures = Table(title=f"failures ({len(status.failures)})")
        for column in ("id", "status", "kind", "message"):
            failures.add_column(column)
        for event in status.failures[:max_failures]:
            error = event.error
            failures.add_row(escape(event.id or ""), event.status, error.kind if error else "",
                             escape(error.message if error else ""))
        parts.append(failures)
    return Group(*parts)


@click.group()
def batch() -> None:
    """Inspect bulk batches (see `mailops bulk`).

    \b
    Example:
      mailops batch status b-6e530aebc1e5e749 --follow
    """


@batch.command("status")
@click.argument("batch_id")
@click.option("-f", "--follow", is_flag=True, help="Refresh until every command of the batch has ended.")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between refreshes with --follow.")
@click.option("--timeout", type=float, help="With --follow: give up after this many seconds (exit 5).")
@click.option("--failures", "max_failures", default=20, show_default=True, help="How many failures to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (the last one with --follow).")
def status(batch_id: str, follow: bool, interval: float, timeout: float | None, max_failures: int,
           as_json: bool) -> None:
    """Show a batch's progress and counts by outcome, and list its failures.

    Exit 0 when every command succeeded (or, without --follow, the batch is still running),
    1 when the batch ended with failures or rejections, 5 when --follow timed out.

    \b
    Example:
      mailops batch status b-6e530aebc1e5e749 --follow --timeout 600
    """
    settings, client = connected_settings()
    console = Console(highlight=False)
    current = read_status(client, settings.keys, batch_id)
    if current is None:
        click.echo(f"mailops: no batch {batch_id!r}", err=True)
        sys.exit(RET_USAGE)
    if follow:
        with Live(render(current, max_failures), console=console, transient=as_json, auto_refresh=False) as live:
            current = follow_batch(client, settings.keys, current, interval=interval, timeout=timeout,
                                   on_update=lambda status: live.update(render(status, max_failures), refresh=True))
    elif not as_json:
        console.print(render(current, max_failures))
    if as_json:
        click.echo(orjson.dumps(current.to_json()).decode())
    sys.exit(exit_code(current, followed=follow))


def follow_batch(client: redis.Redis, keys: constants.Keys, current: BatchStatus, *, interval: float = 1.0,
                 timeout: float | None = None, on_update: Callable[[BatchStatus], object] | None = None) -> BatchStatus:
    """Read the batch's status every ``interval`` seconds until every line has ended (rejected
    ones included) or ``timeout`` passed; returns the last status read."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while not current.complete:
        if deadline is not None and time.monotonic() > deadline:
            break
        time.sleep(interval)
        current = read_status(client, keys, current.batch_id) or current
        if on_update is not None:
            on_update(current)
    return current


def exit_code(status: BatchStatus, *, followed: bool) -> int:
    """0 all succeeded (or still running, when not followed), 1 ended with failures or rejections, 5 timed out."""
    if not status.complete:
        return RET_TIMEOUT if followed else RET_OK
    return RET_OK if status.counts.get("succeeded", 0) == status.total else RET_FAILED
