"""``mailops demo``: the whole path on a private Redis and sandbox panels, events printed live.

The demo never uses the configured Redis (``MAILOPS_REDIS_URL``), backends or streams: on a
production host those would carry its commands to the production workers and panels. It starts
its own embedded Redis; ``--redis-url`` runs it on another Redis under a key prefix and streams
made for this run only, removed afterwards.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
import redis
from rich.console import Console
from rich.markup import escape

from schemas.events import Event
from workers.cli.environment import settings_with_redis
from workers.cli.event_format import STYLE, outcome_suffix, what
from workers.cli.exit_codes import RET_FAILED, RET_OK
from workers.settings import Settings
from workers.tools.demo import run_demo


@contextmanager
def demo_settings(redis_url: str | None) -> Iterator[Settings]:
    """Settings of the demo's own: a private Redis, or ``redis_url`` under a run-specific prefix (cleaned up)."""
    if not redis_url:
        with settings_with_redis(Settings(), announce=False) as settings:
            yield settings
        return
    run = f"mailops-demo-{secrets.token_hex(4)}"
    click.echo(f"mailops demo: WARNING: running on {redis_url} under the key prefix {run} (streams {run}:commands "
               f"and {run}:events); no configured worker reads them, and they are deleted at the end", err=True)
    yield Settings(redis_url=redis_url, key_prefix=run, commands_stream=f"{run}:commands",
                   events_stream=f"{run}:events")
    client = redis.Redis.from_url(redis_url)
    try:
        for key in list(client.scan_iter(match=f"{run}*", count=1000)):
            client.delete(key)
    finally:
        client.close()


@click.command()
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for every terminal event.")
@click.option("--redis-url", help="Run on this Redis instead of a private one, under a run-specific key prefix "
                                  "(never the workers' streams; MAILOPS_REDIS_URL is ignored).")
def demo(timeout: float, redis_url: str | None) -> None:
    """Run a worker against sandbox panels and print the events of a few sample commands.

    Always on a private embedded Redis, even with MAILOPS_REDIS_URL set: the demo never sends
    commands to the configured workers or panels.

    \b
    Example:
      mailops demo
    """
    console = Console(highlight=False, soft_wrap=True)

    def echo(event: Event, producer_kind: str) -> None:
        style = STYLE.get(event.status, "")
        console.print(f"[{style}]{event.status:>13}[/] {escape(event.id or '(no id)'):<18} {escape(what(event)):<32} "
                      f"[dim]{producer_kind}[/]{outcome_suffix(event)}")

    with demo_settings(redis_url) as settings:
        console.print("[bold]mailops demo[/]: private Redis, WHM + cPanel + BrainyCP sandboxes, one worker; "
                      "events as they arrive:")
        ok = run_demo(settings, echo, timeout_s=timeout)
    if ok:
        console.print("[bold green]every command has its terminal event[/]")
        sys.exit(RET_OK)
    console.print("[bold red]timed out waiting for terminal events[/]")
    sys.exit(RET_FAILED)
