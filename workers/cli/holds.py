"""``mailops holds``: why is a mailbox suspended, and by whom; operators' forced release."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click
import orjson
import redis

from workers.attempt.holds import all_holds, backends_holding, force_release
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
from workers.ingest.routing import RouteMap
from workers.settings import Settings
from workers.store.legacy_keys import upgrade
from workers.store.redis_client import connect


@click.group()
def holds() -> None:
    """Suspensions as holds owned by a reason (abuse, billing, migration, manual...).

    \b
    Example:
      mailops holds show shop
    """


def _upgraded(client: redis.Redis, settings: Settings) -> None:
    """Holds written before backend-scoped identity are moved first, so they show and release."""
    upgrade(client, settings.keys, settings.backends, RouteMap(client, settings).resolve)


@holds.command("show")
@click.argument("target")
@click.option("--backend", default=None, help="Only this backend (default: every backend holding TARGET).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def show(target: str, backend: str | None, as_json: bool) -> None:
    """Show who holds TARGET (a mailbox address or cPanel account) suspended, per backend and aspect.

    The same account name on two servers is two targets: each backend's holds are listed apart.

    \b
    Example:
      mailops holds show shop --backend whm1
    """
    settings = load_settings()
    client = connect(settings, max_connections=2)
    try:
        _upgraded(client, settings)
        found: dict[str, dict[str, dict[str, Any]]] = {}
        for (held_backend, held_target, aspect), held in sorted(all_holds(client, settings.keys).items()):
            if held_target == target and backend in (None, held_backend):
                found.setdefault(held_backend, {})[aspect] = held
    except redis.RedisError as exc:
        click.echo(f"mailops holds: Redis unreachable: {type(exc).__name__}", err=True)
        raise SystemExit(RET_CONNECT) from None
    finally:
        client.close()
    if as_json:
        click.echo(orjson.dumps({"target": target, "backends": found}).decode())
        return
    if not found:
        where = f" on {backend}" if backend else ""
        click.echo(f"{target}{where}: not held on any aspect (the panel should not be suspended)")
        return
    for held_backend, aspects in found.items():
        for aspect, held in sorted(aspects.items()):
            click.echo(f"{target} on {held_backend} {aspect}: suspended, held by {len(held)} reason(s)")
            for reason, hold in sorted(held.items()):
                click.echo(f"  {reason}: by {hold.get('producer')} (command {hold.get('command')}, "
                           f"issued {hold.get('issued_at')}, held since {hold.get('since')})")


@holds.command("release")
@click.argument("target")
@click.option("--aspect", required=True, help="Aspect to release (e.g. outgoing).")
@click.option("--reason", required=True, help="The reason whose hold is removed.")
@click.option("--backend", default=None,
              help="Backend whose hold is released; required when TARGET is held on several backends.")
@click.option("--force", is_flag=True, help="Confirm releasing a hold another party owns.")
@operator_option
@wait_options
def release(target: str, aspect: str, reason: str, backend: str | None, force: bool, operator_name: str | None,
            wait: bool, timeout: float) -> None:
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
            _upgraded(client, settings)
            if backend is None:
                holding = backends_holding(client, settings.keys, target, aspect)
                if len(holding) > 1:
                    click.echo(f"mailops holds release: {target} is held on several backends "
                               f"({', '.join(holding)}); name one with --backend", err=True)
                    raise SystemExit(RET_USAGE)
                backend = holding[0] if holding else (RouteMap(client, settings).resolve(target) or "")
            body = force_release(client, settings.keys, settings.commands_stream, backend=backend, target=target,
                                 aspect=aspect, reason=reason, operator=acting.producer, prepare=signed)
        except CommandError as exc:
            click.echo(f"mailops holds release: {exc}", err=True)
            raise SystemExit(RET_FAILED) from None
        except redis.RedisError as exc:
            click.echo(f"mailops holds release: Redis unreachable: {type(exc).__name__}", err=True)
            raise SystemExit(RET_CONNECT) from None
        pipe = client.pipeline(transaction=False)
        audit(pipe, settings, acting, "holds.release", str(body["id"]))  # beside force_release's own record
        pipe.execute()
        click.echo(f"issued {body['command']} {body['id']} for {target} on {backend} (reason {reason}) at "
                   f"{datetime.now(UTC).isoformat(timespec='seconds')}; follow it on {settings.events_stream}")
        raise SystemExit(await_outcomes(waiting, [body["id"]], timeout=timeout, ok=RELEASED) if wait else RET_OK)
    finally:
        client.close()
