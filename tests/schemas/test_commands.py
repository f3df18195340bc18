"""Command parsing names the field and the rule of every rejection (a parser test: no Redis needed)."""

from __future__ import annotations

import pytest

from schemas.commands import parse_command
from workers.errors import CommandRejected

pytestmark = pytest.mark.unit

VALID = b'{"id":"a-1","command":"suspend_outgoing","backend":"whm1","args":{"user":"example"},"producer":"abuse"}'


def test_a_valid_command_parses_with_its_fields() -> None:
    command = parse_command(VALID)
    assert (command.id, command.command, command.args, command.target) == ("a-1", "suspend_outgoing", {"user": "example"}, "example")


def test_a_missing_id_is_generated_and_marked() -> None:
    command = parse_command(b'{"command":"suspend_outgoing","args":{"user":"example"},"producer":"abuse"}')
    assert command.id.startswith("gen-") and command.id_generated


@pytest.mark.parametrize(
    ("body", "field", "rule"),
    [
        (b"not json", "body", "json"),
        (b"[1,2]", "body", "object"),
        (b'{"command":"nope","args":{},"producer":"p"}', "command", "unknown_command"),
        (b'{"command":"suspend_outgoing","args":{},"producer":"p"}', "args.user", "missing"),
        (b'{"command":"suspend_outgoing","args":{"user":"a&user=root"},"producer":"p"}', "args.user", "string_pattern_mismatch"),
        (b'{"command":"suspend_outgoing","args":{"user":"a"}}', "producer", "missing"),
        (b'{"command":"suspend_outgoing","args":{"user":"a","x":1},"producer":"p"}', "args.x", "extra_forbidden"),
        (b'{"command":"suspend_outgoing","args":{"user":"a"},"producer":"p","issued_at":"2026-11-22T10:00:00"}', "issued_at", "timezone"),
        (b'{"command":"suspend_outgoing","args":{"user":"a"},"producer":"p","issued_at":1795315200}', "issued_at", "rfc3339"),
        (b'{"command":"suspend_outgoing","args":{"user":"a"},"producer":"p","issued_at":1795315200.5}', "issued_at", "rfc3339"),
        (b"x" * 20000, "body", "max_size"),
    ],
)
def test_each_malformed_command_names_its_field_and_rule(body: bytes, field: str, rule: str) -> None:
    with pytest.raises(CommandRejected) as caught:
        parse_command(body)
    assert (caught.value.field, caught.value.rule) == (field, rule)
