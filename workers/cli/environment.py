"""The CLI's edge: read the environment once, and supply a Redis (embedded when none is configured)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import click

from workers.cli.exit_codes import RET_CONFIG
from workers.errors import ConfigError
from workers.settings import Settings
from workers.store.embedded_redis import EmbeddedRedis

#: The operator the CLI acts as when ``--operator`` is not given (see :mod:`workers.cli.acting`).
OPERATOR_ENV = "MAILOPS_OPERATOR"


def load_settings() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except ConfigError as exc:
        click.echo(f"mailops: configuration error: {exc}", err=True)
        raise SystemExit(RET_CONFIG) from None


@contextlib.contextmanager
def settings_with_redis(settings: Settings | None = None, *, announce: bool = True) -> Iterator[Settings]:
    """The settings, with a private embedded Redis started (and stopped after) if none is configured."""
    settings = settings or load_settings()
    if settings.redis_url:
        yield settings
        return
    with EmbeddedRedis() as server:
        if announce:
            click.echo(f"mailops: no MAILOPS_REDIS_URL; started a private Redis at {server.url}", err=True)
        yield settings.with_redis_url(server.url)
