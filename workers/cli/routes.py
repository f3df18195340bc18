"""``mailops routes``: the target -> backend map in Redis (seeded from the config's ``targets``)."""

from __future__ import annotations

import click

from workers.cli.environment import settings_with_redis
from workers.cli.exit_codes import RET_FAILED
from workers.errors import UnknownBackend
from workers.ingest.routing import RouteMap
from workers.store.redis_client import connect


@click.group()
def routes() -> None:
    """Show or change which backend serves a domain or cPanel account.

    \b
    Example:
      mailops routes list
    """


@routes.command("list")
def list_routes() -> None:
    """Print every route as TARGET BACKEND (after seeding from the config file).

    \b
    Example:
      mailops routes list
    """
    with settings_with_redis(announce=False) as settings:
        route_map = RouteMap(connect(settings), settings)
        route_map.seed()
        for target, backend in route_map.all().items():
            click.echo(f"{target}\t{backend}")


@routes.command("set")
@click.argument("target")
@click.argument("backend")
def set_route(target: str, backend: str) -> None:
    """Route TARGET (a domain or account) to BACKEND (a configured backend name).

    \b
    Example:
      mailops routes set shop.example whm1
    """
    with settings_with_redis(announce=False) as settings:
        try:
            RouteMap(connect(settings), settings).set(target, backend)
        except UnknownBackend as exc:
            click.echo(f"mailops routes: {exc}", err=True)
            raise SystemExit(RET_FAILED) from None
        click.echo(f"{target.lower()}\t{backend}")


@routes.command("remove")
@click.argument("target")
def remove_route(target: str) -> None:
    """Remove TARGET's route (the config file's seed comes back at the next worker start).

    \b
    Example:
      mailops routes remove shop.example
    """
    with settings_with_redis(announce=False) as settings:
        if not RouteMap(connect(settings), settings).remove(target):
            click.echo(f"mailops routes: no route for {target.lower()!r}", err=True)
            raise SystemExit(RET_FAILED)
