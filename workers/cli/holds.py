"""``mailops holds``: why is a mailbox suspended, and by whom; operators' forced release."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
import orjson
import redis

from workers.cli.acting import (
    RELEASED,
    as_operator,
    audit,
    await_outcomes,
    operator_option,
    wait_options,
    waiter,
)
from workers.cli.environment import load_settings
from workers.cli.exit_codes import RET_CONNECT, RET_FAILED, RET_OK, RET_USAGE
from workers.errors import CommandError
from workers.holds import force_release, hold_aspects, holds_of
from workers.redis_client import connect


@click.group()
def holds() -> None:
    """Suspensions as holds owned by a reason (abuse, billing, migration, manual...)."""


@holds.command("show")
@click.argument("target")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(target: str, as_json: bool) -> None:
    """Show who holds TARGET (a mailbox address or cPanel account) suspended, per aspect."""
    settings = load_settings()
    client = connect(settings, max_connections=2)
    try:
        found = {aspect: holds_of(client, settings.keys, target, aspect) for aspect in hold_aspects()}
    except redis.RedisError as exc:
        click.echo(f"mailops holds: Redis unreachable: {type(exc).__name__}", err=True)
        raise SystemExit(RET_CONNECT) from None
    finally:
        client.close()
    if as_json:
        click.echo(orjson.dumps({"target": target, "holds": found}).decode())
        return
    for aspect, held in found.items():
        if not held:
            click.echo(f"{target} {aspect}: not held (the panel should not be suspended)")
            continue
        click.echo(f"{target} {aspect}: suspended, held by {len(held)} reason(s)")
        for reason, hold in sorted(held.items()):
            click.echo(f"  {reason}: by {hold.get('producer')} (command {hold.get('command')}, "
                       f"issued {hold.get('issued_at')}, held since {hold.get('since')})")


@holds.command("release")
@click.argument("target")
@click.option("--aspect", required=True, help="Aspect to release (e.g. outgoing).")
@click.option("--reason", required=True, help="The reason whose hold is removed.")
@click.option("--force", is_flag=True, help="Confirm releasing a hold another party owns.")
@operator_option
@wait_options
def release(target: str, aspect: str, reason: str, force: bool, operator_name: str | None, wait: bool,
            timeout: float) -> None:
    """Remove REASON's hold on TARGET: issues an unsuspend for that reason, signed by the operator
    (action ``holds.release``) and recorded in the audit stream; waits for its outcome.

    Exit 0 once the hold is gone (``held``: other reasons still hold TARGET), 1 if it was refused.

    \b
    Example:
      mailops holds release shop --aspect outgoing --reason abuse --force
    """
    if not force:
        click.echo("mailops holds release: releasing another party's hold needs --force", err=True)
        raise SystemExit(RET_USAGE)
    settings = load_settings()
    acting = as_operator(settings, operator_name, "holds.release")
    client = connect(settings, max_connections=2)
    waiting = waiter(client, settings, acting)

    def signed(body: dict[str, Any]) -> dict[str, Any]:
        waiting.expect(str(body["id"]))  # before it is sent: its earliest answer is seen
        return acting.signed(body)

    try:
        try:
            body = force_release(client, settings.keys, settings.commands_stream, target=target, aspect=aspect,
                                 reason=reason, operator=acting.producer, prepare=signed)
        except CommandError as exc:
            click.echo(f"mailops holds release: {exc}", err=True)
            raise SystemExit(RET_FAILED) from None
        except redis.RedisError as exc:
            click.echo(f"mailops holds release: Redis unreachable: {type(exc).__name__}", err=True)
            raise SystemExit(RET_CONNECT) from None
        pipe = client.pipeline(transaction=False)
        audit(pipe, settings, acting, "holds.release", str(body["id"]))  # beside force_release's own record
        pipe.execute()
        click.echo(f"issued {body['command']} {body['id']} for {target} (reason {reason}) at "
                   f"{datetime.now(UTC).isoformat(timespec='seconds')}; follow it on {settings.events_stream}")
        raise SystemExit(await_outcomes(waiting, [body["id"]], timeout=timeout, ok=RELEASED) if wait else RET_OK)
    finally:
        client.close()
