"""Write the JSON Schema files non-Python producers validate against: ``python -m schemas.generate``.

``tests/schemas/test_generate.py`` fails when the committed files differ from what this writes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.commands import COMMANDS, Command
from schemas.events import Event

DIRECTORY = Path(__file__).parent / "jsonschema"


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


def main() -> None:
    DIRECTORY.mkdir(exist_ok=True)
    for name, content in rendered().items():
        (DIRECTORY / name).write_text(content, encoding="utf-8")
        print(f"wrote {DIRECTORY / name}")


if __name__ == "__main__":
    main()
