"""``mailops bulk FILE.csv|FILE.jsonl``: publish a migration with a live progress bar, resumably.

Every line's command id is ``<batch>-<line>``, where the batch id derives from the SHA-256 of the
file's bytes: the same file always yields the same ids. The batch's record (:meth:`Keys.batch`)
holds how many lines were already sent (``published``), advanced in the same Redis transaction
as the ``XADD`` of each chunk, so a run that is killed and started again resumes after the last
chunk that was sent and sends no line twice. Should the record be lost, the idempotency of the
derived ids still keeps every line from running twice (the repeats end ``duplicate``).

File formats (line numbers count physical lines, from 1):

* JSON lines: one command object per line, without ``id`` (it is derived), e.g.
  ``{"command": "suspend_outgoing", "backend": "whm1", "args": {"user": "example"}}``.
* CSV with a header row: the columns ``command``, ``backend``, ``producer``, ``priority``,
  ``reason`` and ``reply_to`` fill the envelope; every other column is an argument
  (``user``, ``email``...). Empty cells are left out.

``--command``, ``--backend`` and ``--producer`` fill in what a line does not say. The whole file
is validated before anything is sent; ``--dry-run`` only validates and lists every bad line.
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import orjson
import redis
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from schemas.commands import validate_command
from workers import constants
from workers.cli.acting import as_producer, waiting
from workers.cli.config import connected_settings
from workers.cli.exit_codes import RET_FAILED, RET_OK, RET_USAGE
from workers.errors import CommandRejected
from workers.producer import build_body

#: Envelope columns of a CSV file; every other column is an argument of the command.
CSV_ENVELOPE = ("command", "backend", "producer", "priority", "reason", "reply_to")
#: Lines sent per Redis transaction (one progress step).
CHUNK = 500


@dataclass(frozen=True)
class Line:
    """One command line of a bulk file."""

    number: int
    data: dict[str, Any]


@dataclass(frozen=True)
class BadLine:
    number: int
    field: str
    rule: str
    message: str


def batch_id_for(content: bytes) -> str:
    """The batch id of a file: a digest of its bytes, so a re-run finds the same batch."""
    return f"b-{hashlib.sha256(content).hexdigest()[:16]}"


def command_id_for(batch_id: str, line: int) -> str:
    return f"{batch_id}-{line}"


def read_lines(path: Path, content: bytes) -> tuple[list[Line], list[BadLine]]:
    """Decode the file into command objects; lines that are not even objects are bad lines."""
    text = content.decode("utf-8-sig", errors="replace")
    if path.suffix.lower() == ".csv":
        return _read_csv(text)
    return _read_jsonl(text)


def _read_jsonl(text: str) -> tuple[list[Line], list[BadLine]]:
    lines, bad = [], []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            bad.append(BadLine(number, "line", "json", f"not valid JSON: {exc}"))
            continue
        if not isinstance(data, dict):
            bad.append(BadLine(number, "line", "object", "each line must be a JSON object"))
            continue
        lines.append(Line(number, data))
    return lines, bad


def _read_csv(text: str) -> tuple[list[Line], list[BadLine]]:
    reader = csv.DictReader(io.StringIO(text))
    lines, bad = [], []
    for row in reader:
        number = reader.line_num
        if None in row:
            bad.append(BadLine(number, "line", "columns", "more cells than header columns"))
            continue
        cells = {k.strip(): v.strip() for k, v in row.items() if k and v is not None and v.strip()}
        if not cells:
            continue
        data: dict[str, Any] = {k: cells.pop(k) for k in CSV_ENVELOPE if k in cells}
        data["args"] = cells
        lines.append(Line(number, data))
    return lines, bad


def prepare(lines: list[Line], batch_id: str, defaults: dict[str, str | None]) -> tuple[list[Line], list[BadLine]]:
    """Fill in defaults and the derived ids, and validate every line as ingest will."""
    ready, bad = [], []
    for line in lines:
        data = {k: v for k, v in defaults.items() if v is not None} | line.data
        if "id" in line.data:
            bad.append(BadLine(line.number, "id", "derived", "bulk lines get their id from the file and the line"))
            continue
        data["id"] = command_id_for(batch_id, line.number)
        data["batch"] = batch_id
        try:
            validate_command(data)
        except CommandRejected as exc:
            bad.append(BadLine(line.number, exc.field, exc.rule, exc.message))
            continue
        ready.append(Line(line.number, data))
    return ready, bad


def encode_ranges(numbers: list[int]) -> str:
    """``1-3,5`` for [1, 2, 3, 5]: the line numbers of a batch, compactly."""
    parts: list[str] = []
    start = prev = None
    for n in numbers:
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(f"{start}-{prev}" if start != prev else str(start))
        start = prev = n
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else str(start))
    return ",".join(parts)


def decode_ranges(text: str) -> Iterator[int]:
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        yield from range(int(first), int(last or first) + 1)


def _report_bad(console: Console, bad: list[BadLine]) -> None:
    for b in sorted(bad, key=lambda b: b.number):
        console.print(f"[red]line {b.number}[/]: {b.field}: {b.rule}: {b.message}", markup=True, highlight=False)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Validate every line and report the bad ones; send nothing.")
@click.option("--command", "default_command", help="Command for lines that do not name one.")
@click.option("-b", "--backend", "default_backend", help="Backend for lines that do not name one.")
@click.option("--producer", default="migration", show_default=True, help="Producer for lines that do not name one.")
@click.option("--priority", default="bulk", show_default=True, type=click.Choice(["urgent", "default", "bulk"]),
              help="Queue class for lines that do not name one.")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Sign with this key instead of each producer's configured one.")
@click.option("--limit", type=click.IntRange(1), help="Send at most this many lines in this run (resume later).")
@waiting(3600.0)
def bulk(file: Path, dry_run: bool, default_command: str | None, default_backend: str | None, producer: str,
         priority: str, key_file: Path | None, limit: int | None, wait: bool, timeout: float) -> None:
    """Publish every line of FILE (.csv or .jsonl) as one batch, with a progress bar; resumable.

    Running the same file again continues where an interrupted run stopped. Follow the batch with
    `mailops batch status BATCH_ID --follow`. Each line is signed with its producer's configured key.
    Unless --no-wait, waits until every line has ended, prints the batch status as JSON and exits
    0 only if every line succeeded (1 failures or rejections, 5 timeout: see `batch status`).

    \b
    Example:
      mailops bulk accounts.csv --command unsuspend_outgoing --backend whm1
    """
    console = Console(stderr=True, highlight=False)
    content = file.read_bytes()
    batch_id = batch_id_for(content)
    raw, bad = read_lines(file, content)
    defaults = {"command": default_command, "backend": default_backend, "producer": producer, "priority": priority}
    ready, invalid = prepare(raw, batch_id, defaults)
    bad += invalid
    if bad:
        _report_bad(console, bad)
        console.print(f"[red]{len(bad)} bad line(s)[/] in {file}; {len(ready)} valid. Nothing was sent.")
        sys.exit(RET_FAILED)
    if not ready:
        console.print(f"{file}: no command lines")
        sys.exit(RET_USAGE)
    if dry_run:
        console.print(f"[green]{len(ready)} line(s) valid[/] in {file}; batch id would be {batch_id}")
        sys.exit(RET_OK)
    settings, client = connected_settings()
    key = key_file.read_bytes().strip() if key_file else None
    # Each line is signed with its producer's configured key (a refusal names the producer and exits 4).
    producer_keys = {name: as_producer(settings, name, "bulk").key for name in {str(line.data["producer"]) for line in ready}}
    sent = publish_batch(client, settings.commands_stream, settings.keys, batch_id, file, ready, key, console, limit,
                         producer_keys=producer_keys)
    click.echo(batch_id)
    if sent < len(ready):
        console.print(f"stopped after {sent} of {len(ready)} lines; run the same command again to resume")
    elif wait:
        from workers.cli.batch import exit_code, follow_batch, read_status  # batch imports this module

        first = read_status(client, settings.keys, batch_id)
        assert first is not None  # publish_batch wrote the batch record
        status = follow_batch(client, settings.keys, first, timeout=timeout)
        click.echo(orjson.dumps(status.to_json()).decode())
        sys.exit(exit_code(status, followed=True))
    sys.exit(RET_OK)


def publish_batch(client: redis.Redis, stream: str, keys: constants.Keys, batch_id: str, file: Path,
                  ready: list[Line], key: bytes | None, console: Console, limit: int | None, *,
                  producer_keys: Mapping[str, bytes | None] | None = None) -> int:
    """Send the lines not sent yet; return how many of ``ready`` have been sent in all. Lines are
    signed with ``key`` if given, else with their producer's key in ``producer_keys``."""
    record = keys.batch(batch_id)
    client.hsetnx(record, "created", int(time.time() * 1000))
    client.hset(record, mapping={"file": str(file), "total": len(ready),
                                 "lines": encode_ranges([line.number for line in ready])})
    client.hsetnx(record, "published", 0)
    done = int(client.hget(record, "published") or 0)
    stop = len(ready) if limit is None else min(len(ready), done + limit)
    if done:
        console.print(f"batch {batch_id}: {done} line(s) already sent; resuming")
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"sending {batch_id}", total=len(ready), completed=done)
        while done < stop:
            chunk = ready[done:min(stop, done + CHUNK)]
            pipe = client.pipeline(transaction=True)
            for line in chunk:
                body = build_body(line.data["command"], line.data.get("args", {}), producer=line.data["producer"],
                                  id=line.data["id"], key=key or (producer_keys or {}).get(line.data["producer"]),
                                  **{k: v for k, v in line.data.items() if k not in {"id", "command", "args", "producer"}})
                pipe.xadd(stream, {constants.BODY_FIELD: orjson.dumps(body)})
            pipe.hset(record, "published", done + len(chunk))
            pipe.execute()
            done += len(chunk)
            progress.update(task, completed=done)
    return done
