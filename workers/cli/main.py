"""``mailops``: the command group. Each subcommand lives in its own module of this package."""

from __future__ import annotations

import logging
import sys

import click

from workers import __version__
from workers.cli.backends import backends
from workers.cli.batch import batch
from workers.cli.bench import bench
from workers.cli.bulk import bulk
from workers.cli.config import config
from workers.cli.console import console
from workers.cli.demo import demo
from workers.cli.dlq import dlq
from workers.cli.events import events
from workers.cli.holds import holds
from workers.cli.publish import publish
from workers.cli.reconcile import reconcile
from workers.cli.routes import routes
from workers.cli.sandbox import sandbox
from workers.cli.serve import serve
from workers.cli.status import status
from workers.cli.worker import worker


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="mailops")
@click.option("--log-level", default="WARNING", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
              help="Log verbosity (logs go to stderr).")
def cli(log_level: str) -> None:
    """mailops: send one JSON command, change mail accounts on cPanel/WHM and BrainyCP panels.

    Producers add commands to the Redis stream mailops:commands; workers run them against the
    configured panels and publish events on mailops:events. Configure with MAILOPS_REDIS_URL and
    MAILOPS_CONFIG (see README.md). Exit codes: 0 ok, 1 failed, 2 usage, 3 Redis unreachable,
    4 configuration error, 5 timed out.

    \b
    Example:
      mailops status
    """
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


cli.add_command(worker)
cli.add_command(dlq)
cli.add_command(demo)
cli.add_command(sandbox)
cli.add_command(routes)
cli.add_command(publish)
cli.add_command(events)
cli.add_command(backends)
cli.add_command(config)
cli.add_command(bulk)
cli.add_command(batch)
cli.add_command(serve)
cli.add_command(bench)
cli.add_command(holds)
cli.add_command(reconcile)
cli.add_command(status)
cli.add_command(console)


def main() -> None:
    cli(prog_name="mailops")


if __name__ == "__main__":  # pragma: no cover
    main()
