"""The committed JSON Schema files are what the models say."""

from __future__ import annotations

from schemas.generate import DIRECTORY, rendered


def test_the_committed_json_schema_files_are_up_to_date() -> None:
    for name, content in rendered().items():
        committed = (DIRECTORY / name).read_text(encoding="utf-8")
        assert committed == content, f"{name} is stale: run python -m schemas.generate"
