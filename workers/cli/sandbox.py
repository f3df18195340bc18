"""``mailops sandbox``: serve every sandbox panel kind for people testing their own producers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import click

from workers.sandbox import SandboxServer
from workers.sandbox.kinds import SANDBOXES
from workers.stop_signal import stop_on_signals, wait_for_stop

CONTROL_HELP = """\
Serve stateful WHM, cPanel UAPI and BrainyCP simulators until Ctrl-C.

Each account gets the domain ACCOUNT.example on every panel. Each server also answers, without
credentials, under /__sandbox__/:

\b
  GET  /__sandbox__/ledger       every state change applied (panel, target, field, old, new)
  GET  /__sandbox__/stats        requests served (changes, reads, lookups apart), in
                                 flight, max in flight
  POST /__sandbox__/faults       JSON body of fault shares (0..1): error_rate (HTTP 500 HTML),
                                 rate_limit_rate (+ retry_after_s; HTTP 429 + Retry-After),
                                 html_rate (HTML, not a login page), login_page_rate (cpsrvd
                                 login page, HTTP 200), timeout_after_apply_rate (+ hang_s),
                                 drop_after_apply_rate (applied, then connection closed),
                                 echo_rate (a success answer echoing the request),
                                 lie_rate (a change call answered OK, nothing applied);
                                 apply_late_s (changes applied that many seconds after
                                 the answer), changes_only (the shares hit change calls
                                 only), latency_s (seconds), seed; {} clears every fault
  POST /__sandbox__/reset-stats  zero the request counters

\b
Example:
  mailops sandbox --whm-port 8087 --cpanel-port 8083 --brainycp-port 8089
"""


def _param(option: str) -> str:
    """The keyword click passes an option's value under (``whm-port`` -> ``whm_port``)."""
    return option.replace("-", "_")


def _kind_options(command: Callable[..., None]) -> Callable[..., None]:
    """Every kind's ``--<kind>-port``, then every kind's credential option, in :data:`SANDBOXES` order."""
    options = [click.option(f"--{box.port_option}", default=box.port, show_default=True,
                            type=click.IntRange(0, 65535), help=box.port_help) for box in SANDBOXES]
    options += [click.option(f"--{box.credential}", default=box.credential_default, show_default=True,
                             help=box.credential_help) for box in SANDBOXES]
    for option in reversed(options):  # decorators apply bottom-up
        command = option(command)
    return command


def _servers(host: str, accounts: tuple[str, ...], ports: Mapping[str, int],
             credentials: Mapping[str, str]) -> dict[str, SandboxServer]:
    return {box.kind: SandboxServer(box.build(credentials[box.kind], accounts), host=host,
                                    port=ports[box.kind]) for box in SANDBOXES}


@click.command(help=CONTROL_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@_kind_options
@click.option("--account", "accounts", multiple=True, default=("example",), show_default=True,
              help="Account to create on every panel (repeatable).")
def sandbox(host: str, accounts: tuple[str, ...], **options: Any) -> None:
    ports: dict[str, int] = {box.kind: options[_param(box.port_option)] for box in SANDBOXES}
    credentials: dict[str, str] = {box.kind: options[_param(box.credential)] for box in SANDBOXES}
    servers = _servers(host, accounts, ports, credentials)
    try:
        for server in servers.values():
            server.start()
    except OSError as exc:
        for server in servers.values():
            server.stop()
        raise click.ClickException(f"cannot listen: {exc} (pass --*-port 0 for any free port)") from None
    first = accounts[0] if accounts else "USER"
    click.echo(f"accounts: {', '.join(accounts) or '(none)'} (domain ACCOUNT.example on every panel)")
    for box in SANDBOXES:
        click.echo(box.banner(servers[box.kind].url, credentials[box.kind], first))
    click.echo("control:  GET /__sandbox__/ledger, GET /__sandbox__/stats, POST /__sandbox__/faults (see --help)",
               nl=True)
    wait_for_stop(stop_on_signals())
    for server in servers.values():
        server.stop()
