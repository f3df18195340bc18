"""``mailops config check``: are the settings, the backends file and Redis usable?

Also home of :func:`connected_settings`, which the commands that only talk to an existing Redis
(publish, events, bulk, batch, serve) use instead of starting an embedded one.
"""

from __future__ import annotations

import sys

import click
import redis
from rich.console import Console
from rich.table import Table

from workers.cli.environment import load_settings
from workers.cli.exit_codes import RET_CONFIG, RET_CONNECT, RET_OK
from workers.settings import Settings
from workers.store.redis_client import connect


def connected_settings() -> tuple[Settings, redis.Redis]:
    """The settings and a client for the configured Redis; exit with a named code if there is none."""
    settings = load_settings()
    if not settings.redis_url:
        click.echo("mailops: set MAILOPS_REDIS_URL to the Redis the workers use", err=True)
        sys.exit(RET_CONFIG)
    client = connect(settings, max_connections=16)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        click.echo(f"mailops: cannot reach Redis: {exc}", err=True)
        sys.exit(RET_CONNECT)
    return settings, client


@click.group()
def config() -> None:
    """Inspect the configuration.

    \b
    Example:
      mailops config check
    """


@config.command("check")
@click.option("--skip-redis", is_flag=True, help="Do not try to reach Redis.")
def check(skip_redis: bool) -> None:
    """Validate the environment and the backends file (and reach Redis); exit 4 when invalid.

    Unknown tables and keys (with a did-you-mean), empty secrets, a sealing key that is not
    base64 of 64 bytes, URLs without scheme or host, plain http:// without allow_insecure_http,
    a missing cPanel/BrainyCP username and allow-lists naming nothing are refused, naming the
    file, the table and the key. The worker runs the same checks at start.

    \b
    Example:
      mailops config check --skip-redis
    """
    settings = load_settings()  # exits with RET_CONFIG on an invalid file or environment
    console = Console(highlight=False, soft_wrap=True)
    table = Table(title="mailops configuration", show_header=False)
    table.add_row("redis", settings.redis_url and _redacted(settings.redis_url) or "embedded (MAILOPS_REDIS_URL unset)")
    table.add_row("commands stream", settings.commands_stream)
    table.add_row("events stream", settings.events_stream)
    table.add_row("key prefix", settings.key_prefix)
    for name, backend in sorted(settings.backends.items()):
        secret = "set" if backend.token.get_secret_value() else "EMPTY"
        insecure = ", INSECURE http allowed" if backend.is_insecure else ""
        table.add_row(f"backend {name}",
                      f"{backend.kind} {backend.url} (user {backend.username}, token {secret}{insecure})")
    if not settings.backends:
        table.add_row("backends", "none configured (set MAILOPS_CONFIG)")
    for name, producer in sorted(settings.producers.items()):
        table.add_row(f"producer {name}", f"commands {_listed(producer.commands)}; backends {_listed(producer.backends)}"
                      + ("; system accounts allowed" if producer.allow_system_accounts else ""))
    if not settings.producers:
        table.add_row("producers", "none configured" + (" (signatures required: every command is refused)"
                                                        if settings.require_signatures else ""))
    for name, operator in sorted(settings.operators.items()):
        table.add_row(f"operator {name}", f"actions {_listed(operator.actions)}; reasons {_listed(operator.reasons)}")
    table.add_row("signatures", "required" if settings.require_signatures else "OFF (unsigned commands accepted)")
    table.add_row("sealing key", "present" if settings.sealing_key else "absent (commands carrying passwords are refused)")
    console.print(table)
    if settings.redis_url and not skip_redis:
        client = connect(settings, max_connections=2)
        try:
            client.ping()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            console.print(f"[red]Redis unreachable:[/] {exc}")
            sys.exit(RET_CONNECT)
        finally:
            client.close()
        console.print("[green]Redis reachable[/]")
    console.print("[green]configuration ok[/]")
    sys.exit(RET_OK)


def _listed(entries: tuple[str, ...]) -> str:
    return ", ".join(entries) if entries else "(none)"


def _redacted(url: str) -> str:
    """The Redis URL without its password."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        _credentials, _, host = rest.rpartition("@")
        return f"{scheme}{sep}***@{host}"
    return url
