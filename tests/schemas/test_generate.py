"""The committed JSON Schema files are what the models say."""

from __future__ import annotations

import pytest

from schemas.generate import DIRECTORY, README, TABLE_SECTION, readme_with_table, rendered
from workers.backends.registry import render_table

pytestmark = pytest.mark.unit


def test_the_committed_json_schema_files_are_up_to_date() -> None:
    for name, content in rendered().items():
        committed = (DIRECTORY / name).read_text(encoding="utf-8")
        assert committed == content, f"{name} is stale: run python -m schemas.generate"


def test_the_readme_commands_table_is_what_the_generator_writes() -> None:
    # Given the committed README
    readme = README.read_text(encoding="utf-8")
    # When the generator puts the table rendered from the call tables in its section
    regenerated = readme_with_table(readme)
    # Then nothing changes, and the section does hold the rendered table
    assert regenerated == readme, "the README table is stale: run python -m schemas.generate"
    assert render_table().rstrip("\n") in readme.split(TABLE_SECTION, 1)[1]


def test_the_generator_replaces_a_stale_table_and_only_that_table() -> None:
    # Given a README whose table lacks a row and has text around it
    readme = f"intro\n{TABLE_SECTION}\n\ntext before\n\n| command | old |\n|---|---|\n| `x` | y |\n\ntext after\n## Next\n"
    # When it is regenerated
    regenerated = readme_with_table(readme)
    # Then the table is the rendered one and the text around it is kept
    assert regenerated == (f"intro\n{TABLE_SECTION}\n\ntext before\n\n{render_table().rstrip()}\n\ntext after\n## Next\n")
