"""``--help`` works on every command and subcommand of ``mailops``."""

from __future__ import annotations

from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from workers.cli.exit_codes import RET_OK
from workers.cli.main import cli


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command path under ``group`` (the group itself first)."""
    yield prefix
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from command_paths(command, (*prefix, name))
        else:
            yield (*prefix, name)


PATHS = list(command_paths(cli))


def test_the_command_tree_has_the_commands_of_the_issue() -> None:
    # Given the walked tree, Then it holds every command issue 7 names (so the walk is not empty)
    names = {" ".join(path) for path in PATHS}
    assert {"worker", "publish", "events tail", "backends check", "config check", "bulk", "batch status",
            "serve", "dlq list", "dlq show", "dlq replay", "dlq purge", "holds show"} <= names


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "mailops")
def test_help_exits_zero_and_shows_the_usage_of_the_command(path: tuple[str, ...]) -> None:
    # When an operator asks for help on the command
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="mailops", catch_exceptions=False)
    # Then it exits 0 and prints that command's usage line
    assert result.exit_code == RET_OK, result.output
    assert result.output.startswith(f"Usage: {' '.join(('mailops', *path))}")


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "mailops")
def test_the_help_of_every_command_ends_with_an_example_of_that_command(path: tuple[str, ...]) -> None:
    # When an operator asks for help on any command or group
    result = CliRunner().invoke(cli, [*path, "--help"], prog_name="mailops", catch_exceptions=False)
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    options = next(i for i, line in enumerate(lines) if line == "Options:")
    # Then its text ends with an example invocation of it (the actions' examples are run as shown
    # by tests/cli/test_operator.py and tests/store/test_dead_letters.py)
    assert {"Example:", "Examples:"} & set(lines[:options]), result.output
    assert lines[options - 1].startswith(f"mailops {' '.join(path)}".rstrip()) or (
        not path and lines[options - 1].startswith("mailops ")), result.output
