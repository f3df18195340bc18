"""``mailops demo``: the whole path on a private Redis and sandbox panels, events printed live."""

from __future__ import annotations

import sys

import click
from rich.console import Console
from rich.markup import escape

from schemas.events import Event
from workers.cli.environment import settings_with_redis
from workers.cli.event_format import STYLE, outcome_suffix, what
from workers.cli.exit_codes import RET_FAILED, RET_OK
from workers.demo import run_demo


@click.command()
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for every terminal event.")
def demo(timeout: float) -> None:
    """Run a worker against sandbox panels and print the events of a few sample commands."""
    console = Console(highlight=False, soft_wrap=True)

    def echo(event: Event, producer_kind: str) -> None:
        style = STYLE.get(event.status, "")
        console.print(f"[{style}]{event.status:>13}[/] {escape(event.id or '(no id)'):<18} {escape(what(event)):<32} "
                      f"[dim]{producer_kind}[/]{outcome_suffix(event)}")

    with settings_with_redis(announce=False) as settings:
        console.print("[bold]mailops demo[/]: private Redis, WHM + cPanel + BrainyCP sandboxes, one worker; "
                      "events as they arrive:")
        ok = run_demo(settings, echo, timeout_s=timeout)
    if ok:
        console.print("[bold green]every command has its terminal event[/]")
        sys.exit(RET_OK)
    console.print("[bold red]timed out waiting for terminal events[/]")
    sys.exit(RET_FAILED)
