"""``mailops console``: the operator console in the browser (see :mod:`workers.console`)."""

from __future__ import annotations

import sys

import click
import uvicorn

from workers.cli.config import connected_settings
from workers.cli.exit_codes import RET_CONFIG, RET_OK
from workers.cli.serve import _Server
from workers.console.app import create_app
from workers.console.auth import hash_password
from workers.console.web import is_loopback


@click.group()
def console() -> None:
    """The operator console: overview, commands, dead letters, holds, batches and backends in a
    browser, for the users of [console.users.NAME] (see README.md, "Console").

    \b
    Example:
      mailops console serve --port 8081
    """


@console.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8081, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Serve the console until Ctrl-C. With [console] secure_cookies unset, the session cookie is
    Secure on any address but loopback, and on loopback whenever the login came over https (a
    TLS proxy in front sends X-Forwarded-Proto: https); set it true or false to decide yourself.

    \b
    Example:
      mailops console serve --host 127.0.0.1 --port 8081
    """
    settings, client = connected_settings()
    if not settings.console.users:
        click.echo("mailops console: no [console.users.NAME] is configured (anonymous access is not offered)", err=True)
        sys.exit(RET_CONFIG)
    secure = settings.console.secure_cookies
    # Unset: Secure when the login comes over https (a TLS proxy in front says so), and always
    # when listening beyond loopback, where plain http would carry the session in clear.
    app = create_app(settings, client, secure_cookies=True if secure is None and not is_loopback(host) else secure)
    try:
        _Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()
    finally:
        client.close()
    sys.exit(RET_OK)


@console.command("hash-password")
@click.password_option(prompt="Password", help="The password (prompted, twice, when not given).")
def hash_password_command(password: str) -> None:
    """Print the argon2 hash of a password, for [console.users.NAME] password_hash (or a file
    named by password_hash_file).

    \b
    Example:
      mailops console hash-password > /etc/mailops/alice.hash
    """
    click.echo(hash_password(password))
