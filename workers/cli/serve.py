"""``mailops serve``: the HTTP ingress for webhooks (see :mod:`workers.tools.http_ingress`)."""

from __future__ import annotations

import sys
from types import FrameType

import click
import uvicorn

from workers.cli.config import connected_settings
from workers.cli.exit_codes import RET_OK
from workers.tools.http_ingress import create_app


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising SIGTERM/SIGINT after a graceful shutdown, so that a
    stop asked for by a signal ends with exit code 0 (as the process managers expect)."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Serve POST /v1/commands, GET /v1/commands/{id}, /healthz and /openapi.json until Ctrl-C.

    \b
    Example:
      mailops serve --port 8080
    """
    settings, client = connected_settings()
    try:
        _Server(uvicorn.Config(create_app(settings, client), host=host, port=port, log_level="warning")).run()
    finally:
        client.close()
    sys.exit(RET_OK)
