"""``mailops serve``: the HTTP ingress for webhooks (see :mod:`workers.http_ingress`)."""

from __future__ import annotations

import click
import uvicorn

from workers.cli.config import connected_settings
from workers.http_ingress import create_app


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Serve POST /v1/commands, GET /v1/commands/{id}, /healthz and /openapi.json until Ctrl-C."""
    settings, client = connected_settings()
    try:
        uvicorn.run(create_app(settings, client), host=host, port=port, log_level="warning")
    finally:
        client.close()
