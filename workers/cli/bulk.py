"""``mailops bulk FILE.csv|FILE.jsonl``: publish a migration with a live progress bar, resumably.

Every line's command id is ``<batch>-<line>``, where the batch id derives from the SHA-256 of the
file's bytes: the same file always yields the same ids. The batch's record (:meth:`Keys.batch`)
holds how many lines were already sent (``published``), advanced in the same Redis transaction
as the ``XADD`` of each chunk, so a run that is killed and started again resumes after the last
chunk that was sent and sends no line twice. Should the record be lost, the idempotency of the
derived ids still keeps every line from running twice (the repeats end ``duplicate``).

File formats (line numbers count physical lines, from 1):

* JSON lines, one object per line, without ``id`` (it is derived), in either form:
  ``{"command": "suspend_outgoing", "backend": "whm1", "args": {"user": "example"}}``, or flat,
  ``{"email": "a@shop.example", "password": "…", "quota": 500}``: a line without ``args`` takes
  the envelope fields (``command``, ``backend``, ``producer``, ``priority``, ``reason``,
  ``reply_to``...) from its keys and every other key as an argument.
* CSV with a header row: the envelope columns fill the envelope; every other column is an
  argument (``user``, ``email``, ``quota``...). Cells are text; each is converted to the type
  the command's argument takes (``500`` to an integer for ``quota``, ``true``/``false`` for a
  boolean, ``a;b`` for a list). Empty cells are left out.

``--command``, ``--backend`` and ``--producer`` fill in what a line does not say. The whole file
is validated before anything is sent; ``--dry-run`` only validates, and both list the bad lines
grouped by field and rule (the first line numbers of each, and how many).

SIGINT while sending stops after the chunk in flight and prints the batch id and the command
that resumes it (exit 130).
"""

from __future__ import annotations

import csv
import io
import shlex
import signal
import sys
import time
import types
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import click
import orjson
import redis
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from schemas.commands import COMMANDS, Command, validate_command
from workers import constants
from workers.cli.acting import as_producer, waiting
from workers.cli.batch import exit_code, follow_batch, read_status
from workers.cli.batch_ids import batch_id_for, command_id_for, encode_ranges
from workers.cli.config import connected_settings
from workers.cli.exit_codes import RET_FAILED, RET_INTERRUPTED, RET_OK, RET_USAGE
from workers.errors import CommandRejected
from workers.tools.producer import build_body

#: Envelope columns of a CSV file (and keys of a flat JSON line); every other one is an argument.
ENVELOPE = tuple(name for name in Command.model_fields if name not in ("args", "id_generated"))
CSV_ENVELOPE = ENVELOPE
#: Bad lines listed per (field, rule) before "and N more".
SHOWN_PER_RULE = 5
#: Lines sent per Redis transaction (one progress step).
CHUNK = 500


@dataclass(frozen=True)
class Line:
    """One command line of a bulk file."""

    number: int
    data: dict[str, Any]
    #: Its arguments are CSV text, to be converted to the command's argument types.
    text_args: bool = False


@dataclass(frozen=True)
class BadLine:
    number: int
    field: str
    rule: str
    message: str


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
        if "args" not in data:  # a flat line: envelope keys, and the rest are the arguments
            data = {k: v for k, v in data.items() if k in ENVELOPE} | {
                "args": {k: v for k, v in data.items() if k not in ENVELOPE}}
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
        lines.append(Line(number, data, text_args=True))
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
        if line.text_args and isinstance(data.get("args"), dict):
            data["args"] = coerce_cells(str(data.get("command", "")), data["args"])
        try:
            validate_command(data)
        except CommandRejected as exc:
            bad.append(BadLine(line.number, exc.field, exc.rule, exc.message))
            continue
        ready.append(Line(line.number, data))
    return ready, bad


def coerce_cells(command: str, cells: dict[str, Any]) -> dict[str, Any]:
    """CSV text converted to the types the command's arguments take; what does not convert stays text."""
    spec = COMMANDS.get(command)
    if spec is None:
        return cells
    fields = spec.args.model_fields
    return {name: _coerce(value, fields[name].annotation) if name in fields and isinstance(value, str) else value
            for name, value in cells.items()}


