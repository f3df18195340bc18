"""``mailops backends check``: credentials and reachability of every configured backend, as a table."""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from workers.backends.registry import build_backend
from workers.cli.environment import load_settings
from workers.cli.exit_codes import RET_FAILED, RET_OK
from workers.errors import MailopsError
from workers.settings import BackendConfig


@dataclass(frozen=True)
class CheckResult:
    name: str
    kind: str
    url: str
    ok: bool
    detail: str
    elapsed_ms: float


def check_backend(config: BackendConfig) -> CheckResult:
    """One harmless read-only call (:meth:`Backend.check`); errors become a red row, never a crash."""
    start = time.monotonic()
    try:
        backend = build_backend(config)
    except MailopsError as exc:
        return CheckResult(config.name, config.kind, config.url, False, f"{exc.kind}: {exc}", 0.0)
    try:
        result = backend.check()
        ok, detail = True, result.message
    except MailopsError as exc:
        ok, detail = False, f"{exc.kind}: {exc}"
    finally:
        backend.close()
    return CheckResult(config.name, config.kind, config.url, ok, detail, (time.monotonic() - start) * 1000)


@click.group()
def backends() -> None:
    """Inspect the configured panel backends.

    \b
    Example:
      mailops backends check
    """


@backends.command("check")
def check() -> None:
    """Call every configured backend once; exit 1 if any is unreachable or refuses its credentials.

    \b
    Example:
      mailops backends check
    """
    settings = load_settings()
    configs = [settings.backends[name] for name in sorted(settings.backends)]
    if not configs:
        click.echo("mailops: no backends configured (set MAILOPS_CONFIG)", err=True)
        sys.exit(RET_FAILED)
    with ThreadPoolExecutor(max_workers=min(16, len(configs))) as pool:
        results = list(pool.map(check_backend, configs))
    table = Table(title="backends")
    for column in ("backend", "kind", "url", "status", "detail", "ms"):
        table.add_column(column, justify="right" if column == "ms" else "left")
    for r in results:
        status = "[green]ok[/]" if r.ok else "[red]FAIL[/]"
        table.add_row(r.name, r.kind, escape(r.url), status, escape(r.detail), f"{r.elapsed_ms:.0f}")
    Console(highlight=False, width=160).print(table)
    sys.exit(RET_OK if all(r.ok for r in results) else RET_FAILED)
