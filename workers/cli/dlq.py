"""``mailops dlq``: browse, show, replay and purge dead-lettered commands."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click
import orjson
import redis

from workers.cli.acting import as_operator, audit, await_outcomes, operator_option, wait_options, waiter
from workers.cli.environment import load_settings
from workers.cli.exit_codes import RET_CONNECT, RET_FAILED, RET_OK
from workers.store.command_store import CommandStore
from workers.store.dead_letters import DeadLetters
from workers.store.redis_client import connect


def _open() -> DeadLetters:
    settings = load_settings()
    if not settings.redis_url:
        click.echo("mailops dlq: set MAILOPS_REDIS_URL (dead letters live in a real Redis)", err=True)
        sys.exit(RET_CONNECT)
    client = connect(settings, max_connections=2)
    return DeadLetters(client, CommandStore(client, settings))


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@click.group()
def dlq() -> None:
    """Dead-lettered commands: list, show ID, replay ID… | --all, purge.

    \b
    Example:
      mailops dlq list --backend whm1
    """


@dlq.command("list")
@click.option("--backend", default=None, help="Only this backend's dead letters.")
@click.option("--command", "command_kind", default=None, help="Only this command kind.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_(backend: str | None, command_kind: str | None, as_json: bool) -> None:
    """List dead letters, oldest first.

    \b
    Example:
      mailops dlq list --backend whm1 --json
    """
    try:
        letters = list(_open().list(backend=backend, command=command_kind))
    except redis.ConnectionError as exc:
        click.echo(f"mailops dlq: cannot reach Redis: {exc}", err=True)
        sys.exit(RET_CONNECT)
    for d in letters:
        if as_json:
            click.echo(orjson.dumps(d.__dict__).decode())
        else:
            click.echo(f"{d.id}\t{d.command}\t{d.backend}\t{_when(d.at_ms)}\tattempts={d.attempts}\t{d.error_kind}: {d.error_message}")
    if not as_json:
        click.echo(f"{len(letters)} dead letter(s)", err=True)


@dlq.command()
@click.argument("command_id")
def show(command_id: str) -> None:
    """Show one command: its record, outcome and every attempt (args with secrets redacted).

    \b
    Example:
      mailops dlq show abuse-7f3a
    """
    data = _open().show(command_id)
    if data is None:
        click.echo(f"mailops dlq: no command {command_id!r}", err=True)
        sys.exit(RET_FAILED)
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@dlq.command()
@click.argument("ids", nargs=-1)
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter (after the filters).")
@click.option("--backend", default=None, help="With --all: only this backend's.")
@click.option("--command", "command_kind", default=None, help="With --all: only this command kind.")
@operator_option
@wait_options
def replay(ids: tuple[str, ...], replay_all: bool, backend: str | None, command_kind: str | None,
           operator_name: str | None, wait: bool, timeout: float) -> None:
    """Queue dead-lettered commands again (through their own idempotency record) as the operator
    (action ``dlq.replay``, audited) and wait for their outcomes: exit 0 only if all succeeded.

    \b
    Examples:
      mailops dlq replay dl-1
      mailops dlq replay --all --backend whm1 --no-wait
    """
    if replay_all == bool(ids):
        raise click.UsageError("give command ids or --all (not both)")
    if (backend or command_kind) and not replay_all:
        raise click.UsageError("--backend/--command filter --all")
    settings = load_settings()
    acting = as_operator(settings, operator_name, "dlq.replay")
    letters = _open()
    targets = list(ids) if ids else [d.id for d in letters.list(backend=backend, command=command_kind)]
    sender = waiter(letters.client, settings, acting)
    failed, replayed = 0, []
    for command_id in targets:
        sender.expect(command_id)
        verdict = letters.replay(command_id)
        click.echo(f"{command_id}\t{verdict}", err=wait)
        if verdict == "replayed":
            pipe = letters.client.pipeline(transaction=False)
            audit(pipe, settings, acting, "dlq.replay", command_id)
            pipe.execute()
            replayed.append(command_id)
        failed += verdict != "replayed"
    if wait and replayed:
        code = await_outcomes(sender, replayed, timeout=timeout)
        sys.exit(code if code != RET_OK or not (failed and ids) else RET_FAILED)
    sys.exit(RET_FAILED if failed and ids else RET_OK)


@dlq.command()
@click.option("--older-than", type=float, default=None, help="Only those dead-lettered this many seconds ago or earlier.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge(older_than: float | None, yes: bool) -> None:
    """Drop dead letters from the index (records stay until their idempotency TTL).

    \b
    Example:
      mailops dlq purge --older-than 604800 --yes
    """
    if not yes:
        click.confirm("Purge dead letters?", abort=True)
    click.echo(f"purged {_open().purge(older_than_s=older_than)}")
