"""``mailops sandbox``: serve the sandbox panels for people testing their own producers."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from workers.sandbox import SandboxServer
from workers.sandbox.whm import WhmSandbox


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--whm-port", default=2087, show_default=True, type=int, help="Port of the WHM sandbox (0 = any).")
@click.option("--whm-token", default="sandbox-whm-token", show_default=True, help="Token the WHM sandbox accepts.")
@click.option("--account", "accounts", multiple=True, default=("example",), show_default=True,
              help="cPanel account to create (repeatable).")
def sandbox(host: str, whm_port: int, whm_token: str, accounts: tuple[str, ...]) -> None:
    """Serve stateful panel simulators until Ctrl-C; GET /__sandbox__/ledger shows what changed."""
    app = WhmSandbox(token=whm_token)
    for user in accounts:
        app.add_account(user)
    server = SandboxServer(app, host=host, port=whm_port).start()
    click.echo(f"WHM sandbox on {server.url} (Authorization: whm root:{whm_token})")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stop.wait()
    server.stop()