def _accepted(annotation: Any) -> set[Any]:
    """The plain types (and literal values) an annotation accepts."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _accepted(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return set().union(*(_accepted(arg) for arg in get_args(annotation)))
    if origin is Literal:
        return {type(value) for value in get_args(annotation)}
    if origin in (list, tuple):
        return {list}
    return {annotation}


TRUE, FALSE = ("true", "yes", "on"), ("false", "no", "off")


def _coerce(text: str, annotation: Any) -> Any:
    accepted = _accepted(annotation)
    lowered = text.strip().lower()
    if bool in accepted and lowered in TRUE + FALSE:
        return lowered in TRUE
    if int in accepted and lowered.lstrip("-").isdigit():
        return int(lowered)
    if bool in accepted and lowered in ("1", "0"):
        return lowered == "1"
    if list in accepted:
        return [item.strip() for item in text.split(";") if item.strip()]
    return text


def _report_bad(console: Console, bad: list[BadLine]) -> None:
    """Bad lines grouped by field and rule: how many, the first few line numbers, one message."""
    groups: dict[tuple[str, str], list[BadLine]] = defaultdict(list)
    for b in sorted(bad, key=lambda b: b.number):
        groups[(b.field, b.rule)].append(b)
    for (field, rule), lines in sorted(groups.items(), key=lambda item: (-len(item[1]), item[1][0].number)):
        numbers = ", ".join(str(b.number) for b in lines[:SHOWN_PER_RULE])
        more = f" and {len(lines) - SHOWN_PER_RULE} more" if len(lines) > SHOWN_PER_RULE else ""
        console.print(f"[red]{field}: {rule}[/]: {len(lines)} line(s): {numbers}{more}", markup=True, highlight=False,
                      soft_wrap=True)
        console.print(f"    e.g. line {lines[0].number}: {lines[0].message}", markup=False, highlight=False,
                      soft_wrap=True)


class RateColumn(ProgressColumn):
    """Lines sent per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} lines/s" if speed else "- lines/s")


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

    CSV: a header row; envelope columns (command, backend, producer, priority, reason...) and one
    column per argument, converted to the argument's type (quota 500 is an integer). JSON lines:
    {"command": ..., "args": {...}} or flat {"email": ..., "quota": ...}. Bad lines are listed
    grouped by rule. Running the same file again continues where an interrupted run stopped
    (Ctrl-C prints the batch id and the command that resumes it). Each line is signed with its
    producer's configured key. Unless --no-wait, waits until every line has ended, prints the
    batch status as JSON and exits 0 only if every line succeeded (1 failures or rejections,
    5 timeout: see `batch status`).

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
        console.print(f"[red]{len(bad)} bad line(s)[/] in {file}; {len(ready)} valid. Nothing was sent.", soft_wrap=True)
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
    interrupted = Interrupt()
    previous = signal.signal(signal.SIGINT, interrupted.handle)
    try:
        sent = publish_batch(client, settings.commands_stream, settings.keys, batch_id, file, ready, key, console,
                             limit, interrupted, producer_keys=producer_keys)
    finally:
        signal.signal(signal.SIGINT, previous)
    if interrupted.requested and sent < len(ready):
        resume = resume_command(file, default_command, default_backend, producer, priority, key_file, wait=wait)
        console.print(f"[yellow]interrupted[/]: batch {batch_id}, {sent} of {len(ready)} line(s) sent, none twice.\n"
                      f"resume with: {resume}", markup=True, highlight=False, soft_wrap=True)
        click.echo(batch_id)
        sys.exit(RET_INTERRUPTED)
    click.echo(batch_id)
    if sent < len(ready):
        console.print(f"stopped after {sent} of {len(ready)} lines; run the same command again to resume")
    elif wait:
        first = read_status(client, settings.keys, batch_id)
        assert first is not None  # publish_batch wrote the batch record
        status = follow_batch(client, settings.keys, first, timeout=timeout)
        click.echo(orjson.dumps(status.to_json()).decode())
        sys.exit(exit_code(status, followed=True))
    sys.exit(RET_OK)


class Interrupt:
    """SIGINT while sending: finish the chunk in flight (its transaction), then stop."""

    def __init__(self) -> None:
        self.requested = False

    def handle(self, signum: int, frame: types.FrameType | None) -> None:
        if self.requested:  # a second Ctrl-C: stop now (the batch record still says what was sent)
            raise KeyboardInterrupt
        self.requested = True


def resume_command(file: Path, command: str | None, backend: str | None, producer: str, priority: str,
                   key_file: Path | None, *, wait: bool = True) -> str:
    """The exact ``mailops bulk`` command line that continues this batch."""
    argv = ["mailops", "bulk", str(file)]
    for flag, value in (("--command", command), ("--backend", backend), ("--producer", producer),
                        ("--priority", priority), ("--key-file", key_file)):
        if value is not None:
            argv += [flag, str(value)]
    return shlex.join(argv + ([] if wait else ["--no-wait"]))


def publish_batch(client: redis.Redis, stream: str, keys: constants.Keys, batch_id: str, file: Path,
                  ready: list[Line], key: bytes | None, console: Console, limit: int | None,
                  interrupted: Interrupt | None = None, *,
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
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    console.print(f"sending batch {batch_id}: {stop - done} line(s)")
    console.file.flush()
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"sending {batch_id}", total=len(ready), completed=done)
        while done < stop and not (interrupted and interrupted.requested):
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
