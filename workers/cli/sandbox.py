"""``mailops sandbox``: serve the three sandbox panels for people testing their own producers."""

from __future__ import annotations

import click

from workers.sandbox import SandboxServer
from workers.sandbox.brainycp import BrainycpSandbox
from workers.sandbox.cpanel import CpanelSandbox
from workers.sandbox.whm import WhmSandbox
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


def _servers(host: str, ports: tuple[int, int, int], accounts: tuple[str, ...], whm_token: str, cpanel_token: str,
             brainycp_password: str) -> dict[str, SandboxServer]:
    whm = WhmSandbox(token=whm_token)
    cpanel = CpanelSandbox()
    brainy = BrainycpSandbox(password=brainycp_password)
    for user in accounts:
        whm.add_account(user)
        cpanel.add_account(user, token=cpanel_token)
        brainy.add_account(user)
    return {"whm": SandboxServer(whm, host=host, port=ports[0]),
            "cpanel": SandboxServer(cpanel, host=host, port=ports[1]),
            "brainycp": SandboxServer(brainy, host=host, port=ports[2])}


@click.command(help=CONTROL_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--whm-port", default=2087, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the WHM sandbox (0 = any free port).")
@click.option("--cpanel-port", default=2083, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the cPanel UAPI sandbox (0 = any free port).")
@click.option("--brainycp-port", default=8002, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the BrainyCP sandbox (0 = any free port).")
@click.option("--whm-token", default="sandbox-whm-token", show_default=True, help="API token of WHM user root.")
@click.option("--cpanel-token", default="sandbox-cpanel-token", show_default=True,
              help="API token of every cPanel account.")
@click.option("--brainycp-password", default="sandbox-brainy-pass", show_default=True,
              help="Password of the BrainyCP administrator 'admin'.")
@click.option("--account", "accounts", multiple=True, default=("example",), show_default=True,
              help="Account to create on every panel (repeatable).")
def sandbox(host: str, whm_port: int, cpanel_port: int, brainycp_port: int, whm_token: str, cpanel_token: str,
            brainycp_password: str, accounts: tuple[str, ...]) -> None:
    servers = _servers(host, (whm_port, cpanel_port, brainycp_port), accounts, whm_token, cpanel_token,
                       brainycp_password)
    try:
        for server in servers.values():
            server.start()
    except OSError as exc:
        for server in servers.values():
            server.stop()
        raise click.ClickException(f"cannot listen: {exc} (pass --*-port 0 for any free port)") from None
    first = accounts[0] if accounts else "USER"
    click.echo(f"accounts: {', '.join(accounts) or '(none)'} (domain ACCOUNT.example on every panel)")
    click.echo(f"WHM       {servers['whm'].url}  Authorization: whm root:{whm_token}")
    click.echo(f"cPanel    {servers['cpanel'].url}  Authorization: cpanel {first}:{cpanel_token}")
    click.echo(f"BrainyCP  {servers['brainycp'].url}/api/api.php  form fields Login=admin pass={brainycp_password}")
    click.echo("control:  GET /__sandbox__/ledger, GET /__sandbox__/stats, POST /__sandbox__/faults (see --help)",
               nl=True)
    wait_for_stop(stop_on_signals())
    for server in servers.values():
        server.stop()
