"""Write the generated artefacts: ``python -m schemas.generate``.

The JSON Schema files non-Python producers validate against, and the README's "Commands × backends"
table (rendered from the backends' call tables). ``tests/schemas/test_generate.py`` fails when a
committed one differs from what this writes, so a new command or kind is one run of this away from done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.commands import COMMANDS, Command
from schemas.events import Event
from workers.backends.registry import render_table

DIRECTORY = Path(__file__).parent / "jsonschema"
README = Path(__file__).parents[1] / "README.md"
#: The README section whose table is generated.
TABLE_SECTION = "## Commands × backends"


def command_schema() -> dict[str, Any]:
    """The command envelope, with each command's own ``args`` schema selected by ``command``."""
    envelope = Command.model_json_schema()
    envelope["properties"].pop("id_generated", None)
    envelope["properties"]["command"]["enum"] = sorted(COMMANDS)
    envelope["required"] = ["command", "args", "producer"]
    defs: dict[str, Any] = envelope.setdefault("$defs", {})
    branches = []
    for name in sorted(COMMANDS):
        args_schema = COMMANDS[name].args.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(args_schema.pop("$defs", {}))
        title = f"{COMMANDS[name].args.__name__}"
        defs[title] = args_schema
        branches.append({
            "if": {"properties": {"command": {"const": name}}},
            "then": {"properties": {"args": {"$ref": f"#/$defs/{title}"}}},
        })
    envelope["allOf"] = branches
    envelope["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    envelope["title"] = "mailops command"
    return envelope


def event_schema() -> dict[str, Any]:
    schema = Event.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "mailops event"
    return schema


def rendered() -> dict[str, str]:
    """File name -> content, exactly as committed."""
    return {
        "command.schema.json": json.dumps(command_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n",
        "event.schema.json": json.dumps(event_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n",
    }


def readme_with_table(readme: str) -> str:
    """``readme`` with the table of its "Commands × backends" section replaced by the rendered one."""
    head, section = readme.split(TABLE_SECTION, 1)
    lines = section.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("| command |"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return head + TABLE_SECTION + "\n".join([*lines[:start], render_table().rstrip("\n"), *lines[end:]])


def main() -> None:
    DIRECTORY.mkdir(exist_ok=True)
    for name, content in rendered().items():
        (DIRECTORY / name).write_text(content, encoding="utf-8")
        print(f"wrote {DIRECTORY / name}")
    if README.is_file():  # a source checkout
        README.write_text(readme_with_table(README.read_text(encoding="utf-8")), encoding="utf-8")
        print(f"wrote the table of {README}")


if __name__ == "__main__":
    main()
